"""Domain-adaptation benchmark: Table 1 rows of the paper, several seeds, on voxuda's own presets.

For each source preset (``--sources``: the paper's ``source``, or ``randomized``) and target preset
(``--targets``: the easy ``target``, the hard ``crowded``) and each seed, the script simulates a
labelled source set, an unlabelled target adaptation set (its masks are used only by the
supervised upper bound) and a held-out target test set that every row is scored on; then trains
every row and scores the student and the teacher. A seed changes the data and the network's
initialisation alike. Rows (``--rows``, keys below) are the baselines, the paper's literal recipe
(``--recipe paper``), the default recipe, its denoiser variants and one ablation per term.

Figures are the mean and standard deviation over the seeds of the per-sample Dice on the test set.
Every run keeps its directory under --work, and re-running skips finished runs (delete --work to
start again). ``--jobs 2`` trains two runs at a time, one thread each. Defaults fit a 2-core CPU:

    python benchmarks/bench_uda.py --targets crowded,target --seeds 0,1,2 --jobs 2
    python benchmarks/bench_uda.py --n-source 500 --epochs 100 --width 32 --batch-size 16 --device cuda
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

ON_DENOISED = {"teacher_input": "denoised"}
# key: (label, TrainSettings options). The vox-uda rows use the default recipe unless they say otherwise.
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "source-only": ("w/o adaptation (source-only)", {"method": "source-only"}),
    "dann": ("DANN", {"method": "dann"}),
    "asc": ("ASC (Xu et al. 2023; 3D, training/methods/asc.py)", {"method": "asc"}),
    "le-uda": ("LE-UDA (Zhao et al. 2022; 3D, training/methods/le_uda.py)", {"method": "le-uda"}),
    "pdam": ("PDAM (Liu et al. 2020; lighter translator, training/methods/pdam.py)", {"method": "pdam"}),
    "mapseg": ("MAPSeg (Zhang et al. 2024; training/methods/mapseg.py)", {"method": "mapseg"}),
    "vox-uda-paper": ("Vox-UDA, paper recipe (w IBF)", {"method": "vox-uda", "recipe": "paper"}),
    "vox-uda": ("Vox-UDA (default recipe)", {"method": "vox-uda"}),
    # The steps by which the default recipe was chosen (benchmarks/results.md), as they were run.
    "vox-uda-ngm": (
        "Vox-UDA, NGM source view (the paper's x_s'), burn-in 0.3",
        {"method": "vox-uda", "source_view": "ngm", "burn_in": 0.3, "pl_loss": "balanced"},
    ),
    "spectral-1-b03": (
        "Vox-UDA, spectral view at strength 1, burn-in 0.3",
        {"method": "vox-uda", "spectral_strength": 1.0, "burn_in": 0.3, "pl_loss": "balanced"},
    ),
    "spectral-05": (
        "Vox-UDA, spectral view at strength 0.5, burn-in 0.3",
        {"method": "vox-uda", "spectral_strength": 0.5, "burn_in": 0.3, "pl_loss": "balanced"},
    ),
    "spectral-view": (
        "Vox-UDA, the spectral view always (the default before --source-view auto)",
        {"method": "vox-uda", "source_view": "spectral"},
    ),
    "pl-balanced": (
        "Vox-UDA, class-balanced L_pl (CE per class + soft Dice)",
        {"method": "vox-uda", "pl_loss": "balanced"},
    ),
    "teacher-ngm": (
        "Vox-UDA, teacher on NGM-denoised",
        {"method": "vox-uda", "teacher_input": "denoised", "denoiser": "ngm"},
    ),
    "teacher-bf": (
        "Vox-UDA, teacher on BF-denoised",
        {"method": "vox-uda", "teacher_input": "denoised", "denoiser": "bf"},
    ),
    "teacher-ibf": (
        "Vox-UDA, teacher on IBF-denoised",
        {"method": "vox-uda", "teacher_input": "denoised", "denoiser": "ibf"},
    ),
    "teacher-mean": ("Vox-UDA, teacher on raw + IBF (mean)", {"method": "vox-uda", "teacher_input": "mean"}),
    "no-pl": ("Vox-UDA w/o L_pl", {"method": "vox-uda", "pl_weight": 0.0}),
    "no-dis": ("Vox-UDA w/o L_dis", {"method": "vox-uda", "dis_weight": 0.0}),
    "no-con": ("Vox-UDA w/o L_con", {"method": "vox-uda", "con_weight": 0.0}),
    "no-view": ("Vox-UDA w/o a second source view", {"method": "vox-uda", "spectral_strength": 0.0, "ngm_scale": 0.0}),
    "supervised": ("Fully supervised (upper bound; on `real`: 2-fold cross-validation)", {"method": "supervised"}),
    # No training: a sphere centred in the box with the test set's mean mask volume (it reads the
    # truth's volume, so it is a reference for "found the particle's presence", not a method).
    "sphere": ("Centred sphere of the mean mask volume (a prior, no network)", {"method": "sphere"}),
}
DEFAULT_ROWS = "source-only,dann,vox-uda-paper,vox-uda,supervised"
# The paper's Table 1, in its order (``--rows table1``); "with NGM / BF / IBF" are the teacher's denoisers.
TABLE1_ROWS = "source-only,dann,pdam,asc,le-uda,mapseg,teacher-ngm,teacher-bf,teacher-ibf,vox-uda,supervised"
# The paper's Table 4 (``--sweep``): setting -> (the paper's symbol, its grid, its (mIoU, Dice) per value on
# Poly-GA with 1bxn, 1f1b, 1yg6 as source). Each cell is the paper recipe with one setting changed;
# the paper's own choice (bold there) is the recipe's default, i.e. the `vox-uda-paper` row.
SWEEP: dict[str, tuple[str, list[Any], list[tuple[float, float]]]] = {
    "n_sampled": ("N_sample", [5, 10, 15, 20], [(41.2, 57.1), (50.3, 65.9), (43.6, 59.4), (42.6, 58.3)]),
    "keep_rate": ("rho", [0.084, 0.178, 0.244, 0.422], [(41.7, 57.3), (43.5, 59.6), (50.3, 65.9), (41.0, 56.8)]),
    "con_lambdas": (
        "lambda_1..4",
        [[0.1, 0.1, 0.4, 0.4], [0.2, 0.2, 0.3, 0.3], [0.3, 0.3, 0.2, 0.2], [0.4, 0.4, 0.1, 0.1]],
        [(44.4, 60.2), (50.3, 65.9), (45.3, 61.0), (42.2, 57.8)],
    ),
    "sigma_d": ("sigma_d", [100, 120, 140, 160], [(49.3, 64.9), (50.3, 65.9), (49.1, 64.5), (47.0, 62.5)]),
    "sigma_r": ("sigma_r", [0.8, 1.0, 1.2, 1.4], [(47.5, 63.2), (48.0, 63.8), (50.3, 65.9), (49.5, 65.2)]),
}
PAPER_ROW = "vox-uda-paper"


def sweep_row(setting: str, value: Any) -> str:
    """The row key of one Table 4 cell (the paper's default value is the paper-recipe row itself)."""
    from voxuda_cli.training.settings import TrainSettings

    default = getattr(TrainSettings(recipe="paper"), setting)
    same = list(default) == list(value) if isinstance(value, list) else float(default) == float(value)
    if same:
        return PAPER_ROW
    key = f"sweep-{setting}-{'-'.join(map(str, value)) if isinstance(value, list) else value}"
    ROWS[key] = (f"paper recipe, {setting} = {value}", {**ROWS[PAPER_ROW][1], setting: value})
    return key


# rows that train on the source alone: one training per source and seed, scored on every target
TARGET_FREE = {"source-only"}
UNTRAINED = {"sphere"}
# The real development set (../shared/real, never in the repository): 20 labelled in-cell ribosomes.
# As a user runs it, adaptation is transductive: the unlabelled 20 are the adaptation set and the
# same 20 with their masks the test set; the supervised row is 2-fold cross-validation on them.
REAL = "real"
REAL_DIR = HERE.parent.parent / "shared" / "real" / "empiar10499-dev"
# 10 labelled boxes a fold: the schedule of the supervised ceiling (width 8, 60 epochs)
REAL_SUPERVISED = {"epochs": 60, "lr_step": 40}
# source label -> (preset, SimulationSettings changes); a plain preset name needs no entry
SOURCE_SETS: dict[str, tuple[str, dict[str, Any]]] = {}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs (no figures)")
    parser.add_argument("--work", type=Path, default=HERE / "uda_work", help="data and run directories")
    parser.add_argument("--sources", default="source", help="source presets (or --source-set labels), comma-separated")
    parser.add_argument(
        "--source-set",
        action="append",
        default=[],
        help="extra source LABEL=PRESET:JSON of SimulationSettings changes (e.g. an ablation of a preset)",
    )
    parser.add_argument(
        "--targets", default="crowded,target", help=f"target presets, or {REAL!r} (the real set), comma-separated"
    )
    parser.add_argument("--real-dir", type=Path, default=REAL_DIR, help="images/ and masks/ of the real target")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument(
        "--n-source", type=int, default=20, help="source samples per molecule and SNR level of the paper's source"
    )
    parser.add_argument("--n-target", type=int, default=30, help="target samples per molecule (each set)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr-step", type=int, default=None, help="default: 2/3 of --epochs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each when > 1)")
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated row keys or 'all': {', '.join(ROWS)}")
    parser.add_argument("--row", action="append", default=[], help="extra row KEY=JSON of TrainSettings options")
    parser.add_argument(
        "--sweep", action="store_true", help="the paper's Table 4: the paper recipe with one of its settings varied"
    )
    parser.add_argument(
        "--sweep-settings",
        default=",".join(SWEEP),
        help=f"--sweep: the Table 4 settings varied, comma-separated (default all: {', '.join(SWEEP)})",
    )
    parser.add_argument("--results", type=Path, default=HERE / "results.md")
    parser.add_argument("--json-results", type=Path, default=HERE / "uda_results.json")
    parser.add_argument(
        "--report", action="store_true", help="train nothing: write --results from every finished run under --work"
    )
    parser.add_argument(
        "--reselect",
        metavar="RULE",
        help="train nothing: make each finished run's model.pt the candidate --select RULE keeps, score it again",
    )
    args = parser.parse_args()
    for spec in args.row:
        key, _, options = spec.partition("=")
        ROWS[key] = (key, json.loads(options))
    args.rows = TABLE1_ROWS if args.rows == "table1" else args.rows
    args.sweep_settings = [s for s in args.sweep_settings.split(",") if s]
    if set(args.sweep_settings) - set(SWEEP):
        parser.error(
            f"--sweep-settings: unknown {sorted(set(args.sweep_settings) - set(SWEEP))}; known: {', '.join(SWEEP)}"
        )
    if args.sweep:
        cells = [sweep_row(setting, value) for setting in args.sweep_settings for value in SWEEP[setting][1]]
        args.rows = ",".join(dict.fromkeys(["source-only", *cells]))
    args.rows = list(ROWS) if args.rows == "all" else [r for r in args.rows.split(",") if r]
    args.rows += [spec.partition("=")[0] for spec in args.row if spec.partition("=")[0] not in args.rows]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    for spec in args.source_set:
        label, _, definition = spec.partition("=")
        base, _, options = definition.partition(":")
        SOURCE_SETS[label] = (base, json.loads(options or "{}"))
    args.sources = args.sources.split(",")
    args.targets = args.targets.split(",")
    if REAL in args.targets and not (args.real_dir / "images").is_dir():
        print(f"target {REAL}: {args.real_dir} not found; skipped", file=sys.stderr)
        args.targets.remove(REAL)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        args.n_source, args.n_target, args.epochs, args.width, args.batch_size = 2, 2, 2, 4, 4
        args.work = args.work.with_name(args.work.name + "_quick")
        args.results = args.work / "results.md"
        args.json_results = args.work / "uda_results.json"
    return args


def make_data(args: argparse.Namespace, source: str, target: str, seed: int) -> dict[str, Path]:
    """Simulate (once) the source, target adaptation and target test sets of one seed; estimate sigma_t."""
    from voxuda_cli.filters.noise import NoiseSettings, estimate_noise
    from voxuda_cli.io import read_dataset
    from voxuda_cli.simulate import preset, simulate_dataset

    labels, folder = data_folder(args, source, target, seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "source": folder / f"{source}.h5",
        "target_adapt": folder / f"{target}_adapt.h5",
        "target_test": folder / f"{target}_test.h5",
    }
    # Every source preset gets as many volumes per molecule as the paper's (n-source per SNR level).
    levels = len(preset("source").snr)
    base, changes = SOURCE_SETS.get(source, (source, {}))
    source_settings = dataclasses.replace(preset(base), **changes)
    per_structure = args.n_source * (1 if source_settings.snr_distribution == "levels" else levels)
    plans = {
        "source": dataclasses.replace(source_settings, n_per_structure=per_structure, seed=1000 * seed, label=labels)
    }
    if target == REAL:
        paths.update(real_data(args))
    else:
        plans["target_adapt"] = dataclasses.replace(preset(target), n_per_structure=args.n_target, seed=1000 * seed + 1)
        plans["target_test"] = dataclasses.replace(preset(target), n_per_structure=args.n_target, seed=1000 * seed + 2)
    for name, settings in plans.items():
        if not paths[name].exists():
            simulate_dataset(paths[name], dataclasses.replace(settings, workers=2))
    paths["noise"] = folder / f"{target}_noise.json"
    if not paths["noise"].exists():
        adapt = read_dataset([paths["target_adapt"]])
        estimate_noise(adapt.images, adapt.names, NoiseSettings(seed=seed)).save(paths["noise"])
    return paths


def data_folder(args: argparse.Namespace, source: str, target: str, seed: int) -> tuple[str, Path]:
    """(the source's --label, the folder of one seed's data)."""
    from voxuda_cli.simulate import preset

    # The real masks mark the picked particle only (neighbours are 0): its source is labelled alike.
    labels = "central" if target == REAL else preset(SOURCE_SETS.get(source, (source, {}))[0]).label
    return labels, args.work / (f"data_{source}_s{seed}" if labels == "all" else f"data_{source}_{labels}_s{seed}")


def real_data(args: argparse.Namespace) -> dict[str, Path]:
    """The real set as datasets under --work (once): unlabelled adaptation set, labelled test set, two folds."""
    from voxuda_cli.io import read_dataset, write_dataset

    folder = args.work / "data_real"
    paths = {
        "target_adapt": folder / "real_adapt.h5",
        "target_test": folder / "real_test.h5",
        "fold0": folder / "real_fold0.h5",
        "fold1": folder / "real_fold1.h5",
    }
    if all(path.exists() for path in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    images = read_dataset([args.real_dir / "images"])
    masks = read_dataset([args.real_dir / "masks"], require_masks=True)
    if images.names != masks.names:
        raise SystemExit(f"{args.real_dir}: images/ and masks/ hold different names")
    labelled = dataclasses.replace(images, masks=masks.masks, kind="target")
    if args.quick:
        labelled = labelled.subset(list(range(4)))
    write_dataset(paths["target_test"], labelled)
    write_dataset(paths["target_adapt"], dataclasses.replace(labelled, masks=None))
    halves = np.arange(len(labelled)) % 2  # alternate samples: both tomograms in each fold
    for fold in (0, 1):
        write_dataset(paths[f"fold{fold}"], labelled.subset(np.flatnonzero(halves == fold)))
    return paths


def run_one(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Train one row on one seed's data and score its student and teacher on each of the job's targets.

    The first target's run folder holds the training; a target-free row's other targets get a copy
    of its model (the same network: it never saw a target). Results are cached per run folder.
    """
    import shutil

    if job["row"] in UNTRAINED:
        return [_cached(target["run_dir"]) or _sphere(job, target) for target in job["targets"]]
    first, *others = job["targets"]
    if job["row"] == "supervised" and first["target"] == REAL:
        return [_cached(first["run_dir"]) or _cross_validate(job, first)]
    results = [_cached(first["run_dir"]) or _train_and_score(job, first)]
    for target in others:
        cached = _cached(target["run_dir"])
        if cached is None:
            run_dir = Path(target["run_dir"])
            run_dir.mkdir(parents=True, exist_ok=True)
            for name in ("model.pt", "config.toml", "metrics.jsonl"):
                shutil.copy2(Path(first["run_dir"]) / name, run_dir / name)
            trained = {k: results[0][k] for k in ("train_seconds", "final", "pseudo_labels")}
            cached = _score(job, target, {**trained, "trained_in": first["run_dir"]})
        results.append(cached)
    return results


def _cached(run_dir: str) -> dict[str, Any] | None:
    path = Path(run_dir) / "bench_result.json"
    return json.loads(path.read_text()) if path.exists() else None


def _sphere(job: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The centred-sphere reference: a ball of the test masks' mean volume at the box centre, every sample."""
    from voxuda_cli.io import read_dataset
    from voxuda_cli.metrics import score_masks

    test = read_dataset([target["paths"]["target_test"]])
    assert test.masks is not None
    box = np.array(test.box)
    radius = (3 * float(test.masks.sum(axis=(1, 2, 3)).mean()) / (4 * np.pi)) ** (1 / 3)
    grid = np.indices(test.box) - ((box - 1) / 2)[:, None, None, None]
    ball = (grid**2).sum(axis=0) <= radius**2
    masks = np.broadcast_to(ball, test.masks.shape)
    report = score_masks(test.names, masks, test.masks, test.classes)
    return _result(job, target, {"sphere": report["mean"]}, "sphere", {"train_seconds": 0.0})


def _cross_validate(job: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """Supervised on the real set: train on one fold's masks, score the other fold; both ways, pooled per sample."""
    from voxuda_cli.inference import Predictor, PredictSettings
    from voxuda_cli.io import read_dataset
    from voxuda_cli.metrics import score_masks

    paths, run_dir = target["paths"], Path(target["run_dir"])
    samples: list[dict[str, Any]] = []
    seconds = 0.0
    for train_fold, test_fold in (("fold0", "fold1"), ("fold1", "fold0")):
        fold = {**target, "paths": {**paths, "target_adapt": paths[train_fold]}, "run_dir": str(run_dir / train_fold)}
        seconds += _train({**job, **REAL_SUPERVISED}, fold)["train_seconds"]
        test = read_dataset([paths[test_fold]])
        masks = Predictor(run_dir / train_fold, PredictSettings(device=job["device"])).predict_dataset(test).masks
        samples += score_masks(test.names, masks, test.masks, test.classes)["samples"]
    mean = {key: float(np.mean([sample[key] for sample in samples])) for key in ("iou", "dice")}
    return _result(job, target, {"student": mean}, "student", {"train_seconds": seconds})


def _result(
    job: dict[str, Any], target: dict[str, Any], scores: dict[str, Any], default: str, trained: dict[str, Any]
) -> dict[str, Any]:
    """One run's bench_result.json (written to its run folder) and return value."""
    run_dir = Path(target["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    result = {
        **{k: job[k] for k in ("row", "source", "seed")},
        "target": target["target"],
        "options": job["options"],
        "default_weights": default,
        "scores": scores,
        **trained,
    }
    (run_dir / "bench_result.json").write_text(json.dumps(result, indent=2))
    return result


def _train_and_score(job: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    return _score(job, target, _train(job, target))


def _train(job: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """Train the job's row into the target's run folder; the training figures of the result."""
    import torch

    from voxuda_cli.training import TrainSettings, train

    paths = target["paths"]
    torch.set_num_threads(job["threads"])
    settings = TrainSettings(
        src=(paths["source"],),
        tgt=(paths["target_adapt"],),
        # the saved estimate was made with the default N_sample and rho: a row that varies them estimates its own
        noise=None if {"n_sampled", "keep_rate"} & set(job["options"]) else paths["noise"],
        epochs=job["epochs"],
        width=job["width"],
        batch_size=job["batch_size"],
        lr_step=job["lr_step"],
        device=job["device"],
        seed=job["seed"],
        threads=job["threads"],
        **job["options"],
    )
    started = time.perf_counter()
    summary = train(settings, Path(target["run_dir"]), overwrite=True)
    trained = {
        "train_seconds": time.perf_counter() - started,
        "final": summary.get("final"),
        "pseudo_labels": summary.get("pseudo_labels"),
        "source_view": summary.get("source_view"),
        "spectral_coverage": summary.get("spectral_coverage"),
        "checkpoint": summary.get("checkpoint"),
    }
    return trained


def _score(job: dict[str, Any], target: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """Score the run folder's student and teacher on the target's test set; write bench_result.json."""
    from voxuda_cli.inference import Predictor, PredictSettings
    from voxuda_cli.io import read_dataset
    from voxuda_cli.metrics import score_masks

    run_dir = Path(target["run_dir"])
    test = read_dataset([target["paths"]["target_test"]])
    scores = {}
    predictor = Predictor(run_dir, PredictSettings(device=job["device"]))
    for use in predictor.info.weights:
        masks = Predictor(run_dir, PredictSettings(device=job["device"], use=use)).predict_dataset(test).masks
        scores[use] = score_masks(test.names, masks, test.masks, test.classes)["mean"]
    trained = {**trained, "candidates": _score_candidates(job, run_dir, test)}
    return _result(job, target, scores, predictor.settings.use, trained)


def _score_candidates(job: dict[str, Any], run_dir: Path, test: Any) -> list[dict[str, Any]]:
    """Every label-free selection candidate of the run: its epoch's figures and its true Dice (predict's weights)."""
    from voxuda_cli.inference import Predictor, PredictSettings
    from voxuda_cli.metrics import score_masks
    from voxuda_cli.training.selection import FIGURES, candidate_name

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    candidates = []
    for record in records:
        path = run_dir / candidate_name(record["epoch"])
        if FIGURES[0] not in record or not path.is_file():
            continue
        masks = Predictor(path, PredictSettings(device=job["device"])).predict_dataset(test).masks
        dice = score_masks(test.names, masks, test.masks, test.classes)["mean"]["dice"]
        candidates.append({"epoch": record["epoch"], "dice": dice, **{k: record[k] for k in FIGURES}})
    return candidates


def jobs_for(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One job per source, seed, row and target; a target-free row's job covers every target."""
    jobs = []
    for source in args.sources:
        for seed in args.seeds:
            targets = {
                target: {k: str(v) for k, v in make_data(args, source, target, seed).items()} for target in args.targets
            }
            for row in args.rows:
                groups = [[t] for t in args.targets]
                if row in TARGET_FREE:  # one training for the simulated targets; real has its own source labels
                    groups = [
                        g for g in ([t for t in args.targets if t != REAL], [REAL]) if g and set(g) <= set(args.targets)
                    ]
                for group in groups:
                    jobs.append(
                        {
                            "row": row,
                            "source": source,
                            "seed": seed,
                            "options": ROWS[row][1],
                            "targets": [
                                {
                                    "target": t,
                                    "paths": targets[t],
                                    "run_dir": str(args.work / f"{source}_{t}_s{seed}" / row),
                                }
                                for t in group
                            ],
                            "epochs": args.epochs,
                            "width": args.width,
                            "batch_size": args.batch_size,
                            "lr_step": args.lr_step or max(1, (2 * args.epochs) // 3),
                            "device": args.device,
                            "threads": 1 if args.jobs > 1 else (os.cpu_count() or 1),
                        }
                    )
    return jobs


def run_all(args: argparse.Namespace, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = []
    # spawn, not fork: this process may have run torch (simulation, noise estimates) and a forked child
    # of a process with OpenMP threads can hang on their locks (seen: a training child stuck in a futex)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [pool.submit(run_one, job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            for result in future.result():
                dice = {use: f"{100 * s['dice']:.1f}" for use, s in result["scores"].items()}
                print(
                    f"{result['source']}->{result['target']} seed {result['seed']} {result['row']}: Dice {dice}",
                    flush=True,
                )
                results.append(result)
    return results


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def table(args: argparse.Namespace, results: list[dict[str, Any]], source: str, target: str) -> str:
    header = ["Row", "key", "Dice (predict's weights)", "Dice (teacher)", "mIoU", "per seed (Dice)", "train (min)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in args.rows:
        runs = sorted(
            (r for r in results if r["row"] == row and r["source"] == source and r["target"] == target),
            key=lambda r: r["seed"],
        )
        if not runs:
            continue
        default = [r["scores"][r["default_weights"]] for r in runs]
        teacher = [r["scores"]["teacher"]["dice"] for r in runs if "teacher" in r["scores"]]
        cells = [
            ROWS[row][0],
            f"`{row}`",
            mean_std([s["dice"] for s in default]),
            mean_std(teacher),
            mean_std([s["iou"] for s in default]),
            ", ".join(f"{100 * s['dice']:.1f}" for s in default),
            f"{statistics.fmean(r['train_seconds'] for r in runs) / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(results: list[dict[str, Any]], source: str, target: str, settings: list[str]) -> str:
    """Table 4's shape: per setting and value, our mIoU and Dice (mean ± sd over seeds) and the paper's."""
    lines = ["| setting | value | mIoU | Dice | paper mIoU | paper Dice |", "|---|---|---|---|---|---|"]
    for setting in settings:
        symbol, grid, paper = SWEEP[setting]
        for value, (paper_iou, paper_dice) in zip(grid, paper):
            row = sweep_row(setting, value)
            runs = [r for r in results if r["row"] == row and r["source"] == source and r["target"] == target]
            scores = [r["scores"][r["default_weights"]] for r in runs]
            cells = [symbol, str(value), mean_std([s["iou"] for s in scores]), mean_std([s["dice"] for s in scores])]
            lines.append("| " + " | ".join([*cells, f"{paper_iou:.1f}", f"{paper_dice:.1f}"]) + " |")
    return "\n".join(lines)


def write_results(args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    import torch

    command = "python benchmarks/bench_uda.py " + " ".join(sys.argv[1:])
    machine = f"{platform.node()}: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"
    sections = []
    for source in args.sources:
        for target in args.targets:
            if not any(r["source"] == source and r["target"] == target for r in results):
                continue
            sections.append(f"### source `{source}` -> target `{target}`\n\n{table(args, results, source, target)}\n")
            if args.sweep:
                swept = sweep_table(results, source, target, args.sweep_settings)
                sections.append(f"Table 4 (the paper's beside ours):\n\n{swept}\n")
    text = f"""## Domain adaptation (generated by bench_uda.py)

Date: {datetime.date.today().isoformat()}. Machine: {machine}. torch {torch.__version__}.
Command: `{command}`

Per seed: {args.n_source} source samples per molecule (and SNR level), {args.n_target} target samples per
molecule in the adaptation set and as many in the held-out test set (other seeds). VoxResNet width
{args.width}, batch {args.batch_size}, {args.epochs} epochs, lr decayed x0.1 at epoch
{args.lr_step or max(1, (2 * args.epochs) // 3)}; seeds {", ".join(map(str, args.seeds))}; every
other setting at `voxuda train`'s defaults. Dice in percent, mean ± standard deviation over seeds,
of `voxuda predict`'s default weights; "Dice (teacher)" scores the EMA teacher of the same runs.

{chr(10).join(sections)}"""
    return text


def reselect(args: argparse.Namespace) -> None:
    """--reselect RULE: what another --select would have kept, without training again."""
    import shutil

    from voxuda_cli.training.selection import candidate_name, choose

    for path in sorted(args.work.glob("*/*/bench_result.json")):
        result, run_dir = json.loads(path.read_text()), path.parent
        if not result.get("candidates"):
            continue
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        chosen = choose(history, args.reselect)
        if chosen is None or (result.get("checkpoint") or {}).get("epoch") == chosen["epoch"]:
            continue  # nothing to choose from, or already scored with this choice
        shutil.copyfile(run_dir / candidate_name(chosen["epoch"]), run_dir / "model.pt")
        (run_dir / "selection.json").write_text(json.dumps(chosen, indent=2) + "\n")
        job = {**result, "device": args.device}
        test = {"target": result["target"], "run_dir": str(run_dir), "paths": _test_paths(args, result)}
        trained = {k: v for k, v in result.items() if k in ("train_seconds", "final", "pseudo_labels", "source_view")}
        _score(job, test, {**trained, "spectral_coverage": result.get("spectral_coverage"), "checkpoint": chosen})


def _test_paths(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Path]:
    if result["target"] == REAL:
        return {"target_test": args.work / "data_real" / "real_test.h5"}
    folder = data_folder(args, result["source"], result["target"], result["seed"])[1]
    return {"target_test": folder / f"{result['target']}_test.h5"}


def finished_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every finished run under --work (for --report); the table's axes become what was run."""
    results = [json.loads(p.read_text()) for p in sorted(args.work.glob("*/*/bench_result.json"))]
    seen = {r["row"] for r in results}
    args.rows = [r for r in ROWS if r in seen] + sorted(seen - set(ROWS))
    for row in seen - set(ROWS):
        ROWS[row] = (row, next(r["options"] for r in results if r["row"] == row))
    args.sources = sorted({r["source"] for r in results}, key=lambda s: (s != "source", s))
    args.targets = sorted({r["target"] for r in results}, key=lambda t: (t != "crowded", t))
    args.seeds = sorted({r["seed"] for r in results})
    return results


def main() -> None:
    args = parse()
    started = time.perf_counter()
    if args.reselect:
        reselect(args)
    if args.report or args.reselect:
        results, jobs = finished_runs(args), []
    else:
        jobs = jobs_for(args)
        results = run_all(args, jobs)
    text = write_results(args, results)
    args.json_results.parent.mkdir(parents=True, exist_ok=True)
    args.json_results.write_text(json.dumps(results, indent=2))
    if args.report or args.reselect:
        args.results.write_text(text)
    print(text)
    print(f"{len(jobs)} runs in {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
