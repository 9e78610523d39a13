import h5py
import imodmodel
import numpy as np
import pandas as pd
import pytest
import starfile
from scipy import ndimage

from tests.extract_data import BLOBS, ORIGIN, SHAPE, VOXEL, blob_tomogram, relion4_frame, relion5_frame, star_by_hand
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.extract import ExtractSettings, plan_extraction, write_subtomograms
from voxuda_cli.io import read_h5_dataset


@pytest.fixture()
def tomogram(tmp_path):
    return blob_tomogram(tmp_path / "TS_01.mrc")


def extract(tmp_path, tomogram, coords, name="out.h5", **settings):
    settings = ExtractSettings(**{"box": 32, "voxel_size": 10.0, **settings})
    plan = plan_extraction([tomogram], [coords], settings)
    output = tmp_path / name
    summary = write_subtomograms(output, plan, "{}")
    return read_h5_dataset(output), summary


def test_every_blob_lands_within_one_voxel_of_the_box_centre(tmp_path, tomogram):
    starfile.write(relion4_frame("TS_01"), tmp_path / "picks.star")
    dataset, summary = extract(tmp_path, tomogram, tmp_path / "picks.star")
    assert len(dataset) == len(BLOBS) and dataset.voxel_size == 10.0 and dataset.box == (32, 32, 32)
    for image in dataset.images:
        peak = np.unravel_index(np.argmax(ndimage.gaussian_filter(image, 1.0)), image.shape)
        assert np.abs(np.array(peak) - 16).max() <= 1, peak
    assert sorted(dataset.names)[0] == "TS_01_00000" and dataset.is_extracted and not dataset.is_patchified
    by_name = dict(zip(dataset.names, dataset.coords.tolist()))
    assert by_name["TS_01_00002"] == list(BLOBS[2])
    padded = dict(zip(dataset.names, dataset.params["padded"]))
    assert padded["TS_01_00000"] == 0 and padded["TS_01_00004"] > 0 and summary["tomograms"][0]["padded"] == 2
    with h5py.File(tmp_path / "out.h5") as handle:
        import json

        info = json.loads(handle.attrs["parents_info"])["TS_01"]
    assert info["shape"] == list(SHAPE) and info["voxel_size"] == [VOXEL] * 3 and info["origin"] == list(ORIGIN)


def test_relion4_relion5_csv_and_imod_picks_give_the_same_subtomograms(tmp_path, tomogram):
    zyx = np.asarray(BLOBS, dtype=float)
    files = {
        "r4.star": lambda p: starfile.write(relion4_frame("TS_01"), p),
        "r4_hand.star": lambda p: star_by_hand(p, relion4_frame("TS_01")),
        "r5.star": lambda p: starfile.write(relion5_frame("TS_01"), p),
        "r5_hand.star": lambda p: star_by_hand(p, relion5_frame("TS_01")),
        "picks.csv": lambda p: pd.DataFrame({"x": zyx[:, 2], "y": zyx[:, 1], "z": zyx[:, 0]}).to_csv(p, index=False),
        "picks.tsv": lambda p: pd.DataFrame({"X": zyx[:, 2], "Y": zyx[:, 1], "Z": zyx[:, 0]}).to_csv(p, sep="\t"),
        "picks.mod": lambda p: imodmodel.write(
            pd.DataFrame({"object_id": 0, "contour_id": 0, "x": zyx[:, 2] + 0.5, "y": zyx[:, 1] + 0.5, "z": zyx[:, 0]}),
            p,
        ),
    }
    results = {}
    for name, write in files.items():
        write(tmp_path / name)
        dataset, _ = extract(tmp_path, tomogram, tmp_path / name, name=f"{name}.h5")
        results[name] = dataset
    reference = results["r4.star"]
    for name, dataset in results.items():
        assert dataset.names == reference.names, name
        np.testing.assert_array_equal(dataset.images, reference.images, err_msg=name)


@pytest.mark.parametrize("centre", ["half", "half-minus-one"])
def test_relion5_centre_conventions(tmp_path, tomogram, centre):
    starfile.write(relion4_frame("TS_01"), tmp_path / "r4.star")
    starfile.write(relion5_frame("TS_01", centre=centre), tmp_path / "r5.star")
    reference, _ = extract(tmp_path, tomogram, tmp_path / "r4.star", name="r4.h5")
    same, _ = extract(tmp_path, tomogram, tmp_path / "r5.star", name="r5.h5", centre=centre)
    np.testing.assert_array_equal(same.coords, reference.coords)
    other = "half" if centre == "half-minus-one" else "half-minus-one"
    shifted, _ = extract(tmp_path, tomogram, tmp_path / "r5.star", name="r5x.h5", centre=other)
    delta = (shifted.coords - reference.coords).tolist()
    assert all(d == ([1, 1, 1] if other == "half" else [-1, -1, -1]) for d in delta)


def test_skip_border_and_native_voxel_size(tmp_path, tomogram):
    starfile.write(relion4_frame("TS_01"), tmp_path / "picks.star")
    dataset, summary = extract(tmp_path, tomogram, tmp_path / "picks.star", voxel_size=None, border="skip", box=16)
    assert dataset.voxel_size == VOXEL and len(dataset) == len(BLOBS) - 2
    assert summary["tomograms"][0]["skipped_border"] == 2
    settings = ExtractSettings(box=16, voxel_size=None, border="skip")
    assert plan_extraction([tomogram], [tmp_path / "picks.star"], settings).total == len(dataset)  # the bar's total
    data = blob_tomogram(tmp_path / "again.mrc")  # same data: the box is a plain crop
    from voxuda_cli.io import read_mrc

    volume = read_mrc(data).data
    z, y, x = BLOBS[1]  # the lowest z of the kept picks comes first
    assert dataset.names[0] == "TS_01_00001"
    np.testing.assert_array_equal(dataset.images[0], volume[z - 8 : z + 8, y - 8 : y + 8, x - 8 : x + 8])


def test_invert_flips_contrast(tmp_path, tomogram):
    starfile.write(relion4_frame("TS_01"), tmp_path / "picks.star")
    plain, _ = extract(tmp_path, tomogram, tmp_path / "picks.star", name="a.h5")
    # bright blobs inverted look dark: --polarity check refuses, off lets --invert act alone, auto undoes it
    with pytest.raises(VoxudaInputError, match="protein looks dark .* after --invert"):
        extract(tmp_path, tomogram, tmp_path / "picks.star", name="b.h5", invert=True)
    inverted, _ = extract(tmp_path, tomogram, tmp_path / "picks.star", name="b.h5", invert=True, polarity="off")
    np.testing.assert_array_equal(inverted.images, -plain.images)
    undone, _ = extract(tmp_path, tomogram, tmp_path / "picks.star", name="c.h5", invert=True, polarity="auto")
    np.testing.assert_array_equal(undone.images, plain.images)


def test_picks_are_matched_by_tomogram_name_and_file_name(tmp_path, tomogram):
    second = blob_tomogram(tmp_path / "TS_02.mrc", blobs=[(24, 32, 36)], seed=1)
    frame = pd.concat([relion4_frame("TS_01")[:2], relion4_frame("TS_02.mrc", blobs=[(24, 32, 36)])])
    starfile.write(frame, tmp_path / "both.star")
    pd.DataFrame({"x": [36], "y": [32], "z": [24]}).to_csv(tmp_path / "TS_02_picks.csv", index=False)
    plan = plan_extraction(
        [tomogram, second], [tmp_path / "both.star", tmp_path / "TS_02_picks.csv"], ExtractSettings(voxel_size=10.0)
    )
    assert [len(t.centres) for t in plan.tomograms] == [2, 2]
