"""Training speed: samples/s of source-only and vox-uda steps in the same run, and their ratio.

A vox-uda step runs the student on three times the batch (x_s, x_s', x_t in one forward) plus one
teacher forward; the issue's target is a time-per-sample ratio vox-uda / source-only <= 3.5.
Batches come from the real batch builder (flips, NGM noise, target sampling); the IBF-denoised
target is computed once beforehand, as in training, and not timed.

    python benchmarks/bench_train.py                  # CPU, width 32, batch 16 (the paper's)
    python benchmarks/bench_train.py --quick          # width 8, batch 4: checks that it runs
    python benchmarks/bench_train.py --device cuda    # GPU, with and without --amp
    python benchmarks/bench_train.py --threads 1      # steadiest figures on a machine others share
    python benchmarks/bench_train.py --paths eager,channels-last,bf16   # CPU --amp (bf16) too

The floor of the ratio is about 3.3: three student passes plus one teacher forward (about a third
of a training pass). On the CPU the rest is mostly the kernel faulting in fresh pages for the
larger activations (glibc returns allocations of 32 MB and more to the system on free).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voxuda_cli.io.dataset import Dataset, write_dataset  # noqa: E402
from voxuda_cli.models import speed  # noqa: E402
from voxuda_cli.training.data import EpochBatches, EpochPlan, TrainingData, load_training_data  # noqa: E402
from voxuda_cli.training.loop import Trainer  # noqa: E402
from voxuda_cli.training.settings import TrainSettings  # noqa: E402

TARGET_RATIO = 3.5
METHODS = ("source-only", "vox-uda")


def blobs(n: int, noise: float, seed: int, box: int = 32, masks: bool = True) -> Dataset:
    rng = np.random.default_rng(seed)
    grid = np.indices((box,) * 3, dtype=np.float32)
    labels = []
    for _ in range(n):
        center, radius = rng.uniform(box * 0.3, box * 0.7, 3), rng.uniform(4, 9)
        labels.append((np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center))) <= radius).astype(np.uint8))
    stacked = np.stack(labels)
    images = (stacked + rng.normal(0, noise, stacked.shape)).astype(np.float32)
    return Dataset(images=images, names=[f"b{i}" for i in range(n)], voxel_size=10.0, masks=stacked if masks else None)


def prepare(folder: Path, samples: int, device: torch.device) -> TrainingData:
    write_dataset(folder / "src.h5", blobs(samples, 0.5, 1))
    write_dataset(folder / "tgt.h5", blobs(samples, 1.0, 2, masks=False))
    settings = TrainSettings(src=(folder / "src.h5",), tgt=(folder / "tgt.h5",), method="vox-uda")
    return load_training_data(settings, device)


def make_stepper(
    data: TrainingData, method: str, width: int, batch: int, device: torch.device, amp: bool, path: str
) -> Callable[[int], tuple[float, float]]:
    """A function that runs training step ``i`` of ``method`` on ``path`` and returns its (wall, CPU) seconds."""
    settings = TrainSettings(
        method=method, width=width, batch_size=batch, amp=amp or path == "bf16", device=device.type,
        compile=path == "compiled", source_view="spectral",  # the costliest view: auto may pick none
    )  # fmt: skip
    if method != "vox-uda":
        data = TrainingData(**{**data.__dict__, "target": None, "denoised_target": None, "noise_sigma": None})
    # "eager": the network as before issue 15 (default memory layout); the Trainer prepares it once, here
    layout = speed.uses_channels_last
    speed.uses_channels_last = (lambda device: False) if path == "eager" else layout  # type: ignore[assignment]
    try:
        trainer = Trainer(settings, device)
    finally:
        speed.uses_channels_last = layout  # type: ignore[assignment]
    batches = EpochBatches(data, settings, EpochPlan.build(len(data.labelled), batch, settings.seed, 0), epoch=0)

    def step(index: int) -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started, started_cpu = time.perf_counter(), time.process_time()
        trainer.step(batches[index % len(batches)].to(device), progress=0.5)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started, time.process_time() - started_cpu

    return step


def measure(
    data: TrainingData, width: int, batch: int, steps: int, warmup: int, device: torch.device, amp: bool,
    paths: tuple[str, ...],
) -> dict[tuple[str, str], list[tuple[float, float]]]:  # fmt: skip
    """Per-step (wall, CPU) times of both methods on every path, steps interleaved so load changes hit all alike."""
    steppers = {
        (path, method): make_stepper(data, method, width, batch, device, amp, path)
        for path in paths
        for method in METHODS
    }
    times: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in steppers}
    for index in range(warmup + steps):
        for key, step in steppers.items():
            seconds = step(index)
            if index >= warmup:
                times[key].append(seconds)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="width 8, batch 4, 2 steps: a check that it runs")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda also measures --amp)")
    parser.add_argument("--amp", action="store_true", help="on CUDA, measure only with mixed precision")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--paths", default="eager,channels-last", help="comma-separated: eager (before issue 15), channels-last "
        "(the default now), bf16 (channels-last and --amp: bf16 autocast where the CPU has AVX512-BF16/AMX), "
        "compiled (--compile: channels-last and torch.compile; minutes of compiling)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.width, args.batch_size, args.steps, args.warmup = 8, 4, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp_modes = [False]
    if device.type == "cuda":
        amp_modes = [True] if args.amp else [False, True]
    print(
        f"bench_train: device {device} ({torch.cuda.get_device_name(device) + ', ' if device.type == 'cuda' else ''}"
        f"{torch.get_num_threads()} CPU threads), width {args.width}, batch {args.batch_size}, box 32^3, "
        f"{args.steps} timed steps after {args.warmup} warm-up",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        data = prepare(Path(folder), args.batch_size * 2, device)
    # CPU seconds (all threads of this process) are less disturbed than wall time by other work on the machine.
    paths = tuple(args.paths.split(","))
    print(f"{'amp':>5} {'path':>14} {'method':>12} {'wall s/step':>12} {'CPU s/step':>11} {'samples/s':>10}")
    for amp in amp_modes:
        times = measure(data, args.width, args.batch_size, args.steps, args.warmup, device, amp, paths)
        wall = {key: float(np.median([t[0] for t in values])) for key, values in times.items()}
        cpu = {key: float(np.median([t[1] for t in values])) for key, values in times.items()}
        for path, method in times:
            print(
                f"{str(amp):>5} {path:>14} {method:>12} {wall[path, method]:12.3f} {cpu[path, method]:11.3f} "
                f"{args.batch_size / wall[path, method]:10.2f}"
            )
        for path in paths:
            for clock, values in (("wall", wall), ("CPU", cpu)):
                ratio = values[path, "vox-uda"] / values[path, "source-only"]
                verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
                print(
                    f"{str(amp):>5} {path:>14} vox-uda / source-only {clock} time per step (medians): {ratio:.2f} "
                    f"({verdict} target {TARGET_RATIO})"
                )
        for path in paths[1:]:
            speedup = wall[paths[0], "source-only"] / wall[path, "source-only"]
            print(f"{str(amp):>5} source-only samples/s, {path} vs {paths[0]} (same run): {speedup:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
