"""copick projects: tomograms in, segmentations and picks out (read back by copick itself), picks in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

copick = pytest.importorskip("copick")

from tests.inference.models import ball, threshold_network, write_model  # noqa: E402
from voxuda_cli.cli.app import app  # noqa: E402
from voxuda_cli.errors import VoxudaInputError  # noqa: E402
from voxuda_cli.io.copick import is_copick_locator, parse_locator, run_name  # noqa: E402
from voxuda_cli.io.dataset import read_h5_dataset  # noqa: E402
from voxuda_cli.io.sources import expand_mrc_paths, volume_name  # noqa: E402
from voxuda_cli.io.zarr import read_zarr  # noqa: E402

SHAPE = (40, 48, 56)
CENTRES = {"TS_01": [(20, 16, 18), (20, 32, 40)], "TS_02": [(14, 24, 28)]}
SEGMENTATION = "segmentation=ribosome:user=voxuda:session=1"
PICKS = "object=ribosome:user=voxuda:session=1"


def _project(tmp_path: Path, seed: int = 0) -> Path:
    """A filesystem copick project: runs TS_01 and TS_02, each a wbp tomogram at 10 A with bright balls."""
    root = tmp_path / "project"
    root.mkdir()
    config = {
        "config_type": "filesystem",
        "name": "test",
        "version": "1.0.0",
        "pickable_objects": [
            {"name": "ribosome", "is_particle": True, "label": 1, "color": [0, 255, 0, 255], "radius": 60}
        ],
        "overlay_root": f"local://{root}/overlay",
        "static_root": f"local://{root}/static",
        "overlay_fs_args": {"auto_mkdir": True},
    }
    (root / "copick.json").write_text(json.dumps(config))
    project = copick.from_file(str(root / "copick.json"))
    rng = np.random.default_rng(seed)
    for name, centres in CENTRES.items():
        truth = np.zeros(SHAPE, np.uint8)
        for centre in centres:
            truth |= ball(SHAPE, centre, 6)
        tomogram = project.new_run(name).new_voxel_spacing(10.0).new_tomogram("wbp")
        tomogram.from_numpy((truth + rng.normal(0, 0.4, SHAPE)).astype(np.float32))
    return root / "copick.json"


def test_locators_parse_and_name_their_runs(tmp_path: Path) -> None:
    config = _project(tmp_path)
    assert is_copick_locator(f"{config}:tomogram=wbp") and not is_copick_locator(tmp_path / "t.mrc")
    assert parse_locator(f"{config}:tomogram=wbp:spacing=10").spacing == 10.0
    stores = expand_mrc_paths([f"{config}:tomogram=wbp:spacing=10"])
    assert [volume_name(p) for p in stores] == ["TS_01", "TS_02"] and all(p.name == "wbp.zarr" for p in stores)
    assert [run_name(p) for p in stores] == ["TS_01", "TS_02"] and run_name(tmp_path / "TS_01.mrc") is None
    assert [volume_name(p) for p in expand_mrc_paths([f"{config}:tomogram=wbp:spacing=10:runs=TS_02"])] == ["TS_02"]
    assert parse_locator(f"{config}:segmentation=ribosome:user=my_user").get("user") == "my-user"  # as copick writes it
    for bad, words in (
        (f"{config}:tomo=wbp", "KEY=VALUE"),
        (f"{config}:spacing=ten", "spacing=ten"),
        (f"{config}:tomogram=denoised:spacing=10", "no run of the project has"),
        (f"{config}:tomogram=wbp", "needs spacing"),
        (f"{config}:tomogram=wbp:spacing=10:runs=TS_09", "no run TS_09"),
        (f"{config}:tomogram=wbp:tomogram=wbp:spacing=10", "twice"),
        (f"{tmp_path / 'none.json'}:tomogram=wbp:spacing=10", "not found"),
    ):
        with pytest.raises(VoxudaInputError, match=words):
            expand_mrc_paths([bad])


def test_predict_picks_extract_round_trip_through_copick(tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    config = _project(tmp_path)
    model = write_model(tmp_path / "run" / "model.pt", threshold_network(width=2))
    tomograms = f"{config}:tomogram=wbp:spacing=10"
    predicted = runner.invoke(app, ["predict", str(model), tomograms, "-o", f"{config}:{SEGMENTATION}", "--json"])
    assert predicted.exit_code == 0, predicted.output
    project = copick.from_file(str(config))  # read back by copick itself
    for name, centres in CENTRES.items():
        [segmentation] = project.get_run(name).get_segmentations(name="ribosome", user_id="voxuda", session_id="1")
        mask = segmentation.numpy()
        truth = sum(ball(SHAPE, c, 6) for c in centres) > 0
        assert segmentation.voxel_size == 10.0 and mask.shape == SHAPE
        assert 2 * np.logical_and(mask > 0, truth).sum() / ((mask > 0).sum() + truth.sum()) > 0.8

    instances = tmp_path / "instances"
    found = runner.invoke(
        app,
        [
            "picks",
            f"{config}:{SEGMENTATION}",
            "-o",
            f"{config}:{PICKS}",
            "--min-size",
            "50",
            "--instances",
            str(instances),
        ],
    )
    assert found.exit_code == 0, found.output
    labels = read_zarr(instances / "TS_01_instances.zarr")  # OME-Zarr in, NGFF labels out
    assert np.asarray(labels.data).max() == 2 and labels.voxel_size == (10.0, 10.0, 10.0)
    project = copick.from_file(str(config))
    for name, centres in CENTRES.items():
        [picks] = project.get_run(name).get_picks(object_name="ribosome", user_id="voxuda", session_id="1")
        located = np.sort(picks.numpy()[0][:, ::-1] / 10.0, axis=0)  # angstrom x, y, z -> voxels z, y, x
        assert np.abs(located - np.sort(np.array(centres, float), axis=0)).max() < 1.0
        assert np.all((picks.scores() > 0.5) & (picks.scores() <= 1.0))  # mean probabilities

    boxes = tmp_path / "boxes.h5"
    coords = f"{config}:object=ribosome:user=voxuda"
    extracted = runner.invoke(app, ["extract", tomograms, "--coords", coords, "-o", str(boxes), "--box", "16"])
    assert extracted.exit_code == 0, extracted.output
    dataset = read_h5_dataset(boxes)
    assert sorted(set(dataset.parents or [])) == ["TS_01", "TS_02"] and len(dataset) == 3
    one_run = [f"{tomograms}:runs=TS_02", "--coords", coords, "-o", str(tmp_path / "one.h5"), "--box", "16"]
    assert runner.invoke(app, ["extract", *one_run]).exit_code == 0  # the project's other runs' picks are no error
    assert read_h5_dataset(tmp_path / "one.h5").parents == ["TS_02"]
    expected = sorted(tuple(c) for centres in CENTRES.values() for c in centres)
    assert sorted(tuple(int(v) for v in dataset.coords_at(i)) for i in range(len(dataset))) == expected


def test_skip_existing_skips_completed_copick_segmentations(tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    config = _project(tmp_path)
    model = write_model(tmp_path / "run" / "model.pt", threshold_network(width=2))
    arguments = ["predict", str(model), f"{config}:tomogram=wbp:spacing=10", "-o", f"{config}:{SEGMENTATION}"]
    assert runner.invoke(app, [*arguments, "--shard", "1/2"]).exit_code == 0
    rerun = runner.invoke(app, [*arguments, "--skip-existing", "--json"])
    assert rerun.exit_code == 0, rerun.output
    done = copick.from_file(str(config))
    assert all(run.get_segmentations(name="ribosome", user_id="voxuda", session_id="1") for run in done.runs)
    predicted = [record["name"] for record in json.loads(rerun.stdout)["volumes"]]
    assert len(predicted) == 1  # the first shard's run was not predicted again


def test_skip_existing_into_a_project_names_an_input_that_is_no_run(tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    from voxuda_cli.io.mrc import write_mrc
    from voxuda_cli.io.volume import Volume

    config = _project(tmp_path)
    model = write_model(tmp_path / "run" / "model.pt", threshold_network(width=2))
    write_mrc(tmp_path / "other.mrc", Volume(np.zeros(SHAPE, np.float32) + 1, voxel_size=(10.0,) * 3))
    arguments = [
        "predict",
        str(model),
        str(tmp_path / "other.mrc"),
        "-o",
        f"{config}:{SEGMENTATION}",
        "--skip-existing",
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2 and "no run other" in result.output


@pytest.mark.parametrize(
    ("output", "extra", "words"),
    [
        ("segmentation=membrane:user=voxuda:session=1", [], "not a pickable object"),
        ("segmentation=ribosome:user=voxuda", [], "needs session"),
        (SEGMENTATION, ["--probabilities"], "label images"),
    ],
)
def test_predict_into_copick_refuses_bad_outputs_before_work(tmp_path: Path, runner, output, extra, words) -> None:  # type: ignore[no-untyped-def]
    config = _project(tmp_path)
    model = write_model(tmp_path / "run" / "model.pt", threshold_network(width=2))
    result = runner.invoke(
        app, ["predict", str(model), f"{config}:tomogram=wbp:spacing=10", "-o", f"{config}:{output}", *extra]
    )
    assert result.exit_code == 2 and words in result.output and len(result.output.strip().splitlines()) == 1
    assert not copick.from_file(str(config)).get_run("TS_01").get_segmentations()


def test_a_project_denoises_into_a_folder_named_by_run(tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    config = _project(tmp_path)
    out = tmp_path / "denoised"
    tomograms = f"{config}:tomogram=wbp:spacing=10"
    result = runner.invoke(app, ["ibf-denoise", tomograms, "-o", str(out), "--denoiser", "bf"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["TS_01.mrc", "TS_02.mrc"]
