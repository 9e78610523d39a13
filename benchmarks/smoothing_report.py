"""``predict --smooth``, judged on the benchmark's trained runs: Dice per sigma, per row and target.

bench_uda.py leaves each trained run in ``WORK/{source}_{target}_s{seed}/{row}/``. This report
predicts every run's test set again at each ``--smooth`` sigma (no training) and prints Dice
(mean ± sd over seeds). On the real target it also splits the Dice by tomogram (the sample
names' prefix before the last ``_``), so that a sigma chosen on one tomogram can be checked on
the other (leave one tomogram out: there is one real set).

    python benchmarks/smoothing_report.py --work /tmp/uda_main --sources picked --targets real
    python benchmarks/smoothing_report.py --work /tmp/uda_main --sources randomized --targets target,crowded
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from voxuda_cli.inference import Predictor, PredictSettings  # noqa: E402
from voxuda_cli.io import Dataset, read_dataset  # noqa: E402


def test_set(work: Path, source: str, target: str, seed: int) -> Dataset:
    if target == "real":
        return read_dataset([work / "data_real" / "real_test.h5"])
    return read_dataset([work / f"data_{source}_s{seed}" / f"{target}_test.h5"])


def sample_dice(run: Path, test: Dataset, sigma: float) -> np.ndarray:
    """Per-sample Dice of the run's model.pt on ``test`` at ``--smooth sigma``."""
    assert test.masks is not None
    masks = Predictor(run, PredictSettings(smooth=sigma, device="cpu")).predict_dataset(test).masks.astype(bool)
    truth = test.masks.astype(bool)
    overlap = (masks & truth).sum(axis=(1, 2, 3))
    total = masks.sum(axis=(1, 2, 3)) + truth.sum(axis=(1, 2, 3))
    return np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * sd:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="a bench_uda.py --work folder")
    parser.add_argument("--sources", default="picked")
    parser.add_argument("--targets", default="real")
    parser.add_argument("--rows", default="source-only,vox-uda")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sigmas", default="0,12,24,36,48", help="--smooth values (A)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sigmas = [float(s) for s in args.sigmas.split(",")]
    print("| source | target | row | group | " + " | ".join(f"σ {s:g} Å" for s in sigmas) + " |")
    print("|---|---|---|---|" + "---|" * len(sigmas))
    for source in args.sources.split(","):
        for target in args.targets.split(","):
            for row in args.rows.split(","):
                cells: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
                for seed in seeds:
                    run = args.work / f"{source}_{target}_s{seed}" / row
                    if not (run / "model.pt").is_file():
                        continue
                    test = test_set(args.work, source, target, seed)
                    groups = np.array([name.rsplit("_", 1)[0] for name in test.names])
                    for sigma in sigmas:
                        dice = sample_dice(run, test, sigma)
                        cells["all"][sigma].append(float(dice.mean()))
                        for group in sorted(set(groups)) if target == "real" else []:
                            cells[group][sigma].append(float(dice[groups == group].mean()))
                for group, by_sigma in cells.items():
                    values = " | ".join(mean_sd(by_sigma[s]) for s in sigmas)
                    print(f"| {source} | {target} | {row} | {group} | {values} |", flush=True)


if __name__ == "__main__":
    main()
