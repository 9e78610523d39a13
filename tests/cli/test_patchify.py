import json
from pathlib import Path

import numpy as np

from voxuda_cli.cli.app import app
from voxuda_cli.io.dataset import read_h5_dataset
from voxuda_cli.io.mrc import write_mrc
from voxuda_cli.io.volume import Volume


def _tomo(path: Path, shape=(64, 64, 96), voxel_size=5.0) -> Path:  # type: ignore[no-untyped-def]
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    write_mrc(path, Volume(data, voxel_size=voxel_size, origin=(0.0, 10.0, 20.0)))
    return path


def test_patchify_json_and_dataset(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _tomo(tmp_path / "t1.mrc")
    _tomo(tmp_path / "t2.mrc")
    result = runner.invoke(
        app, ["patchify", str(tmp_path / "t1.mrc"), str(tmp_path / "t2.mrc"), "-o", str(tmp_path / "p.h5"), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["patches"] == 2 * 2 * 2 * 3 and summary["parents"] == 2
    dataset = read_h5_dataset(tmp_path / "p.h5")
    assert dataset.parents.count("t1") == 12
    assert json.loads(dataset.attrs["provenance"])["command"] == "patchify"


def test_overlap_stride_and_config(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _tomo(tmp_path / "t.mrc", shape=(32, 32, 64))
    (tmp_path / "c.toml").write_text("[patchify]\nstride = 16\n")
    result = runner.invoke(
        app,
        [
            "patchify",
            str(tmp_path / "t.mrc"),
            "-o",
            str(tmp_path / "p.h5"),
            "--config",
            str(tmp_path / "c.toml"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["patches"] == 3


def test_bad_inputs_exit_2_and_write_nothing(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.h5"
    (tmp_path / "junk.mrc").write_bytes(b"junk")
    nan = np.ones((40, 40, 40), np.float32)
    nan[5, 5, 5] = np.nan
    write_mrc(tmp_path / "nan.mrc", Volume(nan))
    cases = [
        [str(tmp_path / "missing.mrc")],
        [str(tmp_path / "junk.mrc")],
        [str(tmp_path / "nan.mrc")],
        [str(_tomo(tmp_path / "ok.mrc")), "--stride", "64"],
    ]
    for args in cases:
        result = runner.invoke(app, ["patchify", *args, "-o", str(out)])
        assert result.exit_code == 2, (args, result.output)
        assert "error" in result.output and "Traceback" not in result.output
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
