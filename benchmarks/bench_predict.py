"""Whole-tomogram prediction: throughput and peak memory on CPU, against MONAI's sliding_window_inference.

Both runs segment the same MRC tomogram with the same VoxResNet (width 32, seeded random
weights: speed does not depend on what the weights learned), the same 32^3 window, overlap,
Gaussian blending (sigma = box/8), window batch and per-window z-scoring; both write the mask
and the probability map as MRC files. Each runs in its own subprocess; its peak memory is
ru_maxrss after the run minus ru_maxrss after imports, model load and one warm-up batch.
MONAI holds the whole tomogram and its output in memory; voxuda streams both through memory
maps. The two probability maps are compared voxel by voxel (they should agree to ~1e-6).

Targets (issues 6 and 15): voxuda at least as fast as MONAI, and its peak memory under 3x the
tomogram's float32 size. MONAI gets the network prepared as voxuda's (channels-last on CPU), so
the ratio is the pipeline's; a third run, voxuda --amp (bf16 autocast where the CPU has
AVX512-BF16/AMX), is compared with MONAI in float32.

A second part compares the two ways of normalising a whole tomogram (z-score each window, as
the network saw subtomograms in training, or the whole tomogram once) with a small network
trained here for a few steps on synthetic subtomograms (noisy balls), on a synthetic tomogram
with sparse balls, flat and with a slow intensity ramp (uneven ice). It prints Dice for each.

Usage: python benchmarks/bench_predict.py [--quick] [--shape D H W] [--width 32] [--skip-normalisation]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BOX = 32


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def _balls(
    shape: tuple[int, int, int], count: int, rng: np.random.Generator, radius: tuple[float, float]
) -> np.ndarray:
    """A binary mask of ``count`` balls at random places (uint8)."""
    mask = np.zeros(shape, np.uint8)
    for _ in range(count):
        r = rng.uniform(*radius)
        centre = [rng.uniform(r, n - r) for n in shape]
        lo = [max(int(c - r) - 1, 0) for c in centre]
        hi = [min(int(c + r) + 2, n) for c, n in zip(centre, shape)]
        grid = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= r * r
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] |= inside.astype(np.uint8)
    return mask


def make_tomogram(path: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    from voxuda_cli.io.mrc import write_mrc
    from voxuda_cli.io.volume import Volume

    rng = np.random.default_rng(seed)
    count = max(int(np.prod(shape) / 40_000), 2)
    mask = _balls(shape, count, rng, (4.0, 9.0))
    data = (mask + rng.normal(0.0, 0.7, shape)).astype(np.float32)
    write_mrc(path, Volume(data, voxel_size=10.0, origin=(0.0, 0.0, 0.0)))


def make_model(path: Path, width: int, seed: int = 0) -> None:
    import torch

    from voxuda_cli.models import ModelInfo, VoxResNet, VoxResNetConfig, save_model

    torch.manual_seed(seed)
    network = VoxResNet(VoxResNetConfig(width=width)).eval()
    info = ModelInfo(architecture=network.config, box=(BOX,) * 3, voxel_size=10.0)
    save_model(path, info, network.state_dict(), network.state_dict())


# ---- workers: one per subprocess ------------------------------------------------------------------


def worker_voxuda(args: argparse.Namespace) -> dict[str, Any]:
    from voxuda_cli.inference import Predictor, PredictSettings

    settings = PredictSettings(
        device="cpu",
        batch_size=args.batch_size,
        overlap=args.overlap,
        probabilities=True,
        amp=args.worker == "voxuda-amp",
    )
    predictor = Predictor(args.model, settings)
    predictor.predict_windows(np.random.default_rng(0).normal(size=(args.batch_size, BOX, BOX, BOX)))  # warm-up
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    name = args.worker
    predictor.predict_tomogram(args.tomogram, args.out / f"{name}.mrc", args.out / f"{name}_probabilities.mrc")
    return {"seconds": time.perf_counter() - started, "peak_mb": _peak_rss_mb() - baseline}


def worker_monai(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from monai.inferers import sliding_window_inference

    from voxuda_cli.io.mrc import read_mrc, write_mrc
    from voxuda_cli.models import load_model
    from voxuda_cli.models.speed import prepare_network

    # the same network as voxuda's: prepared the same way (channels-last on CPU), so the ratio is the pipeline's
    network = prepare_network(load_model(args.model, "teacher", "cpu")[0], torch.device("cpu"))

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        mean = windows.mean(dim=(1, 2, 3, 4), keepdim=True)
        std = windows.std(dim=(1, 2, 3, 4), keepdim=True, correction=0).clamp_min(1e-12)
        return torch.softmax(network((windows - mean) / std), dim=1)[:, 1:2]

    with torch.inference_mode():
        predictor(torch.randn(args.batch_size, 1, BOX, BOX, BOX))  # warm-up
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    volume = read_mrc(args.tomogram)
    inputs = torch.from_numpy(np.asarray(volume.data, dtype=np.float32))[None, None]
    with torch.inference_mode():
        probabilities = sliding_window_inference(
            inputs, (BOX,) * 3, args.batch_size, predictor, overlap=args.overlap, mode="gaussian"
        )[0, 0].numpy()
    write_mrc(args.out / "monai.mrc", volume.with_data((probabilities > 0.5).astype(np.int8)))
    write_mrc(args.out / "monai_probabilities.mrc", volume.with_data(probabilities))
    return {"seconds": time.perf_counter() - started, "peak_mb": _peak_rss_mb() - baseline}


def run_worker(name: str, model: Path, tomogram: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--worker", name, "--model", str(model), "--tomogram", str(tomogram),
        "--out", str(out), "--batch-size", str(args.batch_size), "--overlap", str(args.overlap),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{name} worker failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---- part 1: speed and memory ---------------------------------------------------------------------


def speed_and_memory(args: argparse.Namespace, folder: Path) -> None:
    from voxuda_cli.inference.sliding_window import WindowPlan
    from voxuda_cli.io.mrc import read_mrc

    shape = tuple(args.shape)
    tomogram, model = folder / "tomogram.mrc", folder / "model.pt"
    make_tomogram(tomogram, shape)  # type: ignore[arg-type]
    make_model(model, args.width)
    voxels = int(np.prod(shape))
    size_mb = voxels * 4 / 2**20
    windows = WindowPlan.make(shape, (BOX,) * 3, args.overlap).n_windows
    print(
        f"tomogram {shape[0]}x{shape[1]}x{shape[2]} (float32 {size_mb:.0f} MB), VoxResNet width {args.width}, "
        f"window {BOX}^3, overlap {args.overlap}, batch {args.batch_size}: {windows} windows, "
        f"{os.cpu_count()} CPUs, torch threads default",
        flush=True,
    )
    results = {}
    for name in ("voxuda", "monai", "voxuda-amp"):
        results[name] = run_worker(name, model, tomogram, folder, args)
        r = results[name]
        print(
            f"  {name:10s} {r['seconds']:7.1f} s  {voxels / 1e6 / r['seconds']:6.3f} Mvoxel/s  "
            f"peak +{r['peak_mb']:6.1f} MB ({r['peak_mb'] / size_mb:.2f}x tomogram)",
            flush=True,
        )
    theirs, their_mask = (read_mrc(folder / f"monai{suffix}.mrc").data for suffix in ("_probabilities", ""))
    for name in ("voxuda", "voxuda-amp"):
        ours = read_mrc(folder / f"{name}_probabilities.mrc").data
        agree = float(np.mean(read_mrc(folder / f"{name}.mrc").data == their_mask))
        print(f"  {name}: max |p - p_monai| = {np.abs(ours - theirs).max():.2e}; masks agree on {100 * agree:.4f} %")
    for name in ("voxuda", "voxuda-amp"):
        ratio = results["monai"]["seconds"] / results[name]["seconds"]
        print(f"  speed {name} / MONAI = {ratio:.2f}x (target >= 1): {'met' if ratio >= 1 else 'NOT met'}")
    memory_ratio = results["voxuda"]["peak_mb"] / size_mb
    print(
        f"  voxuda peak memory = {memory_ratio:.2f}x the tomogram's float32 size (target < 3): "
        f"{'met' if memory_ratio < 3 else 'NOT met'}; MONAI: {results['monai']['peak_mb'] / size_mb:.2f}x"
    )


# ---- part 2: window vs tomogram z-scoring ---------------------------------------------------------


EXPERIMENT_BOX = 16  # the experiment's own network and windows: 8x cheaper than 32^3, same question


def _ball_subtomograms(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """z-scored subtomograms of EXPERIMENT_BOX^3, each with one noisy ball; and their masks."""
    masks = np.stack([_balls((EXPERIMENT_BOX,) * 3, 1, rng, (2.5, 4.5)) for _ in range(count)])
    images = masks + rng.normal(0.0, 0.7, masks.shape)
    images = (images - images.mean(axis=(1, 2, 3), keepdims=True)) / images.std(axis=(1, 2, 3), keepdims=True)
    return images.astype(np.float32), masks


def _train_ball_network(steps: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A width-4 VoxResNet trained briefly (cross-entropy + Dice) on z-scored ball subtomograms."""
    import torch

    from voxuda_cli.models import VoxResNet, VoxResNetConfig

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = VoxResNet(VoxResNetConfig(width=4))
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    network.train()
    for _ in range(steps):
        images, masks = _ball_subtomograms(rng, 16)
        logits = network(torch.from_numpy(images)[:, None])
        target = torch.from_numpy(masks).long()
        probability = torch.softmax(logits, 1)[:, 1]
        dice = 1 - (2 * (probability * target).sum() + 1) / (probability.sum() + target.sum() + 1)
        loss = torch.nn.functional.cross_entropy(logits, target) + dice
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return network.eval()


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    p, t = prediction > 0, truth > 0
    return 2 * float((p & t).sum()) / max(float(p.sum() + t.sum()), 1.0)


def normalisation_experiment(args: argparse.Namespace) -> None:
    from voxuda_cli.inference import Predictor, PredictSettings
    from voxuda_cli.models import ModelInfo

    steps = 10 if args.quick else args.train_steps
    shape = (32, 48, 48) if args.quick else (48, 96, 96)
    started = time.perf_counter()
    network = _train_ball_network(steps)
    info = ModelInfo(architecture=network.config, box=(EXPERIMENT_BOX,) * 3)
    rng = np.random.default_rng(1)
    held_out, held_out_masks = _ball_subtomograms(rng, 32)
    plain = Predictor.from_network(network, info, PredictSettings(device="cpu", batch_size=16))
    subtomogram_dice = _dice(plain.predict_batches(held_out) > 0.5, held_out_masks)
    truth = _balls(shape, max(int(np.prod(shape) / 3_000), 2), rng, (2.5, 4.5))
    noise = rng.normal(0.0, 0.7, shape)
    ramp = np.linspace(-0.5, 0.5, shape[2], dtype=np.float32)[None, None, :]
    print(
        f"\nnormalisation: VoxResNet width 4, box {EXPERIMENT_BOX}, trained {steps} steps on z-scored ball "
        f"subtomograms ({time.perf_counter() - started:.0f} s; Dice {subtomogram_dice:.3f} on held-out "
        f"subtomograms); tomogram {shape}, {100 * truth.mean():.1f} % foreground, overlap 0.5"
    )
    for case, volume in (("flat", truth + noise), ("ramp +-0.5 (uneven ice)", truth + noise + ramp)):
        line = []
        for mode in ("window", "tomogram"):
            predictor = plain.with_settings(normalise=mode, batch_size=8)
            mask = predictor.predict_volume(volume.astype(np.float32)) > 0.5
            line.append(f"{mode}: Dice {_dice(mask, truth):.3f}")
        print(f"  {case:24s} " + "   ".join(line), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small tomogram and network: checks the script runs")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="tomogram D H W [default: 128 256 256]")
    parser.add_argument("--width", type=int, default=None, help="VoxResNet width [default: 32; quick: 8]")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=60, help="steps of the normalisation experiment's network")
    parser.add_argument("--skip-normalisation", action="store_true", help="only the speed and memory part")
    parser.add_argument("--skip-speed", action="store_true", help="only the normalisation experiment")
    parser.add_argument("--worker", choices=("voxuda", "voxuda-amp", "monai"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tomogram", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = (worker_monai if args.worker == "monai" else worker_voxuda)(args)
        print(json.dumps(result))
        return 0
    args.shape = args.shape or ([48, 96, 96] if args.quick else [128, 256, 256])
    args.width = args.width or (8 if args.quick else 32)
    if not args.skip_speed:
        with tempfile.TemporaryDirectory(prefix="bench_predict_") as folder:
            speed_and_memory(args, Path(folder))
    if not args.skip_normalisation:
        normalisation_experiment(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
