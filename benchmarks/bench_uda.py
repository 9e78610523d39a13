"""Domain-adaptation benchmark: the rows of the paper's Table 1 on voxuda's own source and target.

Source: `simulate-prep --preset source` (3jb9, 4v1w, 7pbl at SNR 0.03 and 0.05). Target: `--preset
target` (6qt9, 4jsv, 7cth; SNR log-uniform 0.01-0.1, other defocus and tilt range), simulated twice:
an unlabelled adaptation set (its masks are used only by the supervised upper bound) and a held-out
test set that every method is scored on. Rows: source-only (w/o adaptation), DANN, Vox-UDA with
NGM, BF and IBF denoising, supervised. Writes benchmarks/results.md and benchmarks/uda_bars.png.

Every run keeps its run directory under --work; re-running the script skips finished runs
(delete --work to start again). Defaults fit a 2-core CPU in about an hour; scale up on a GPU:

    python benchmarks/bench_uda.py --n-source 500 --epochs 300 --width 32 --batch-size 16 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from voxuda_cli.filters.noise import NoiseSettings, estimate_noise
from voxuda_cli.inference import Predictor, PredictSettings
from voxuda_cli.io import read_dataset
from voxuda_cli.metrics import score_masks
from voxuda_cli.plots import save_bars
from voxuda_cli.simulate import preset, simulate_dataset
from voxuda_cli.training import TrainSettings, train

HERE = Path(__file__).resolve().parent
ROWS = (
    ("w/o adaptation (source-only)", {"method": "source-only"}),
    ("DANN", {"method": "dann"}),
    ("Vox-UDA (w NGM)", {"method": "vox-uda", "denoiser": "ngm"}),
    ("Vox-UDA (w BF)", {"method": "vox-uda", "denoiser": "bf"}),
    ("Vox-UDA (w IBF)", {"method": "vox-uda", "denoiser": "ibf"}),
    ("Fully supervised (upper bound)", {"method": "supervised"}),
    # Not a paper row: METHOD.md's reading plus a Mean Teacher warm-up of L_pl over half the epochs.
    ("Vox-UDA (w IBF) + L_pl warm-up", {"method": "vox-uda", "denoiser": "ibf", "pl_warmup": "half"}),
)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs (no figures)")
    parser.add_argument("--work", type=Path, default=HERE / "uda_work", help="data and run directories")
    parser.add_argument("--n-source", type=int, default=30, help="source samples per molecule and SNR level")
    parser.add_argument("--n-target", type=int, default=30, help="target samples per molecule (each set)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr-step", type=int, default=None, help="default: 2/3 of --epochs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default="all", help="comma-separated row numbers (1-6) to run")
    parser.add_argument("--extra", default="", help="extra TrainSettings for Vox-UDA rows, JSON")
    parser.add_argument("--results", type=Path, default=HERE / "results.md")
    parser.add_argument("--rescore", action="store_true", help="re-score finished runs (no training)")
    args = parser.parse_args()
    if args.quick:
        args.n_source, args.n_target, args.epochs, args.width, args.batch_size = 4, 4, 1, 4, 4
        args.work = args.work.with_name(args.work.name + "_quick")
        args.results = args.work / "results.md"
    return args


def make_data(args: argparse.Namespace) -> dict[str, Path]:
    args.work.mkdir(parents=True, exist_ok=True)
    paths = {name: args.work / f"{name}.h5" for name in ("source", "target_adapt", "target_test")}
    plans = {
        "source": dataclasses.replace(preset("source"), n_per_structure=args.n_source, seed=args.seed),
        "target_adapt": dataclasses.replace(preset("target"), n_per_structure=args.n_target, seed=args.seed + 1),
        "target_test": dataclasses.replace(preset("target"), n_per_structure=args.n_target, seed=args.seed + 2),
    }
    for name, settings in plans.items():
        if not paths[name].exists():
            simulate_dataset(paths[name], dataclasses.replace(settings, workers=2))
    noise_path = args.work / "noise.json"
    if not noise_path.exists():
        adapt = read_dataset([paths["target_adapt"]])
        estimate_noise(adapt.images, adapt.names, NoiseSettings(seed=args.seed)).save(noise_path)
    paths["noise"] = noise_path
    return paths


def run_row(args: argparse.Namespace, index: int, label: str, options: dict, paths: dict[str, Path]) -> dict:
    options = dict(options)
    if options.get("pl_warmup") == "half":
        options["pl_warmup"] = args.epochs / 2
    extra = json.loads(args.extra) if args.extra and options["method"] == "vox-uda" else {}
    name = "_".join([f"run{index}", options["method"], *([options["denoiser"]] if "denoiser" in options else [])])
    run_dir = args.work / (name + ("_warmup" if "pl_warmup" in options else ""))
    result_path = run_dir / "bench_result.json"
    cached = json.loads(result_path.read_text()) if result_path.exists() else None
    if cached is not None and not args.rescore:
        return cached
    if cached is not None:
        seconds = cached["train_seconds"]
        summary = {"final": cached["final_losses"], "pseudo_labels": cached["pseudo_labels"]}
    else:
        seconds, summary = train_row(args, {**options, **extra}, paths, run_dir)
    test = read_dataset([paths["target_test"]])
    predictor = Predictor(run_dir, PredictSettings(device=args.device))
    report = score_masks(test.names, predictor.predict_dataset(test).masks, test.masks, test.classes)
    other = None
    if "teacher" in predictor.info.weights:  # the weights predict does not use by default, for comparison
        other_use = "teacher" if predictor.settings.use == "student" else "student"
        masks = Predictor(run_dir, PredictSettings(device=args.device, use=other_use)).predict_dataset(test).masks
        other = {"weights": other_use, **score_masks(test.names, masks, test.masks, test.classes)["mean"]}
    result = {
        "row": label,
        "options": {**options, **extra},
        "weights": predictor.settings.use,
        "mean": report["mean"],
        "per_class": report["per_class"],
        "global": report["global"],
        "other_weights": other,
        "train_seconds": seconds,
        "final_losses": summary.get("final"),
        "pseudo_labels": summary.get("pseudo_labels"),
    }
    result_path.write_text(json.dumps(result, indent=2))
    return result


def train_row(args: argparse.Namespace, options: dict, paths: dict[str, Path], run_dir: Path) -> tuple[float, dict]:
    settings = TrainSettings(
        src=(paths["source"],),
        tgt=(paths["target_adapt"],),
        noise=paths["noise"],
        epochs=args.epochs,
        width=args.width,
        batch_size=args.batch_size,
        lr_step=args.lr_step or max(1, (2 * args.epochs) // 3),
        device=args.device,
        seed=args.seed,
        **options,
    )
    start = time.perf_counter()
    summary = train(settings, run_dir, overwrite=True)
    return time.perf_counter() - start, summary


def table(results: list[dict]) -> str:
    classes = sorted({c for r in results for c in r["per_class"]})
    header = [
        "Method",
        "mIoU",
        *[f"mIoU_{c}" for c in classes],
        "Dice",
        *[f"Dice_{c}" for c in classes],
        "Dice (teacher)",
        "train (min)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r["row"], f"{100 * r['mean']['iou']:.1f}"]
        cells += [f"{100 * r['per_class'][c]['iou']:.1f}" for c in classes]
        cells += [f"{100 * r['mean']['dice']:.1f}"]
        cells += [f"{100 * r['per_class'][c]['dice']:.1f}" for c in classes]
        other = r.get("other_weights")
        cells += [f"{100 * other['dice']:.1f}" if other else "-"]
        cells += [f"{r['train_seconds'] / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(args: argparse.Namespace, results: list[dict]) -> None:
    command = "python benchmarks/bench_uda.py " + " ".join(sys.argv[1:])
    machine = f"{platform.node()}: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"
    if torch.cuda.is_available() and args.device != "cpu":
        machine += f", {torch.cuda.get_device_name(0)}"
    text = f"""# Domain-adaptation benchmark (Table 1 rows on voxuda's own data)

Date: {datetime.date.today().isoformat()}. Machine: {machine}. torch {torch.__version__}.
Command: `{command}`

Settings: source = 3jb9, 4v1w, 7pbl x SNR 0.03, 0.05 x {args.n_source} samples; target = 6qt9, 4jsv,
7cth, {args.n_target} per molecule, SNR log-uniform 0.01-0.1, defocus 3-6 um, tilts -50..50 by 2
(the `target` preset); scored on a held-out target set of the same size (other seed). VoxResNet width
{args.width}, batch {args.batch_size}, {args.epochs} epochs, Adam 1e-3 decayed x0.1 at epoch
{args.lr_step or max(1, (2 * args.epochs) // 3)}, seed {args.seed}; all else at the defaults of
`voxuda train`. Figures in percent; per-class columns are the target molecules. Masks come from
`voxuda predict`'s default weights (the student); "Dice (teacher)" scores the EMA teacher of the
same run (the weights that make the pseudo-labels).

{table(results)}
"""
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    save_bars(
        args.results.with_name("uda_bars.png") if not args.quick else args.work / "uda_bars.png",
        [r["row"] for r in results],
        {"mIoU": [100 * r["mean"]["iou"] for r in results], "Dice": [100 * r["mean"]["dice"] for r in results]},
        ylabel="%",
        title="Target segmentation (held-out target set)",
    )
    print(text)


def main() -> None:
    args = parse()
    paths = make_data(args)
    wanted = range(1, len(ROWS) + 1) if args.rows == "all" else [int(r) for r in args.rows.split(",")]
    results = []
    for index in wanted:
        label, options = ROWS[index - 1]
        print(f"--- {label}", flush=True)
        result = run_row(args, index, label, options, paths)
        print(
            f"    mIoU {100 * result['mean']['iou']:.1f}  Dice {100 * result['mean']['dice']:.1f}  "
            f"({result['train_seconds'] / 60:.1f} min)",
            flush=True,
        )
        results.append(result)
    write_results(args, results)


if __name__ == "__main__":
    main()
