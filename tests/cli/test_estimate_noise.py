import json
from pathlib import Path

import numpy as np
import pytest

from voxuda_cli.cli.app import app
from voxuda_cli.io.dataset import Dataset, write_dataset
from voxuda_cli.io.mrc import write_mrc
from voxuda_cli.io.volume import Volume


def _dataset(path: Path, n: int = 5) -> Path:
    images = np.random.default_rng(0).normal(0, 3, size=(n, 16, 16, 16)).astype(np.float32)
    write_dataset(path, Dataset(images=images, names=[f"t{i}" for i in range(n)], voxel_size=10.0))
    return path


def test_dataset_json_and_output_file(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _dataset(tmp_path / "target.h5")
    args = ["estimate-noise", str(source), "--n-sampled", "3", "--seed", "1", "-o", str(tmp_path / "noise.json")]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"sigma", "variance", "keep_rate", "n_sampled", "samples"}
    assert report["n_sampled"] == 3 and len(report["samples"]) == 3
    assert report["sigma"] == pytest.approx(np.sqrt(0.244), rel=0.03)  # white noise: keep_rate of unit power
    assert json.loads((tmp_path / "noise.json").read_text()) == report
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "sigma_t" in table.stdout and "median" in table.stdout


def test_mrc_files_of_any_shape_and_too_many_requested(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    for name, shape in (("a", (12, 16, 20)), ("b", (16, 16, 16))):
        write_mrc(tmp_path / f"{name}.mrc", Volume(rng.normal(size=shape).astype(np.float32), voxel_size=10.0))
    result = runner.invoke(app, ["estimate-noise", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_sampled"] == 2 and "using all 2" in result.output


def test_bad_inputs_exit_2_and_write_nothing(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _dataset(tmp_path / "target.h5")
    nan = np.ones((8, 8, 8), np.float32)
    nan[0, 0, 0] = np.nan
    write_mrc(tmp_path / "nan.mrc", Volume(nan))
    out = tmp_path / "noise.json"
    cases = [
        [str(source), "--keep-rate", "0"],
        [str(source), "--keep-rate", "1.2"],
        [str(source), "--n-sampled", "0"],
        [str(tmp_path / "missing.h5")],
        [str(tmp_path / "nan.mrc")],
    ]
    for args in cases:
        result = runner.invoke(app, ["estimate-noise", *args, "-o", str(out)])
        assert result.exit_code == 2, (args, result.output)
        assert "error" in result.output and "Traceback" not in result.output
        assert not out.exists()
