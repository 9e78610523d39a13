"""predict --int8 against float32 on trained models: Dice on held-out targets, mask agreement, speed.

For every finished run of ``bench_uda.py`` under ``--work`` (rows and targets as chosen), the
model predicts its run's held-out test set (``target``, ``crowded``: simulated; ``real``: the 20
EMPIAR-10499 ribosomes) twice in the same process, in float32 and with ``--int8`` (activation
scales from 16 samples spread over the test set, models/int8.py), and prints, per row and target,
mean +- sd over seeds: Dice of each, their difference, the fraction of voxels where the masks
differ, the largest probability difference, and the rate of each on this CPU.

Usage: python benchmarks/bench_int8.py --work /tmp/uda_main [--rows source-only,vox-uda] [--targets target,crowded,real]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_uda.py's --work folder")
    parser.add_argument("--rows", default="source-only,vox-uda", help="bench_uda rows (methods), comma-separated")
    parser.add_argument("--targets", default="target,crowded,real", help="targets, comma-separated")
    parser.add_argument("--sources", default="randomized", help="sources, comma-separated")
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
        measured = compare(path.parent, test)
        table[(result["row"], result["target"])].append(measured)
        print(f"  {path.parent}: " + ", ".join(f"{k} {v:.4g}" for k, v in measured.items()), flush=True)
    print("\n| row | target | seeds | Dice float32 | Dice int8 | int8 - float32 | voxels differing | max |p diff| |")
    print("|---|---|---|---|---|---|---|---|")
    for (row, target), runs in sorted(table.items()):
        values = {key: np.array([run[key] for run in runs]) for key in runs[0]}
        delta = 100 * (values["int8_dice"] - values["float32_dice"])
        dice = f"{_pm(100 * values['float32_dice'])} | {_pm(100 * values['int8_dice'])} | {_pm(delta, 2)}"
        differ, largest = 100 * values["masks_differ"].mean(), values["probability_max_diff"].max()
        print(f"| {row} | {target} | {len(runs)} | {dice} | {differ:.3f} % | {largest:.3f} |")
    return 0


def _pm(values: np.ndarray, digits: int = 1) -> str:
    return f"{values.mean():.{digits}f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
