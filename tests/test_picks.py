"""voxuda picks: particles from masks (components, split, sizes), STAR/CSV round trips, instance maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voxuda_cli.cli.app import app
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.coordinates import read_picks
from voxuda_cli.io.mrc import read_mrc, write_mrc
from voxuda_cli.io.volume import Volume
from voxuda_cli.picks import PicksSettings, find_particles, pick_files

SHAPE = (64, 128, 128)


def _balls(centres: np.ndarray, radius: float, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    mask = np.zeros(shape, bool)
    for centre in centres:
        mask |= sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2
    return mask


def _separate_centres(rng: np.random.Generator, count: int, gap: float) -> np.ndarray:
    centres: list[np.ndarray] = []
    while len(centres) < count:
        candidate = rng.uniform((8, 8, 8), np.array(SHAPE) - 8)
        if all(np.linalg.norm(candidate - c) > gap for c in centres):
            centres.append(candidate)
    return np.array(centres)


def _matched(found: np.ndarray, truth: np.ndarray, tolerance: float) -> tuple[float, float]:
    """Precision and recall of ``found`` centres against ``truth`` within ``tolerance`` voxels."""
    distance = np.linalg.norm(found[:, None] - truth[None], axis=-1)
    precision = float((distance.min(axis=1) <= tolerance).mean()) if len(found) else 0.0
    recall = float((distance.min(axis=0) <= tolerance).mean())
    return precision, recall


def test_particles_of_a_mask_are_found_at_their_centres_and_specks_dropped() -> None:
    rng = np.random.default_rng(0)
    truth = _separate_centres(rng, 40, gap=14)
    mask = _balls(truth, 4.5)
    mask[2, 2, 2] = mask[60, 3, 120] = True  # single-voxel specks
    particles = find_particles(Volume(mask.astype(np.int8), voxel_size=10.0), "TS", PicksSettings(min_size=20))
    found = np.array([[r["z"], r["y"], r["x"]] for r in particles.rows])
    assert _matched(found, truth, 0.5) == (1.0, 1.0)
    assert particles.labels.dtype == np.uint16 and particles.labels.max() == 40
    assert {r["volume_voxels"] for r in particles.rows} <= set(range(300, 500))
    assert particles.rows[0]["volume_angst3"] == pytest.approx(particles.rows[0]["volume_voxels"] * 1000)
    sizes = PicksSettings(min_size=0.38e6, max_size=0.5e6, size_unit="angstrom3")  # the same limits in A^3
    assert len(find_particles(Volume(mask.astype(np.int8), voxel_size=10.0), "TS", sizes).rows) <= 40


def test_split_separates_touching_particles() -> None:
    centres = np.array([[32, 60, 60], [32, 60, 69]])  # radius 5.5: the balls overlap
    mask = _balls(centres, 5.5).astype(np.int8)
    volume = Volume(mask, voxel_size=10.0)
    assert len(find_particles(volume, "TS", PicksSettings()).rows) == 1
    split = find_particles(volume, "TS", PicksSettings(split=True, min_distance=3)).rows
    found = np.array([[r["z"], r["y"], r["x"]] for r in split])
    assert len(split) == 2 and _matched(found, centres.astype(float), 1.5) == (1.0, 1.0)


def test_meanshift_merges_a_particles_fragments_and_keeps_particles_apart() -> None:
    """Two lobes of one particle, segmented apart (a 2-voxel gap), are two components but one
    mean-shift cluster, centred between them; particles 30 voxels apart stay apart."""
    rng = np.random.default_rng(1)
    truth = _separate_centres(rng, 12, gap=30)
    offset = np.array([0.0, 0.0, 4.0])
    mask = _balls(np.concatenate([truth - offset, truth + offset]), 3.0)  # lobes at +-4 voxels in x
    volume = Volume(mask.astype(np.int8), voxel_size=10.0)
    assert len(find_particles(volume, "TS", PicksSettings()).rows) == 24
    merged = find_particles(volume, "TS", PicksSettings(meanshift=12.0)).rows
    found = np.array([[r["z"], r["y"], r["x"]] for r in merged])
    assert len(merged) == 12 and _matched(found, truth, 0.5) == (1.0, 1.0)
    for bad, words in (({"meanshift": 0.0}, "bandwidth"), ({"meanshift": 8.0, "split": True}, "choose one")):
        with pytest.raises(VoxudaInputError, match=words):
            PicksSettings(**bad).validate()  # type: ignore[arg-type]


ROUND_TRIPS = [
    (".star", "relion5", "half"),
    (".star", "relion5", "half-minus-one"),
    (".star", "relion4", "half"),
    (".csv", "relion5", "half"),
]


@pytest.mark.parametrize(("suffix", "star", "centre"), ROUND_TRIPS)
def test_picks_round_trip_through_what_extract_reads(tmp_path: Path, suffix: str, star: str, centre: str) -> None:
    truth = _separate_centres(np.random.default_rng(1), 6, gap=16)
    write_mrc(tmp_path / "TS_01.mrc", Volume(_balls(truth, 4.0).astype(np.int8), voxel_size=13.5))
    output = tmp_path / f"picks{suffix}"
    summary = pick_files([tmp_path / "TS_01.mrc"], output, PicksSettings(star=star, centre=centre))
    assert summary["particles"] == 6
    table = read_picks(output)
    back = table.voxels(np.arange(len(table)), SHAPE, 13.5, centre=centre)
    found = np.array([[r["z"], r["y"], r["x"]] for r in find_particles(
        read_mrc(tmp_path / "TS_01.mrc"), "TS_01", PicksSettings()).rows])  # fmt: skip
    np.testing.assert_allclose(back, found, atol=1e-4)
    assert set(table.tomograms) == {"TS_01"}


def test_cli_reads_a_predict_folder_with_probabilities_and_writes_instances(tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    truth = _separate_centres(np.random.default_rng(2), 5, gap=16)
    mask = _balls(truth, 4.0)
    folder = tmp_path / "masks"
    folder.mkdir()
    write_mrc(folder / "TS_01.mrc", Volume(mask.astype(np.int8), voxel_size=10.0))
    write_mrc(folder / "TS_01_probabilities.mrc", Volume(np.where(mask, 0.9, 0.1).astype(np.float32), voxel_size=10.0))
    args = ["picks", str(folder), "-o", str(tmp_path / "p.csv"), "--instances", str(tmp_path / "inst"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["particles"] == 5 and [t["name"] for t in summary["tomograms"]] == ["TS_01"]
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["tomogram", "x", "y", "z"] and "mean_probability" in rows[0]
    assert all(abs(float(r.split(",")[-1]) - 0.9) < 1e-4 for r in rows[1:])
    instances = read_mrc(tmp_path / "inst" / "TS_01_instances.mrc")
    assert instances.data.dtype == np.uint16 and instances.data.max() == 5 and instances.voxel_size == (10.0,) * 3


def test_an_unknown_output_kind_is_one_line(tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    write_mrc(tmp_path / "m.mrc", Volume(np.zeros((8, 8, 8), np.int8), voxel_size=10.0))
    result = runner.invoke(app, ["picks", str(tmp_path / "m.mrc"), "-o", str(tmp_path / "p.txt")])
    assert result.exit_code == 2 and ".star" in result.output and not (tmp_path / "p.txt").exists()


def test_shards_partition_the_segmentations(tmp_path: Path) -> None:
    for index in range(5):
        write_mrc(tmp_path / f"TS_{index}.mrc", Volume(_balls(np.array([[32, 64, 64]]), 4.0).astype(np.int8), 10.0))
    seen = []
    for shard in ("1/3", "2/3", "3/3"):
        summary = pick_files([tmp_path], tmp_path / f"p{shard[0]}.csv", PicksSettings(shard=shard))
        seen += [t["name"] for t in summary["tomograms"]]
    assert sorted(seen) == [f"TS_{i}" for i in range(5)]


def test_no_particle_still_writes_a_readable_file(tmp_path: Path) -> None:
    write_mrc(tmp_path / "empty.mrc", Volume(np.zeros((16, 16, 16), np.int8), 10.0))
    for name in ("p.star", "p.csv"):
        assert pick_files([tmp_path / "empty.mrc"], tmp_path / name, PicksSettings())["particles"] == 0
    assert "rlnCenteredCoordinateXAngst" in (tmp_path / "p.star").read_text()
    assert (tmp_path / "p.csv").read_text().startswith("tomogram,x,y,z")
