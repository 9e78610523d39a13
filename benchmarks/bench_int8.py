"""predict --int8 against float32 on trained models: Dice on held-out targets, mask agreement, speed.

For every finished run of ``bench_uda.py`` under ``--work`` (rows and targets as chosen), the
model predicts its run's held-out test set (``target``, ``crowded``: simulated; ``real``: the 20
EMPIAR-10499 ribosomes) twice in the same process, in float32 and with ``--int8`` (activation
scales from 16 samples spread over the test set, models/int8.py), and prints, per row and target,
mean +- sd over seeds: Dice of each, their difference, the fraction of voxels where the masks
differ, the largest probability difference, and the rate of each on this CPU.

``--beads A``: outliers in the calibration windows (gold fiducials are in most tomograms, and the
8-bit scales are each map's largest value). Each run's first 48 test boxes, each z-scored, are
tiled into a 96 x 128 x 128 volume, and a ball of radius 5 voxels at A sd (the protein's sign) is
put at the centre of every window the calibration reads; float32 and int8 predict the volume with
and without the balls (the default path: large windows, local z-scoring); Dice outside the balls.

Usage: python benchmarks/bench_int8.py --work /tmp/uda_main [--rows source-only,vox-uda]
       [--targets target,crowded,real] [--beads 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def test_set(work: Path, result: dict[str, Any]) -> Path:
    """The held-out set a bench_uda run was scored on (bench_uda.py's layout)."""
    if result["target"] == "real":
        return work / "data_real" / "real_test.h5"
    return work / f"data_{result['source']}_s{result['seed']}" / f"{result['target']}_test.h5"


def compare(run_dir: Path, test: Any) -> dict[str, float]:
    """One run: float32 and int8 predictions of ``test`` and what differs between them."""
    from voxuda_cli.inference import Predictor, PredictSettings
    from voxuda_cli.metrics import score_masks

    plain = Predictor(run_dir, PredictSettings(device="cpu"))
    row: dict[str, float] = {}
    outputs = {}
    for name, predictor in (("float32", plain), ("int8", plain.with_settings(int8=True))):
        started = time.perf_counter()
        outputs[name] = predictor.predict_dataset(test)
        seconds = time.perf_counter() - started
        row[f"{name}_dice"] = score_masks(test.names, outputs[name].masks, test.masks, test.classes)["mean"]["dice"]
        row[f"{name}_mvoxel_s"] = test.images.size / 1e6 / seconds
    row["masks_differ"] = float(np.mean(outputs["float32"].masks != outputs["int8"].masks))
    row["probability_max_diff"] = float(np.abs(outputs["float32"].probabilities - outputs["int8"].probabilities).max())
    return row


GRID = (3, 4, 4)  # boxes per axis of the tiled volume of --beads
BEAD_RADIUS = 5  # voxels: a 10 nm gold bead at 10 A


def tiled(test: Any) -> tuple[np.ndarray, np.ndarray]:
    """The first prod(GRID) boxes of a test set, each z-scored, tiled into one volume; and their masks."""
    from voxuda_cli.normalise import zscore

    box = test.images.shape[1]
    count = int(np.prod(GRID))
    images = zscore(test.images[:count])

    def tile(boxes: np.ndarray) -> np.ndarray:
        return boxes.reshape(*GRID, box, box, box).transpose(0, 3, 1, 4, 2, 5).reshape([g * box for g in GRID])

    return tile(images), tile(test.masks[:count] > 0)


def beads_compare(run_dir: Path, test: Any, amplitude: float) -> dict[str, float]:
    """Float32 and int8 Dice on the tiled volume, clean and with beads in every calibration window."""
    from scipy.ndimage import binary_dilation

    from voxuda_cli.inference import Predictor, PredictSettings
    from voxuda_cli.metrics import dice
    from voxuda_cli.patches import sample_boxes

    volume, truth = tiled(test)
    index = np.arange(volume.size, dtype=np.float64).reshape(volume.shape)
    centres = [np.unravel_index(int(b[tuple(n // 2 for n in b.shape)]), volume.shape)
               for b in sample_boxes(index, (test.images.shape[1],) * 3, 2)]  # fmt: skip
    grid = np.indices(volume.shape)
    beads = np.zeros(volume.shape, dtype=bool)
    for centre in centres:
        beads |= sum((g - c) ** 2 for g, c in zip(grid, centre)) <= BEAD_RADIUS**2
    sign = np.sign(volume[truth].mean() - volume[~truth].mean())
    keep = ~binary_dilation(beads, iterations=4)
    plain = Predictor(run_dir, PredictSettings(device="cpu"))
    row = {}
    for name, data in (("clean", volume), ("beads", volume + sign * amplitude * beads)):
        for numerics, predictor in (("float32", plain), ("int8", plain.with_settings(int8=True))):
            mask = predictor.predict_volume(data) > 0.5
            row[f"{name}_{numerics}"] = dice(mask[keep], truth[keep])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_uda.py's --work folder")
    parser.add_argument("--rows", default="source-only,vox-uda", help="bench_uda rows (methods), comma-separated")
    parser.add_argument("--targets", default="target,crowded,real", help="targets, comma-separated")
    parser.add_argument("--sources", default="randomized", help="sources, comma-separated")
    parser.add_argument("--beads", type=float, default=0.0, help="outlier balls of this many sd (0: off)")
    args = parser.parse_args()
    from voxuda_cli.io.dataset import read_h5_dataset
    from voxuda_cli.models import int8

    rows, targets, sources = (set(getattr(args, name).split(",")) for name in ("rows", "targets", "sources"))
    print(f"int8 on this CPU: {'VNNI/AMX (fast)' if int8.fast_here() else 'no 8-bit dot products'}", flush=True)
    table: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for path in sorted(args.work.glob("*/*/bench_result.json")):
        result = json.loads(path.read_text())
        if result["row"] not in rows or result["target"] not in targets or result["source"] not in sources:
            continue
        test = read_h5_dataset(test_set(args.work, result))
        if args.beads and len(test.images) < np.prod(GRID):
            continue  # the real set has 20 boxes: too few to tile
        measured = beads_compare(path.parent, test, args.beads) if args.beads else compare(path.parent, test)
        table[(result["row"], result["target"])].append(measured)
        print(f"  {path.parent}: " + ", ".join(f"{k} {v:.4g}" for k, v in measured.items()), flush=True)
    if args.beads:
        _beads_table(table)
        return 0
    print("\n| row | target | seeds | Dice float32 | Dice int8 | int8 - float32 | voxels differing | max |p diff| |")
    print("|---|---|---|---|---|---|---|---|")
    for (row, target), runs in sorted(table.items()):
        values = {key: np.array([run[key] for run in runs]) for key in runs[0]}
        delta = 100 * (values["int8_dice"] - values["float32_dice"])
        dice = f"{_pm(100 * values['float32_dice'])} | {_pm(100 * values['int8_dice'])} | {_pm(delta, 2)}"
        differ, largest = 100 * values["masks_differ"].mean(), values["probability_max_diff"].max()
        print(f"| {row} | {target} | {len(runs)} | {dice} | {differ:.3f} % | {largest:.3f} |")
    return 0


def _beads_table(table: dict[tuple[str, str], list[dict[str, float]]]) -> None:
    columns = ["clean_float32", "clean_int8", "beads_float32", "beads_int8"]
    print("\n| row | target | seeds | " + " | ".join(columns) + " |\n|---|---|---|" + "---|" * len(columns))
    for (row, target), runs in sorted(table.items()):
        cells = " | ".join(_pm(100 * np.array([run[c] for run in runs])) for c in columns)
        print(f"| {row} | {target} | {len(runs)} | {cells} |")


def _pm(values: np.ndarray, digits: int = 1) -> str:
    return f"{values.mean():.{digits}f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
