"""AdaBN probe: does re-estimating batch-norm statistics on the target help predict? (issue 11)

For every finished ``bench_uda.py`` run under ``--work`` (rows and source->target pairs given),
scores the student on the held-out target test set three ways: as trained, with its batch-norm
running statistics re-estimated on the unlabelled target adaptation set (AdaBN, Li et al. 2016),
and re-estimated on the test set itself (transductive). A run whose recomputed Dice differs from
its ``bench_result.json`` (its model file changed after scoring) is skipped with a note.

    python benchmarks/bench_adabn.py --work WORK --rows source-only,dann,vox-uda --pairs source:crowded
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
from pathlib import Path

import numpy as np
import torch
from bench_uda import mean_std  # the same mean ± sample std as the benchmark's tables
from torch import nn

from voxuda_cli.inference import Predictor, PredictSettings
from voxuda_cli.io import read_dataset
from voxuda_cli.metrics import score_masks


def adapted(network: nn.Module, images: np.ndarray, normalise, batch_size: int = 16) -> nn.Module:
    """A copy of ``network`` whose BN statistics are the cumulative averages over ``images``."""
    network = copy.deepcopy(network)
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over every batch
            module.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            network(normalise(torch.as_tensor(images[start : start + batch_size])).unsqueeze(1).float())
    return network.eval()


def dice(predictor: Predictor, test) -> float:
    return score_masks(test.names, predictor.predict_dataset(test).masks, test.masks)["mean"]["dice"]


@functools.cache
def target_sets(work: Path, source: str, target: str, seed: int) -> tuple:
    """The (test, adaptation) target datasets of one seed, read once for every row that uses them."""
    data = work / f"data_{source}_s{seed}"
    return read_dataset([data / f"{target}_test.h5"]), read_dataset([data / f"{target}_adapt.h5"])


def probe(work: Path, row: str, source: str, target: str, seed: int) -> dict | None:
    run = work / f"{source}_{target}_s{seed}" / row
    if not (run / "bench_result.json").exists():
        return None
    recorded = json.loads((run / "bench_result.json").read_text())["scores"]["student"]["dice"]
    test, adapt = target_sets(work, source, target, seed)
    predictor = Predictor(run, PredictSettings(device="cpu", use="student"))
    result = {"row": row, "source": source, "target": target, "seed": seed, "as trained": dice(predictor, test)}
    if abs(result["as trained"] - recorded) > 5e-4:
        print(f"# {run}: model.pt scores {result['as trained']:.3f}, bench_result.json {recorded:.3f}: skipped")
        return None
    trained = predictor.network
    for name, images in (("AdaBN (adaptation set)", adapt.images), ("AdaBN (test set)", test.images)):
        predictor.network = adapted(trained, images, predictor.normalise)
        result[name] = dice(predictor, test)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="bench_uda.py's --work")
    parser.add_argument("--rows", default="source-only,dann,vox-uda,no-pl,supervised")
    parser.add_argument("--pairs", default="source:crowded,source:target", help="source:target, comma-separated")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    columns = ("as trained", "AdaBN (adaptation set)", "AdaBN (test set)")
    print("| source -> target | row | " + " | ".join(columns) + " | per seed (as trained -> AdaBN adaptation set) |")
    print("|---|---|" + "---|" * (len(columns) + 1))
    for pair in args.pairs.split(","):
        source, target = pair.split(":")
        for row in args.rows.split(","):
            results = [probe(args.work, row, source, target, int(s)) for s in args.seeds.split(",")]
            results = [r for r in results if r is not None]
            if not results:
                continue
            cells = [mean_std([r[c] for r in results]) for c in columns]
            seeds = ", ".join(f"{100 * r['as trained']:.1f} -> {100 * r[columns[1]]:.1f}" for r in results)
            print(f"| {source} -> {target} | {row} | " + " | ".join(cells) + f" | {seeds} |", flush=True)


if __name__ == "__main__":
    main()
