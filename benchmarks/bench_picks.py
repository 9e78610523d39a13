"""From a segmentation to particles (issue 27): precision and recall of `voxuda picks` on a
simulated 128 x 256 x 256 tomogram with 40 particles at known positions.

The particles are simulate-prep densities (the paper's `source` preset: its molecules, masks of
each box's central molecule) pasted at random, non-overlapping positions into a 10 A tomogram,
plus white noise. A width-8 VoxResNet is trained (source-only, CPU settings) on boxes made the
same way (density + the same noise, other molecules' draws), `voxuda predict` segments the whole
tomogram, and `voxuda picks` turns the mask into particles, four ways from the same mask (one
training, one prediction): connected components and mean-shift clustering (`--meanshift`,
bandwidth = the mean particle diameter), each with a minimum size of 10 % and 5 % of the mean
particle volume. A particle is found when a pick lies within half the particle's radius (from its
mask volume) of its true centre (the centroid of its pasted mask). Every step is the library a
command runs.

    python benchmarks/bench_picks.py                 # about 3 minutes on 2 cores
    python benchmarks/bench_picks.py --quick         # a check that it runs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def simulated_particles(count: int, seed: int):  # type: ignore[no-untyped-def]
    from voxuda_cli.simulate.presets import preset
    from voxuda_cli.simulate.simulator import simulate_in_memory

    settings = dataclasses.replace(preset("source"), n_per_structure=max(1, count // 3 + 1), seed=seed, box=32)
    return simulate_in_memory(settings)


def tomogram(shape: tuple[int, int, int], count: int, noise: float, seed: int):  # type: ignore[no-untyped-def]
    """(volume, instance mask, true centres): ``count`` simulated densities pasted apart, plus noise."""
    rng = np.random.default_rng(seed)
    particles = simulated_particles(count, seed)
    density = np.zeros(shape, np.float32)
    instances = np.zeros(shape, np.int32)
    centres: list[np.ndarray] = []
    scale = 1.0 / float(np.std(particles.density[particles.masks.astype(bool)]))
    for index in rng.permutation(len(particles))[:count]:
        while True:
            corner = rng.integers(0, np.array(shape) - 32)
            if all(np.linalg.norm(corner + 16 - c) > 30 for c in centres):
                break
        region = tuple(slice(int(c), int(c) + 32) for c in corner)
        mask = particles.masks[index].astype(bool)
        density[region] = np.maximum(density[region], particles.density[index] * scale)
        instances[region][mask] = len(centres) + 1
        centres.append(corner + 16)
    truth = np.array([np.argwhere(instances == i + 1).mean(axis=0) for i in range(len(centres))])
    volume = density + rng.normal(0.0, noise, shape).astype(np.float32)
    return volume, instances, truth


def training_set(count: int, noise: float, seed: int):  # type: ignore[no-untyped-def]
    """Boxes made as the tomogram is: a simulated density (same scaling) plus the same noise."""
    particles = simulated_particles(count, seed)
    rng = np.random.default_rng(seed)
    scale = 1.0 / float(np.std(particles.density[particles.masks.astype(bool)]))
    images = particles.density * scale + rng.normal(0.0, noise, particles.density.shape).astype(np.float32)
    return dataclasses.replace(particles, images=images.astype(np.float32), density=None, params={})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--noise", type=float, default=1.0, help="noise std, in units of the particles' density std")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-count", type=int, default=180)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from voxuda_cli.inference import Predictor, PredictSettings
    from voxuda_cli.io.dataset import write_dataset
    from voxuda_cli.io.volume import Volume
    from voxuda_cli.picks import PicksSettings, find_particles
    from voxuda_cli.training import TrainSettings, train

    shape = (64, 128, 128) if args.quick else (128, 256, 256)
    count = 8 if args.quick else 40
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_picks_") as folder:
        work = Path(folder)
        write_dataset(
            work / "train.h5", training_set(30 if args.quick else args.train_count, args.noise, args.seed + 1)
        )
        settings = TrainSettings(src=(work / "train.h5",), method="source-only", width=8, batch_size=8,
                                 epochs=2 if args.quick else args.epochs, seed=args.seed, select="last")  # fmt: skip
        train(settings, work / "run")
        volume, instances, truth = tomogram(shape, count, args.noise, args.seed + 2)
        probabilities = Predictor(work / "run", PredictSettings(device="cpu")).predict_volume(volume)
        radius = float(np.cbrt(np.bincount(instances.ravel())[1:].mean() * 3 / (4 * np.pi)))
        foreground = Volume((probabilities > 0.5).astype(np.int8), voxel_size=10.0)
    rows = []
    for grouping, bandwidth in (("components", None), ("meanshift", 2 * radius)):
        for fraction in (0.1, 0.05):
            settings = PicksSettings(min_size=fraction * 4 / 3 * np.pi * radius**3, meanshift=bandwidth)
            picks = find_particles(foreground, "TS", settings)
            found = np.array([[r["z"], r["y"], r["x"]] for r in picks.rows]).reshape(-1, 3)
            precision, recall = matched(found, truth, radius / 2)
            rows.append({"grouping": grouping, "bandwidth": round(bandwidth, 2) if bandwidth else None,
                         "min_size_fraction": fraction, "picks": len(found), "precision": round(precision, 3),
                         "recall": round(recall, 3)})  # fmt: skip
    result = {"tomogram": list(shape), "particles": len(truth), "radius_voxels": round(radius, 2),
              "tolerance_voxels": round(radius / 2, 2), "noise": args.noise, "seed": args.seed, "rows": rows,
              "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    print(json.dumps(result))


def matched(found: np.ndarray, truth: np.ndarray, tolerance: float) -> tuple[float, float]:
    """Precision and recall of ``found`` centres against ``truth`` within ``tolerance`` voxels."""
    if len(found) == 0:
        return 0.0, 0.0
    distance = np.linalg.norm(found[:, None] - truth[None], axis=-1)
    return float((distance.min(axis=1) <= tolerance).mean()), float((distance.min(axis=0) <= tolerance).mean())


if __name__ == "__main__":
    main()
