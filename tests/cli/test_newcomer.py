"""The newcomer's walk (issue 26): each class of mistake is one line, exit 2, nothing written, in every command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.datasets import snapshot
from voxuda_cli.cli.app import app

# Per command: its arguments with an output under ``{out}`` (inputs need not exist: outputs are
# checked before any input is read) and the section a --config of it reads.
INVOCATIONS = {
    "simulate-prep": ["{out}/sim.h5"],
    "extract": ["tomo.mrc", "--coords", "picks.star", "-o", "{out}/sub.h5"],
    "patchify": ["tomo.mrc", "-o", "{out}/patches.h5"],
    "estimate-noise": ["tomo.mrc", "-o", "{out}/noise.json"],
    "ibf-denoise": ["tomo.mrc", "-o", "{out}/denoised.mrc"],
    "train": ["--src", "src.h5", "--tgt", "tgt.h5", "-o", "{out}/run"],
    "pseudo-label": ["run", "tgt.h5", "-o", "{out}/pl.h5"],
    "predict": ["run", "tomo.mrc", "-o", "{out}/masks"],
    "picks": ["masks", "-o", "{out}/picks.star"],
    "score": ["pred.h5", "truth.h5", "--csv", "{out}/scores.csv"],
}
# One numeric setting of each command, for a wrong-typed config value.
INTEGER_SETTING = {
    "simulate-prep": "box",
    "extract": "box",
    "patchify": "patch",
    "estimate-noise": "n_sampled",
    "ibf-denoise": "chunk",
    "train": "epochs",
    "pseudo-label": "batch_size",
    "predict": "batch_size",
    "picks": "min_distance",
    "score": "mask_threshold",
}


def test_the_invocations_cover_every_command() -> None:
    from voxuda_cli.cli.app import COMMANDS

    assert set(INVOCATIONS) == {module.NAME for module in COMMANDS} == set(INTEGER_SETTING)


def _one_line_exit_2(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and not result.output.startswith("\n"), result.output
    return lines[0]


@pytest.mark.parametrize("command", list(INVOCATIONS))
def test_an_output_below_a_file_is_one_line(command: str, runner, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    before = snapshot(tmp_path)
    args = [a.format(out="afile") for a in INVOCATIONS[command]]
    line = _one_line_exit_2(runner.invoke(app, [command, *args], terminal_width=400))
    assert "afile is a file, not a folder" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", list(INVOCATIONS))
def test_a_wrong_typed_config_value_is_one_line(command: str, runner, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    setting = INTEGER_SETTING[command]
    (tmp_path / "c.toml").write_text(f'[{command.replace("-", "_")}]\n{setting} = "big"\n')
    before = snapshot(tmp_path)
    args = [a.format(out="out") for a in INVOCATIONS[command]]
    line = _one_line_exit_2(runner.invoke(app, [command, *args, "--config", "c.toml"], terminal_width=400))
    assert f"{setting} = 'big' is not a" in line
    assert snapshot(tmp_path) == before


def _lost_header_inputs(folder: Path) -> None:
    import numpy as np

    from tests.training.datasets import write_blobs
    from voxuda_cli.io.mrc import write_mrc
    from voxuda_cli.io.volume import Volume

    rng = np.random.default_rng(0)
    write_mrc(folder / "tomo.mrc", Volume(rng.normal(size=(40, 48, 48)).astype(np.float32), voxel_size=0.0))
    (folder / "picks.csv").write_text("x,y,z\n24,24,20\n")
    write_blobs(folder / "src.h5", n=2, seed=1, voxel_size=0.0)
    write_blobs(folder / "tgt.h5", n=2, seed=2, voxel_size=10.0, masks=False)


# The commands that read volumes and need no trained model; predict and pseudo-label are in their own tests.
LOST_HEADER = {
    "extract": (["tomo.mrc", "--coords", "picks.csv", "--box", "16", "-o", "out/sub.h5"], True),
    "patchify": (["tomo.mrc", "--patch", "16", "-o", "out/patches.h5"], True),
    "estimate-noise": (["tomo.mrc", "-o", "out/noise.json"], True),
    "ibf-denoise": (["tomo.mrc", "-o", "out/denoised.mrc"], True),
    "picks": (["tomo.mrc", "-o", "out/picks.star"], True),
    "train": (["--src", "src.h5", "--tgt", "tgt.h5", "-o", "out/run", "--epochs", "1", "--width", "4"], False),
}


@pytest.mark.parametrize("command", list(LOST_HEADER))
def test_a_lost_voxel_size_is_refused_and_never_written(command: str, runner, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    _lost_header_inputs(tmp_path)
    args, takes_override = LOST_HEADER[command]
    before = snapshot(tmp_path)
    line = _one_line_exit_2(runner.invoke(app, [command, *args], terminal_width=400))
    assert "--input-voxel-size" in line and ("0 A" in line or "voxel size 0" in line), line
    assert snapshot(tmp_path) == before
    if takes_override:  # the real size given: the command runs and records it, never 0 or 1
        result = runner.invoke(app, [command, *args, "--input-voxel-size", "13.5"], terminal_width=400)
        assert result.exit_code == 0, result.output
        written = sorted(p for p in (tmp_path / "out").iterdir())
        assert written
        for path in written:
            if path.suffix == ".mrc":
                from voxuda_cli.io.mrc import read_mrc

                assert read_mrc(path).voxel_size == (13.5, 13.5, 13.5)
            if path.suffix == ".h5":
                from voxuda_cli.io.dataset import read_h5_dataset

                assert read_h5_dataset(path).voxel_size == pytest.approx(13.5)
