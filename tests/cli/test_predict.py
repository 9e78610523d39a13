import json
from pathlib import Path

import numpy as np
import pytest

from tests.inference.models import ball, random_network, sphere_batch, threshold_network, write_model
from voxuda_cli.cli.app import app
from voxuda_cli.io.dataset import Dataset, read_h5_dataset, write_dataset
from voxuda_cli.io.mrc import read_mrc, write_mrc
from voxuda_cli.io.volume import Volume
from voxuda_cli.models import int8
from voxuda_cli.patches import PatchifySettings, write_patches


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "run" / "model.pt", threshold_network(width=2))


@pytest.fixture
def spheres(tmp_path: Path, rng: np.random.Generator) -> Path:
    images, masks = sphere_batch(rng, 3)
    dataset = Dataset(images=images, names=["s0", "s1", "s2"], voxel_size=10.0, masks=masks, classes=["a", "b", "b"])
    write_dataset(tmp_path / "spheres.h5", dataset)
    return tmp_path / "spheres.h5"


def _tomogram(path: Path, rng: np.random.Generator, shape=(40, 48, 56)) -> np.ndarray:  # type: ignore[no-untyped-def]
    truth = ball(shape, (20, 20, 20), 7) | ball(shape, (20, 30, 40), 6)
    volume = (truth + rng.normal(0, 0.4, shape)).astype(np.float32)
    write_mrc(path, Volume(volume, voxel_size=12.0, origin=(3.0, 2.0, 1.0), labels=["acquired"]))
    return truth


def _invoke(runner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["predict", *args])


def test_dataset_to_dataset_with_probabilities_then_score(runner, tmp_path: Path, model: Path, spheres: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pred.h5"
    result = _invoke(runner, str(model.parent), str(spheres), "-o", str(out), "--probabilities", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["outputs"] == [str(out)] and len(summary["volumes"]) == 3
    predicted, source = read_h5_dataset(out), read_h5_dataset(spheres)
    assert predicted.kind == "prediction" and predicted.names == source.names and predicted.classes == source.classes
    assert np.allclose(predicted.images, source.images)
    assert 0.0 <= predicted.probabilities.min() and predicted.probabilities.max() <= 1.0
    assert np.array_equal(predicted.masks, (predicted.probabilities.astype(np.float32) > 0.5).astype(np.uint8))
    scored = runner.invoke(app, ["score", str(out), str(spheres), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["mean"]["dice"] > 0.8


def test_a_folder_with_probability_maps_scores_its_masks(runner, tmp_path: Path, model: Path, spheres: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "masks"
    assert _invoke(runner, str(model), str(spheres), "-o", str(out), "--probabilities").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"s{i}{s}.mrc" for i in range(3) for s in ("", "_probabilities")]
    truth = tmp_path / "truth"
    truth.mkdir()
    for name, mask in zip(("s0", "s1", "s2"), read_h5_dataset(spheres).masks):  # type: ignore[union-attr]
        write_mrc(truth / f"{name}.mrc", Volume(mask.astype(np.int8), voxel_size=10.0))
    scored = runner.invoke(app, ["score", str(out), str(truth), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["n"] == 3


def test_dataset_to_a_folder_of_mrc_files_with_preview(runner, tmp_path: Path, model: Path, spheres: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "masks"
    result = _invoke(runner, str(model), str(spheres), "-o", str(out), "--preview", str(tmp_path / "p.png"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["s0.mrc", "s1.mrc", "s2.mrc"]
    assert read_mrc(out / "s0.mrc").voxel_size == (10.0, 10.0, 10.0)
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_box_mrc_files_keep_their_headers(runner, tmp_path: Path, model: Path, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    images, _ = sphere_batch(rng, 2)
    for index, image in enumerate(images):
        write_mrc(tmp_path / "in" / f"sub{index}.mrc", Volume(image, voxel_size=9.0, origin=(index, 0.0, 0.0)))
    result = _invoke(runner, str(model), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--probabilities")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["sub0.mrc", "sub0_probabilities.mrc", "sub1.mrc", "sub1_probabilities.mrc"]
    mask = read_mrc(tmp_path / "out" / "sub1.mrc")
    assert mask.origin == (1.0, 0.0, 0.0) and mask.voxel_size == (9.0, 9.0, 9.0)


def test_whole_tomogram_keeps_shape_voxel_size_and_origin(runner, tmp_path: Path, model: Path, rng) -> None:  # type: ignore[no-untyped-def]
    truth = _tomogram(tmp_path / "tomo.mrc", rng)
    result = _invoke(
        runner, str(model), str(tmp_path / "tomo.mrc"), "-o", str(tmp_path / "out"), "--probabilities",
        "--tta", "--min-size", "20", "--batch-size", "6", "--json", "--preview", str(tmp_path / "t.png"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)["volumes"]
    # 12 A resampled to the model's 10 A: 48 x 58 x 67 voxels, one window (each axis rounded up to a
    # multiple of 8, the border edge-padded)
    assert record["windows"] == 1 and record["window"] == [48, 64, 72] and record["shape"] == [40, 48, 56]
    mask, probabilities = read_mrc(tmp_path / "out" / "tomo.mrc"), read_mrc(tmp_path / "out" / "tomo_probabilities.mrc")
    for output in (mask, probabilities):
        assert output.shape == (40, 48, 56) and output.voxel_size == (12.0, 12.0, 12.0)
        assert output.origin == (3.0, 2.0, 1.0) and output.labels[0] == "acquired"
    assert 0.0 <= probabilities.data.min() and probabilities.data.max() <= 1.0
    overlap = np.logical_and(mask.data > 0, truth > 0).sum()
    assert 2 * overlap / (int((mask.data > 0).sum()) + int(truth.sum())) > 0.8
    assert (tmp_path / "t.png").exists()


@pytest.mark.skipif(not int8.supported(), reason="torch without oneDNN's int8 convolution")
def test_int8_segments_a_whole_tomogram_and_says_so(runner, tmp_path: Path, model: Path, rng) -> None:  # type: ignore[no-untyped-def]
    truth = _tomogram(tmp_path / "tomo.mrc", rng)
    args = [str(model), str(tmp_path / "tomo.mrc"), "--json"]
    result = _invoke(runner, *args, "-o", str(tmp_path / "int8"), "--int8")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["numerics"] == "int8"
    assert _invoke(runner, *args, "-o", str(tmp_path / "float")).exit_code == 0
    got, reference = read_mrc(tmp_path / "int8" / "tomo.mrc").data, read_mrc(tmp_path / "float" / "tomo.mrc").data
    assert np.mean(got == reference) > 0.99
    assert 2 * np.logical_and(got > 0, truth > 0).sum() / (int((got > 0).sum()) + int(truth.sum())) > 0.8


def test_patchified_dataset_is_stitched_to_its_parent(runner, tmp_path: Path, model: Path, rng) -> None:  # type: ignore[no-untyped-def]
    truth = _tomogram(tmp_path / "tomo.mrc", rng, shape=(40, 48, 48))
    write_patches(
        tmp_path / "patches.h5",
        [("tomo", read_mrc(tmp_path / "tomo.mrc"))],
        PatchifySettings(patch=32, resize=64),
        json.dumps({}),
    )
    result = _invoke(runner, str(model), str(tmp_path / "patches.h5"), "-o", str(tmp_path / "tomo_mask.mrc"))
    assert result.exit_code == 0, result.output
    mask = read_mrc(tmp_path / "tomo_mask.mrc")
    assert mask.shape == (40, 48, 48) and mask.voxel_size == (12.0, 12.0, 12.0) and mask.origin == (3.0, 2.0, 1.0)
    overlap = np.logical_and(mask.data > 0, truth > 0).sum()
    assert 2 * overlap / (int((mask.data > 0).sum()) + int(truth.sum())) > 0.75
    per_patch = _invoke(runner, str(model), str(tmp_path / "patches.h5"), "-o", str(tmp_path / "patches_pred.h5"))
    assert per_patch.exit_code == 0, per_patch.output
    predicted = read_h5_dataset(tmp_path / "patches_pred.h5")
    assert predicted.is_patchified and len(predicted) == 8 and "parents_info" in predicted.attrs


def test_config_file_sets_the_threshold(runner, tmp_path: Path, model: Path, spheres: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "c.toml").write_text("[predict]\nthreshold = 0.9\nmin_size = 5\n")
    out = tmp_path / "pred.h5"
    result = _invoke(runner, str(model), str(spheres), "-o", str(out), "--config", str(tmp_path / "c.toml"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threshold"] == 0.9
    assert json.loads(read_h5_dataset(out).attrs["provenance"])["options"]["min_size"] == 5


def test_bad_inputs_exit_2_and_write_nothing(runner, tmp_path: Path, model: Path, spheres: Path, rng) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "junk.pt").write_bytes(b"junk")
    big = Dataset(images=rng.normal(size=(2, 40, 40, 40)).astype(np.float32), names=["a", "b"])
    write_dataset(tmp_path / "big.h5", big)
    nan = rng.normal(size=(40, 40, 48)).astype(np.float32)
    nan[39, 3, 3] = np.nan
    write_mrc(tmp_path / "nan.mrc", Volume(nan, voxel_size=10.0))
    _tomogram(tmp_path / "tomo.mrc", rng)
    write_mrc(tmp_path / "small.mrc", Volume(np.zeros((24, 24, 24), np.float32), voxel_size=10.0))
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = [
        ([str(tmp_path / "junk.pt"), str(spheres)], "not a voxuda model file"),
        ([str(tmp_path / "nothing"), str(spheres)], "no model file"),
        ([str(model), str(tmp_path / "big.h5")], "model box"),
        ([str(model), str(tmp_path / "nan.mrc")], "NaN"),
        ([str(model), str(tmp_path / "small.mrc")], "smaller than the model box"),
        ([str(model), str(tmp_path / "tomo.mrc"), "--overlap", "1.5"], "--overlap"),
        ([str(model), str(spheres), "--normalise", "median"], "--normalise"),
    ]
    for args, message in cases:
        result = _invoke(runner, *args, "-o", str(tmp_path / "out"))
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    tomogram_to_dataset = _invoke(runner, str(model), str(tmp_path / "tomo.mrc"), "-o", str(tmp_path / "o.h5"))
    assert tomogram_to_dataset.exit_code == 2 and "MRC" in tomogram_to_dataset.output
    many_to_one = _invoke(runner, str(model), str(spheres), "-o", str(tmp_path / "one.mrc"))
    assert many_to_one.exit_code == 2 and "one MRC file" in many_to_one.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_student_weights_and_help(runner, tmp_path: Path, spheres: Path) -> None:  # type: ignore[no-untyped-def]
    write_model(tmp_path / "model.pt", random_network(width=2), teacher=threshold_network(width=2))
    student = _invoke(runner, str(tmp_path), str(spheres), "-o", str(tmp_path / "s.h5"), "--json")
    teacher = _invoke(runner, str(tmp_path), str(spheres), "-o", str(tmp_path / "t.h5"), "--use", "teacher", "--json")
    assert student.exit_code == 0 and teacher.exit_code == 0, student.output + teacher.output
    assert json.loads(student.stdout)["weights"] == "student"  # predict's default
    assert json.loads(teacher.stdout)["weights"] == "teacher"
    assert not np.array_equal(read_h5_dataset(tmp_path / "s.h5").masks, read_h5_dataset(tmp_path / "t.h5").masks)
    assert "--overlap" in runner.invoke(app, ["predict", "--help"]).output


def test_lost_header_voxel_size_refused_and_overridden(runner, tmp_path: Path, model: Path, rng) -> None:  # type: ignore[no-untyped-def]
    volume = (ball((40, 40, 48), (20, 20, 24), 7) + rng.normal(0, 0.4, (40, 40, 48))).astype(np.float32)
    write_mrc(tmp_path / "lost.mrc", Volume(volume, voxel_size=1.0))
    result = _invoke(runner, str(model), str(tmp_path / "lost.mrc"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "lost.mrc" in result.output and "--input-voxel-size" in result.output
    assert not (tmp_path / "out").exists()
    args = [str(model), str(tmp_path / "lost.mrc"), "-o", str(tmp_path / "out"), "--input-voxel-size", "13.5"]
    result = _invoke(runner, *args)
    assert result.exit_code == 0, result.output
    output = read_mrc(tmp_path / "out" / "lost.mrc")
    assert output.shape == (40, 40, 48) and output.voxel_size == (13.5, 13.5, 13.5)


def test_dark_inputs_are_refused_then_flipped_under_polarity_auto(runner, tmp_path: Path, model: Path, rng) -> None:  # type: ignore[no-untyped-def]
    images, masks = sphere_batch(rng, 6)
    names = [f"s{i}" for i in range(6)]
    write_dataset(tmp_path / "bright.h5", Dataset(images=images, names=names, voxel_size=10.0, masks=masks))
    write_dataset(tmp_path / "dark.h5", Dataset(images=-images, names=names, voxel_size=10.0, masks=masks))
    refused = _invoke(runner, str(model), str(tmp_path / "dark.h5"), "-o", str(tmp_path / "refused.h5"))
    assert refused.exit_code == 2 and "protein looks dark" in refused.output and "--polarity auto" in refused.output
    assert not (tmp_path / "refused.h5").exists()
    for name, extra in (("bright", []), ("dark", ["--polarity", "auto"])):
        result = _invoke(
            runner, str(model), str(tmp_path / f"{name}.h5"), "-o", str(tmp_path / f"{name}_pred.h5"), *extra
        )
        assert result.exit_code == 0, result.output
    bright, dark = (read_h5_dataset(tmp_path / f"{n}_pred.h5").masks for n in ("bright", "dark"))
    assert np.array_equal(bright, dark) and bright.any()
    tomogram = tmp_path / "dark_tomo.mrc"
    truth = _tomogram(tomogram, rng)
    data = read_mrc(tomogram)
    write_mrc(tomogram, Volume(-data.data, voxel_size=12.0))
    assert _invoke(runner, str(model), str(tomogram), "-o", str(tmp_path / "t.mrc")).exit_code == 2
    flipped = _invoke(runner, str(model), str(tomogram), "-o", str(tmp_path / "t.mrc"), "--polarity", "auto")
    assert flipped.exit_code == 0, flipped.output
    assert (read_mrc(tmp_path / "t.mrc").data.astype(bool) & truth).sum() > 0.5 * truth.sum()


def test_smooth_keeps_each_box_expected_volume_and_refuses_tomograms(runner, tmp_path: Path, model: Path, rng) -> None:  # type: ignore[no-untyped-def]
    images, masks = sphere_batch(rng, 4)
    write_dataset(tmp_path / "in.h5", Dataset(images=images, names=[f"s{i}" for i in range(4)], voxel_size=10.0))
    args = [str(model), str(tmp_path / "in.h5"), "-o", str(tmp_path / "smooth.h5"), "--smooth", "20", "--probabilities"]
    result = _invoke(runner, *args)
    assert result.exit_code == 0, result.output
    smooth = read_h5_dataset(tmp_path / "smooth.h5")
    assert smooth.masks is not None and smooth.probabilities is not None
    expected = np.round(smooth.probabilities.sum(axis=(1, 2, 3), dtype=np.float64))
    # (the stored probabilities are rounded to the file's precision)
    assert np.abs(smooth.masks.sum(axis=(1, 2, 3)) - expected).max() <= 2 and expected.min() > 100
    _tomogram(tmp_path / "tomo.mrc", rng)
    refused = _invoke(runner, str(model), str(tmp_path / "tomo.mrc"), "-o", str(tmp_path / "out"), "--smooth", "20")
    assert refused.exit_code == 2 and "--smooth" in refused.output and "whole tomogram" in refused.output
    assert not (tmp_path / "out").exists()


def test_a_margin_that_leaves_no_core_is_refused_before_anything_is_written(
    runner, tmp_path: Path, model: Path, rng
) -> None:  # type: ignore[no-untyped-def]
    _tomogram(tmp_path / "tomo.mrc", rng)
    result = _invoke(runner, str(model), str(tmp_path / "tomo.mrc"), "-o", str(tmp_path / "out"), "--window", "32")
    assert result.exit_code == 2 and "--margin 16" in result.output and "half the window" in result.output
    assert not (tmp_path / "out").exists()


def test_a_stopped_predict_leaves_no_empty_output_folder(runner, tmp_path: Path, model: Path, rng, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from voxuda_cli.inference.predictor import Predictor

    _tomogram(tmp_path / "tomo.mrc", rng)

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # what SIGINT raises (voxuda_cli.signals)

    monkeypatch.setattr(Predictor, "predict_tomogram", interrupted)
    result = _invoke(runner, str(model), str(tmp_path / "tomo.mrc"), "-o", str(tmp_path / "out" / "masks"))
    assert result.exit_code == 130, result.output
    assert not (tmp_path / "out").exists()


def test_shards_partition_the_inputs_and_skip_existing_finishes_only_what_is_missing(
    runner, tmp_path: Path, model: Path, rng
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "tomos"
    folder.mkdir()
    for index in range(6):
        _tomogram(folder / f"TS_{index:02d}.mrc", rng)
    out = tmp_path / "masks"
    predicted = []
    for shard in ("1/3", "2/3", "3/3"):
        result = _invoke(runner, str(model), str(folder), "-o", str(out), "--shard", shard, "--json")
        assert result.exit_code == 0, result.output
        predicted += [v["name"] for v in json.loads(result.stdout)["volumes"]]
    assert sorted(predicted) == [f"TS_{i:02d}" for i in range(6)]  # every input once, in exactly one shard
    assert sorted(p.name for p in out.iterdir()) == [f"TS_{i:02d}.mrc" for i in range(6)]
    # a run killed after some outputs (atomic: the others do not exist), then rerun with --skip-existing
    for name in ("TS_01.mrc", "TS_04.mrc"):
        (out / name).unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    result = _invoke(runner, str(model), str(folder), "-o", str(out), "--skip-existing", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(v["name"] for v in json.loads(result.stdout)["volumes"]) == ["TS_01", "TS_04"]
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in kept.items())
    bad = _invoke(runner, str(model), str(folder), "-o", str(out), "--shard", "4/3")
    assert bad.exit_code == 2 and "--shard 4/3" in bad.output
