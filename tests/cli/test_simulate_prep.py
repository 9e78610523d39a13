import json
from pathlib import Path

import numpy as np
import pytest

from voxuda_cli.cli.app import app
from voxuda_cli.io.dataset import read_h5_dataset
from voxuda_cli.io.mrc import write_mrc
from voxuda_cli.io.volume import Volume

SMALL = ["--structures", "7pbl", "--n-per-structure", "2", "--snr", "0.05", "--tilt-step", "6"]


def test_simulate_writes_a_complete_dataset(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sim.h5"
    result = runner.invoke(
        app, ["simulate-prep", str(out), *SMALL, "--structures", "3p3w", "--preview", str(tmp_path / "p.png"), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["samples"] == 4 and [m["pdb_id"] for m in summary["molecules"]] == ["7pbl", "3p3w"]
    dataset = read_h5_dataset(out)
    assert dataset.images.shape == (4, 32, 32, 32) and dataset.voxel_size == 10.0 and dataset.kind == "source"
    assert dataset.masks is not None and dataset.density is not None
    assert dataset.names[0] == "7pbl_snr0.05_00000" and dataset.classes == ["7pbl", "7pbl", "3p3w", "3p3w"]
    assert set(dataset.params) >= {"snr", "defocus", "tilt_min", "tilt_max", "rotation", "shift"}
    provenance = json.loads(dataset.attrs["provenance"])
    assert provenance["command"] == "simulate-prep" and provenance["options"]["tilt_step"] == 6.0
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_same_seed_same_bytes_whatever_the_workers(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = [*SMALL, "--n-per-structure", "5", "--seed", "3"]  # 5 samples: two batches, so two workers share them
    paths = [tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"]
    for path, workers in zip(paths, ("1", "1", "2")):
        result = runner.invoke(app, ["simulate-prep", "-o", str(path), *args, "--workers", workers])
        assert result.exit_code == 0, result.output
    first, second, parallel = (read_h5_dataset(p) for p in paths)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    for array in ("images", "masks", "density"):
        np.testing.assert_array_equal(getattr(first, array), getattr(parallel, array))


def test_target_preset(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "target.h5"
    result = runner.invoke(
        app, ["simulate-prep", str(out), "--preset", "target", "--n-per-structure", "1", "--tilt-step", "10"]
    )
    assert result.exit_code == 0, result.output
    dataset = read_h5_dataset(out)
    assert dataset.kind == "target" and dataset.classes == ["6qt9", "4jsv", "7cth"]
    assert (dataset.params["tilt_min"] == -50).all() and (dataset.params["tilt_max"] == 50).all()
    assert ((dataset.params["snr"] >= 0.01) & (dataset.params["snr"] <= 0.1)).all()


def test_crowded_preset_and_nuisance_options(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "crowded.h5"
    args = ["--preset", "crowded", "--n-per-structure", "1", "--tilt-step", "9", "--neighbours", "2", "2"]
    result = runner.invoke(app, ["simulate-prep", str(out), *args, "--noise-slope", "1", "1", "--json"])
    assert result.exit_code == 0, result.output
    dataset = read_h5_dataset(out)
    assert dataset.kind == "target" and dataset.classes == ["6qt9", "4jsv", "7cth"]
    assert (dataset.params["neighbours"] == 2).all() and (dataset.params["noise_slope"] == 1).all()
    assert (dataset.params["detector_mtf"] < 1).all()  # from the preset
    assert "3p3w" in [m["pdb_id"] for m in json.loads(result.stdout)["molecules"]]  # a neighbour-only molecule


def test_config_file_and_pdb_input(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.simulate.atomic_models import write_ball_file

    structure = write_ball_file(tmp_path / "myball.cif", radius=30.0)
    config = tmp_path / "sim.toml"
    config.write_text(f'[simulate-prep]\nstructures = ["{structure}"]\nn_per_structure = 3\ntilt_step = 10.0\n')
    result = runner.invoke(app, ["simulate-prep", str(tmp_path / "o.h5"), "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    dataset = read_h5_dataset(tmp_path / "o.h5")
    assert dataset.classes == ["myball"] * 6  # two SNR levels from the preset


def test_import_mode(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "im").mkdir()
    (tmp_path / "gm").mkdir()
    grey = np.zeros((40, 40, 40), np.float32)
    grey[10:30, 10:30, 10:30] = 299.0
    grey[15:25, 15:25, 15:25] = 301.0
    write_mrc(tmp_path / "im" / "a.mrc", Volume(grey / 300 + 0.1, 8.0))
    write_mrc(tmp_path / "gm" / "a.mrc", Volume(grey, 8.0))
    out = tmp_path / "imported.h5"
    result = runner.invoke(
        app,
        [
            "simulate-prep",
            str(out),
            "--import-images",
            str(tmp_path / "im"),
            "--import-masks",
            str(tmp_path / "gm"),
            "--crop",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    dataset = read_h5_dataset(out)
    assert dataset.masks[0].sum() == 10**3  # only the 301 voxels; the 299 shell is background
    assert json.loads(result.stdout)["mask_threshold"] == 300.0


@pytest.mark.parametrize(
    "case",
    ["junk", "empty", "box", "snr0", "snr-neg", "import-half", "no-output", "neighbours", "mtf"],
)
def test_bad_input_exits_2_and_writes_nothing(runner, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    from tests.simulate.atomic_models import build_structure

    out = tmp_path / "out.h5"
    (tmp_path / "junk.pdb").write_bytes(b"\x00\x01 this is not a structure")
    (tmp_path / "empty.pdb").write_text(build_structure(np.zeros((0, 3))).make_pdb_string())
    args = {
        "junk": [str(out), "--structures", str(tmp_path / "junk.pdb")],
        "empty": [str(out), "--structures", str(tmp_path / "empty.pdb")],
        "box": [str(out), "--structures", "3jb9", "--box", "24"],
        "snr0": [str(out), *SMALL, "--snr", "0"],
        "snr-neg": [str(out), "--structures", "7pbl", "--snr", "-0.05"],
        "import-half": [str(out), "--import-images", str(tmp_path)],
        "no-output": ["--structures", "7pbl"],
        "neighbours": [str(out), *SMALL, "--neighbours", "3", "1"],
        "mtf": [str(out), *SMALL, "--detector-mtf", "0.5", "1.5"],
    }[case]
    result = runner.invoke(app, ["simulate-prep", *args])
    assert result.exit_code == 2, result.output
    assert "error" in result.output and "Traceback" not in result.output
    assert not out.exists()
    assert not list(tmp_path.glob("*.h5*"))


def test_a_full_disk_is_one_line_exit_2_and_the_earlier_file_survives(runner, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.faults import full_disk, leftovers

    out = tmp_path / "sim.h5"
    out.write_bytes(b"an earlier result")
    full_disk(monkeypatch, capacity=50_000)
    result = runner.invoke(app, ["simulate-prep", str(out), *SMALL])
    assert result.exit_code == 2, result.output
    assert "sim.h5: cannot write it: no space left on device" in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) <= 3  # rich may wrap
    assert out.read_bytes() == b"an earlier result" and leftovers(tmp_path) == []


def test_outputs_are_readable_by_others_under_umask_022(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import stat

    previous = os.umask(0o022)
    try:
        args = ["simulate-prep", str(tmp_path / "sim.h5"), *SMALL, "--preview", str(tmp_path / "p.png")]
        result = runner.invoke(app, args)
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert {stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("sim.h5", "p.png")} == {0o644}


def _can_mount_tmpfs() -> bool:
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unprivileged user and mount namespaces (unshare -Urm)")
def test_a_really_full_file_system(tmp_path: Path) -> None:
    """A 600 KiB tmpfs in a private mount namespace: HDF5's own write errors (which crash h5py
    when it closes the file), one line, exit 2, the earlier file intact, no temporary file."""
    import subprocess
    import sys

    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f"mount -t tmpfs -o size=600k tmpfs {disk} && echo earlier > {disk}/sim.h5 && "
        f"OMP_NUM_THREADS=1 {sys.executable} -m voxuda_cli simulate-prep {disk}/sim.h5 {' '.join(SMALL)} "
        "--n-per-structure 30; echo rc=$?; ls -A " + str(disk) + "; cat " + str(disk) + "/sim.h5"
    )
    result = subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "sim.h5: cannot write it: no space left on device" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stdout.split() == ["rc=2", "sim.h5", "earlier"]
