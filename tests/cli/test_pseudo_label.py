import json
from pathlib import Path

import numpy as np
import pytest

from tests.inference.models import sphere_batch, threshold_network, write_model
from voxuda_cli.cli.app import app
from voxuda_cli.io.dataset import Dataset, read_h5_dataset, write_dataset
from voxuda_cli.io.mrc import write_mrc
from voxuda_cli.io.volume import Volume


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "run" / "model.pt", threshold_network(width=2), eta=0.9, denoiser="ibf")


@pytest.fixture
def target(tmp_path: Path, rng: np.random.Generator) -> Path:
    images, masks = sphere_batch(rng, 3, noise=0.8)
    dataset = Dataset(images=images, names=["t0", "t1", "t2"], voxel_size=10.0, masks=masks, kind="target")
    write_dataset(tmp_path / "target.h5", dataset)
    return tmp_path / "target.h5"


def test_writes_pseudo_labels_and_prints_coverage(runner, tmp_path: Path, model: Path, target: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pseudo.h5"
    result = runner.invoke(
        app,
        [
            "pseudo-label",
            str(model.parent),
            str(target),
            "-o",
            str(out),
            "--json",
            "--preview",
            str(tmp_path / "p.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["eta"] == 0.9 and summary["denoiser"] == "ibf" and summary["weights"] == "teacher"
    written = read_h5_dataset(out)
    confident = written.params["confident"] > 0
    assert summary["coverage"] == pytest.approx(float(confident.mean()))
    assert summary["foreground_fraction"] == pytest.approx(written.masks.sum() / confident.sum())
    assert np.array_equal(confident, written.confidence >= 0.9)
    assert written.masks[~confident].sum() == 0
    assert np.allclose(written.images, read_h5_dataset(target).images)
    assert summary["accuracy_on_confident"] > 0.95
    assert (tmp_path / "p.png").exists()


def test_options_override_the_model_file(runner, tmp_path: Path, model: Path, target: Path) -> None:  # type: ignore[no-untyped-def]
    coverage = {}
    for eta in ("0.6", "0.99"):
        out = tmp_path / f"pseudo_{eta}.h5"
        result = runner.invoke(
            app, ["pseudo-label", str(model), str(target), "-o", str(out), "--eta", eta, "--denoiser", "none", "--json"]
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["denoiser"] == "none" and summary["eta"] == float(eta)
        coverage[eta] = summary["coverage"]
    assert coverage["0.6"] > coverage["0.99"]
    table = runner.invoke(app, ["pseudo-label", str(model), str(target), "-o", str(tmp_path / "t.h5")])
    assert table.exit_code == 0 and "coverage" in table.output


def test_bad_inputs_exit_2_and_write_nothing(runner, tmp_path: Path, model: Path, target: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "junk.pt").write_bytes(b"junk")
    write_mrc(tmp_path / "big.mrc", Volume(np.zeros((40, 40, 40), np.float32)))
    nan = np.zeros((32, 32, 32), np.float32)
    nan[0, 0, 0] = np.nan
    write_mrc(tmp_path / "nan.mrc", Volume(nan))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = str(tmp_path / "out.h5")
    cases = [
        ([str(tmp_path / "junk.pt"), str(target), "-o", out], "not a voxuda model file"),
        ([str(model), str(tmp_path / "big.mrc"), "-o", out], "model box"),
        ([str(model), str(tmp_path / "nan.mrc"), "-o", out], "NaN"),
        ([str(model), str(target), "-o", str(tmp_path / "out.mrc")], ".h5"),
        ([str(model), str(target), "-o", out, "--eta", "0.2"], "--eta"),
        ([str(model), str(target), "-o", out, "--denoiser", "median"], "--denoiser"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["pseudo-label", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
