"""Subtomogram-trained networks on larger simulated volumes with truth: do they hold beyond the box?

A network trained on 32^3 boxes, each with a molecule at its centre, predicts 96^3 volumes of the
same simulator: a box-sized molecule with 6-14 neighbours about it and empty space around them
(about 0.6 % foreground, where a training box has 2-7 %), as most of a whole tomogram is. Two
sets (12 volumes each): the ``crowded`` preset (its nuisances, 8-14 neighbours) and the ``target``
preset (6-12 neighbours of its own molecules). For every ``source-only`` run of ``bench_uda.py``
under ``--work`` (the sources chosen; the model trained for the crowded target: all molecules
labelled), ``predict``'s default path (large windows, local z-scoring) predicts each volume;
printed per source, mean +- sd over seeds: Dice against the truth and the predicted foreground
fraction. The simulated volumes are cached in ``--work``.

Usage: python benchmarks/bench_whole_volume.py --work /tmp/uda_e [--sources randomized,rand-e025]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

VOLUME_BOX = 96
SETS: dict[str, dict[str, Any]] = {  # name -> preset and changes
    "crowded96": {"preset": "crowded", "neighbours": (8, 14), "seed": 7},
    "target96": {
        "preset": "target",
        "neighbours": (6, 12),
        "seed": 8,
        "neighbour_structures": ("6qt9", "4jsv", "7cth"),
    },
}


def volumes(work: Path, name: str) -> Any:
    """The simulated volume set ``name`` (made once into ``work``)."""
    from voxuda_cli.io.dataset import read_h5_dataset
    from voxuda_cli.simulate import preset, simulate_dataset

    path = work / f"{name}.h5"
    if not path.exists():
        changes = dict(SETS[name])
        settings = dataclasses.replace(preset(changes.pop("preset")), box=VOLUME_BOX, n_per_structure=4, **changes)
        simulate_dataset(path, settings)
    return read_h5_dataset(path)


def score(model: Path, data: Any) -> dict[str, float]:
    from voxuda_cli.inference import Predictor, PredictSettings
    from voxuda_cli.metrics import dice

    predictor = Predictor(model, PredictSettings(device="cpu"))
    masks = [predictor.predict_volume(volume) > 0.5 for volume in data.images]
    return {
        "dice": 100 * float(np.mean([dice(m, t > 0) for m, t in zip(masks, data.masks)])),
        "foreground": 100 * float(np.mean([m.mean() for m in masks])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_uda.py's --work folder")
    parser.add_argument("--sources", default="randomized", help="bench_uda sources, comma-separated")
    args = parser.parse_args()
    sets = {name: volumes(args.work, name) for name in SETS}
    for name, data in sets.items():
        print(f"{name}: {len(data.images)} volumes {VOLUME_BOX}^3, truth foreground {100 * data.masks.mean():.2f} %")
    rows: dict[str, list[dict[str, float]]] = {}
    for source in args.sources.split(","):
        for path in sorted(args.work.glob(f"{source}_crowded_s*/source-only/bench_result.json")):
            result = json.loads(path.read_text())
            model = Path(result.get("trained_in") or path.parent)
            row = {f"{name} {key}": value for name, data in sets.items() for key, value in score(model, data).items()}
            print(f"  {source} seed {result['seed']}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
            rows.setdefault(source, []).append(row)
    columns = [f"{name} {key}" for name in SETS for key in ("dice", "foreground")]
    print("\n| source | seeds | " + " | ".join(columns) + " |\n|---|---|" + "---|" * len(columns))
    for source, runs in rows.items():
        cells = [np.array([run[c] for run in runs]) for c in columns]
        means = " | ".join(f"{v.mean():.1f} +- {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}" for v in cells)
        print(f"| {source} | {len(runs)} | {means} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
