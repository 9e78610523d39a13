import json

import imodmodel
import pandas as pd
import pytest
import starfile

from tests.extract_data import BLOBS, blob_tomogram, relion4_frame
from voxuda_cli.cli.app import app
from voxuda_cli.io import Volume, read_h5_dataset, write_mrc


@pytest.fixture()
def tomogram(tmp_path):
    return blob_tomogram(tmp_path / "TS_01.mrc")


def test_extract_json(runner, tmp_path, tomogram):
    starfile.write(relion4_frame("TS_01"), tmp_path / "picks.star")
    out = tmp_path / "sub.h5"
    args = ["extract", str(tomogram), "--coords", str(tmp_path / "picks.star"), "-o", str(out), "--voxel-size", "10"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["subtomograms"] == len(BLOBS) and summary["voxel_size"] == 10.0
    dataset = read_h5_dataset(out)
    assert json.loads(dataset.attrs["provenance"])["command"] == "extract"


def _bad_star(path):
    starfile.write(pd.DataFrame({"rlnAngleRot": [1.0, 2.0]}), path)


def _other_tomogram(path):
    starfile.write(relion4_frame("TS_99"), path)


def _outside(path):
    pd.DataFrame({"x": [500.0, -90.0], "y": [5.0, 5.0], "z": [5.0, 5.0]}).to_csv(path, index=False)


def _empty_mod(path):
    imodmodel.write(pd.DataFrame({"object_id": [], "contour_id": [], "x": [], "y": [], "z": []}), path)


@pytest.mark.parametrize(
    "name, write, words",
    [
        ("nocols.star", _bad_star, "no coordinate columns"),
        ("other.star", _other_tomogram, "TS_99"),
        ("outside.csv", _outside, "no pick lies inside"),
        ("empty.mod", _empty_mod, "no picks"),
    ],
)
def test_bad_coordinates_one_line_exit_2_nothing_written(runner, tmp_path, tomogram, name, write, words):
    coords = tmp_path / name
    write(coords)
    out = tmp_path / "sub.h5"
    result = runner.invoke(app, ["extract", str(tomogram), "--coords", str(coords), "-o", str(out)])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and name in message and words in message, message
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_lost_header_voxel_size_is_refused_then_overridden(runner, tmp_path):
    import numpy as np

    tomo = tmp_path / "TS_01.mrc"
    write_mrc(tomo, Volume(np.random.default_rng(0).normal(size=(40, 40, 40)).astype(np.float32), voxel_size=1.0))
    pd.DataFrame({"x": [20], "y": [20], "z": [20]}).to_csv(tmp_path / "p.csv", index=False)
    args = ["extract", str(tomo), "--coords", str(tmp_path / "p.csv"), "-o", str(tmp_path / "s.h5"), "--box", "16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--input-voxel-size" in result.output and "TS_01.mrc" in result.output
    result = runner.invoke(app, [*args, "--input-voxel-size", "13.5", "--voxel-size", "10"])
    assert result.exit_code == 0, result.output
    assert read_h5_dataset(tmp_path / "s.h5").voxel_size == 10.0


def test_an_empty_shard_succeeds_and_writes_nothing(runner, tmp_path, tomogram):
    starfile.write(relion4_frame("TS_01"), tmp_path / "picks.star")
    outputs = []
    for index in (1, 2):
        out = tmp_path / f"shard{index}.h5"
        args = ["extract", str(tomogram), "--coords", str(tmp_path / "picks.star"), "-o", str(out), "--box", "8"]
        result = runner.invoke(app, [*args, "--shard", f"{index}/2", "--json"])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout)["output"])
    assert sorted(map(str, outputs)) == sorted(["None", str(next(tmp_path.glob("shard*.h5")))])  # one shard, one file


def test_shards_partition_the_tomograms_and_skip_existing_keeps_a_finished_shard(runner, tmp_path):
    """--shard I/N: each tomogram's boxes in exactly one shard (picks naming other shards' tomograms
    are no error); --skip-existing leaves a complete output as it is."""
    names = [f"TS_{i:02d}" for i in range(1, 7)]
    folder = tmp_path / "tomos"
    folder.mkdir()
    for name in names:
        blob_tomogram(folder / f"{name}.mrc")
    starfile.write(pd.concat([relion4_frame(name) for name in names]), tmp_path / "picks.star")
    base = ["extract", str(folder), "--coords", str(tmp_path / "picks.star"), "--box", "8"]
    parents: list[str] = []
    for index in (1, 2, 3):
        out = tmp_path / f"shard{index}.h5"
        result = runner.invoke(app, [*base, "-o", str(out), "--shard", f"{index}/3"])
        assert result.exit_code == 0, result.output
        if not out.exists():  # a shard may hold no tomogram: nothing to do, and a job of an array succeeds
            continue
        parents += read_h5_dataset(out).parents or []
    assert sorted(set(parents)) == names and len(parents) == len(names) * len(BLOBS)
    written = next(tmp_path.glob("shard*.h5"))
    before = written.stat().st_mtime_ns
    again = runner.invoke(app, [*base, "-o", str(written), "--skip-existing", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["skipped"] is True
    assert written.stat().st_mtime_ns == before
