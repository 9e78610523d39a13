"""OME-Zarr in and out (skipped without the optional extra)."""

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")

from tests.inference.models import threshold_network, write_model  # noqa: E402
from voxuda_cli.cli.app import app  # noqa: E402
from voxuda_cli.io.mrc import read_mrc, write_mrc  # noqa: E402
from voxuda_cli.io.sources import expand_mrc_paths, input_kind  # noqa: E402
from voxuda_cli.io.volume import Volume  # noqa: E402
from voxuda_cli.io.zarr import read_zarr, write_ome_zarr  # noqa: E402


def test_round_trip_keeps_data_voxel_size_and_origin(tmp_path):
    data = np.random.default_rng(0).normal(size=(40, 48, 56)).astype(np.float32)
    write_ome_zarr(tmp_path / "t.zarr", data, (13.5, 13.5, 13.5), (27.0, 0.0, -13.5))
    volume = read_zarr(tmp_path / "t.zarr")
    assert volume.voxel_size == (13.5,) * 3 and volume.origin == (27.0, 0.0, -13.5)
    np.testing.assert_array_equal(volume.data[:], data)
    np.testing.assert_array_equal(volume.data[3:5, 10:20], data[3:5, 10:20])  # read chunk-wise, as numpy
    assert input_kind(tmp_path / "t.zarr") == "zarr" and expand_mrc_paths([tmp_path]) == [tmp_path / "t.zarr"]
    assert read_mrc(tmp_path / "t.zarr").shape == (40, 48, 56)  # accepted wherever an MRC is


def test_reads_ngff_0_5_in_nanometres(tmp_path):
    """NGFF 0.5 keeps its metadata under ``ome``; its axes here in nanometres (written with zarr
    alone: the metadata's shape is what is read, whichever zarr format holds it)."""
    import zarr

    data = np.arange(32 * 32 * 32, dtype=np.float32).reshape(32, 32, 32)
    group = zarr.open_group(str(tmp_path / "n.zarr"), mode="w")
    array = zarr.open_array(str(tmp_path / "n.zarr" / "0"), mode="w", shape=data.shape, chunks=(16,) * 3, dtype="f4")
    array[:] = data
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    scale = [{"type": "scale", "scale": [1.35, 1.35, 1.35]}]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": scale}]}]}  # fmt: skip
    volume = read_zarr(tmp_path / "n.zarr")
    assert np.allclose(volume.voxel_size, 13.5) and volume.shape == (32, 32, 32)


def test_not_an_ome_zarr_is_one_line(tmp_path, runner):
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    model = write_model(tmp_path / "m.pt", threshold_network(width=2))
    result = runner.invoke(app, ["predict", str(model), str(tmp_path / "plain.zarr"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "plain.zarr" in result.output and "multiscales" in result.output


def test_predict_zarr_tomogram_to_zarr_with_a_pyramid(tmp_path, runner):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from tests.inference.models import ball

    shape = (40, 48, 56)
    truth = ball(shape, (20, 24, 28), 6)
    data = (truth + np.random.default_rng(0).normal(0, 0.3, shape)).astype(np.float32)
    write_ome_zarr(tmp_path / "tomo.zarr", data, (10.0, 10.0, 10.0), (5.0, 6.0, 7.0))
    write_mrc(tmp_path / "tomo.mrc", Volume(data, voxel_size=10.0, origin=(5.0, 6.0, 7.0)))
    model = write_model(tmp_path / "m.pt", threshold_network(width=2))
    result = runner.invoke(app, ["predict", str(model), str(tmp_path / "tomo.zarr"), "-o", str(tmp_path / "seg.zarr"),
                                 "--probabilities"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        runner.invoke(
            app, ["predict", str(model), str(tmp_path / "tomo.mrc"), "-o", str(tmp_path / "seg.mrc")]
        ).exit_code
        == 0
    )
    segmentation = read_zarr(tmp_path / "seg.zarr")
    assert (
        segmentation.shape == shape
        and segmentation.voxel_size == (10.0,) * 3
        and segmentation.origin == (5.0, 6.0, 7.0)
    )
    np.testing.assert_array_equal(segmentation.data[:], read_mrc(tmp_path / "seg.mrc").data)  # same as from the MRC
    assert read_zarr(tmp_path / "seg_probabilities.zarr").shape == shape
    # what napari's reader gets: one labels image (a labels layer, not an image layer), with its pyramid
    from ome_zarr.reader import Label

    [node] = [n for n in Reader(parse_url(str(tmp_path / "seg.zarr")))() if n.data]
    assert node.load(Label) is not None and "image-label" in node.zarr.root_attrs
    assert [tuple(level.shape) for level in node.data] == [shape, (20, 24, 28), (10, 12, 14)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left


def test_stores_get_the_modes_the_umask_gives(tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        write_ome_zarr(tmp_path / "m.zarr", np.zeros((16, 16, 16), np.int8), (10.0,) * 3, (0.0,) * 3, label="mask")
    finally:
        os.umask(previous)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "m.zarr", *(tmp_path / "m.zarr").rglob("*")]
             if p.is_dir()}  # fmt: skip
    files = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m.zarr").rglob("*") if p.is_file()}
    assert modes == {0o755} and files == {0o644}
    assert read_zarr(tmp_path / "m.zarr").shape == (16, 16, 16)  # a labels image reads as any image


def test_extract_from_zarr_equals_extract_from_mrc(tmp_path):
    import pandas as pd

    from voxuda_cli.extract import ExtractSettings, plan_extraction, write_subtomograms
    from voxuda_cli.io.dataset import read_h5_dataset

    data = np.random.default_rng(1).normal(size=(40, 48, 56)).astype(np.float32)
    write_ome_zarr(tmp_path / "TS_01.zarr", data, (13.5,) * 3, (0.0, 0.0, 0.0))
    (tmp_path / "m").mkdir()
    write_mrc(tmp_path / "m" / "TS_01.mrc", Volume(data, voxel_size=13.5))
    pd.DataFrame({"x": [20, 30], "y": [24, 20], "z": [20, 18]}).to_csv(tmp_path / "TS_01.csv", index=False)
    outputs = []
    for name, tomogram in (("z.h5", tmp_path / "TS_01.zarr"), ("m.h5", tmp_path / "m" / "TS_01.mrc")):
        plan = plan_extraction([tomogram], [tmp_path / "TS_01.csv"], ExtractSettings(box=16, voxel_size=10.0))
        write_subtomograms(tmp_path / name, plan, "{}")
        outputs.append(read_h5_dataset(tmp_path / name).images)
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)  # FFT rounding depends on memory layout
