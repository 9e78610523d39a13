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
