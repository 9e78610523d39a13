"""Whole-tomogram prediction: the large-window engine against the box windows, predict before issue 24, and MONAI.

Part 1, speed (issue 24): the same MRC tomogram (128 x 256 x 256, noisy balls) and the same seeded
VoxResNet weights (speed does not depend on what they learned) at widths 8 and 32, each path in
its own subprocess:
- ``before``: ``predict`` of the last revision before issue 24 (``--before``, extracted with git
  archive and run from there): 32^3 windows overlapping by 0.5, Gaussian blending, each window
  z-scored, ATen's own convolutions: "today's path" as the issue measured it;
- ``box``: today's code with that path's settings (``--blend gaussian --normalise window``): it
  shares the engine's faster network (oneDNN everywhere, the lean forward), so large / box is the
  gain of the windows alone;
- ``large``: the default: windows as large as ``--memory`` allows, whose cores tile the grid with
  16 voxels of margin (each voxel computed about once), local z-scoring (block statistics);
- ``int8``: ``large`` with ``--int8`` (8-bit convolutions, CPUs only);
- ``monai``: MONAI's ``sliding_window_inference`` with the box path's windows and weights.
Printed: seconds (the fastest of ``--repeat`` rounds, each path run once per round), Mvoxel/s,
how many times each voxel was computed, achieved GFLOP/s (torch's FLOP counter on the network)
against a plain channels-last conv3d measured in the same run (int8: the same conv3d in 8 bits), peak
resident memory (VmHWM after the run minus VmRSS after imports, model load and a warm-up) against
the tomogram's float32 size, the speed ratio large / box and the agreement of their masks. Then
the memory check: the large path on a 256 x 512 x 512 tomogram at width 8 (target: peak <= 2x).

Part 2, quality: a width-4 network trained here for a few steps on z-scored ball subtomograms
(box 16) segments synthetic tomograms of balls (3 seeds) on five backgrounds (flat, two ramps, a
bump, twice the gain on one half: uneven ice and illumination), by each path and normalisation;
it prints Dice against the truth, mean and sd over the seeds.

With ``--device cuda`` every path but MONAI runs on the GPU (its allocator's peak printed too);
``--amp`` predicts in bf16 where the device has it. The GPU check, when a GPU is lent:
``python benchmarks/bench_predict.py --device cuda --skip-normalisation [--amp]``.

Usage: python benchmarks/bench_predict.py [--quick] [--shape D H W] [--widths 8,32] [--memory GiB] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BOX = 32
BEFORE_ISSUE_24 = "c223658"  # the last revision before issue 24: predict "today" when the issue was filed


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (kB -> MiB)."""
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss_mb() -> float:
    """Reset the peak resident set (Linux clear_refs 5) and return the current one.

    ru_maxrss is not usable here: a child process starts with its parent's maximum (the parent
    built the tomogram), so small peaks vanish under it.
    """
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as refs:
        refs.write("5")
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    return _status_mb("VmHWM")


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

# today's path before issue 24 (box-sized windows, overlap 0.5, Gaussian blending, per-window
# z-scoring) and the new default (large windows whose cores tile the grid, tomogram statistics)
PATHS: dict[str, dict[str, Any]] = {
    "box": {"blend": "gaussian", "normalise": "window"},
    "large": {},
    "int8": {"int8": True},  # the large path with 8-bit convolutions (CPU)
}


def worker_voxuda(args: argparse.Namespace) -> dict[str, Any]:
    from voxuda_cli.inference import Predictor, PredictSettings

    settings = PredictSettings(
        device=args.device, amp=args.amp, batch_size=args.batch_size, overlap=args.overlap, probabilities=True,
        memory=args.memory, **PATHS[args.worker],
    )  # fmt: skip
    result, measured = _timed_tomogram(Predictor(args.model, settings), args)
    return {**measured, "computed": result.computed * float(np.prod(result.shape)), "window": result.window}


def _timed_tomogram(predictor: Any, args: argparse.Namespace) -> tuple[Any, dict[str, float]]:
    """``predictor`` (warmed up first) on the tomogram into ``<worker>.mrc``: its result, seconds and peak memory."""
    predictor.predict_windows(np.random.default_rng(0).normal(size=(args.batch_size, BOX, BOX, BOX)))  # warm-up
    baseline = _reset_peak_memory(args.device)
    started = time.perf_counter()
    result = predictor.predict_tomogram(args.tomogram, args.out / f"{args.worker}.mrc")
    return result, {"seconds": time.perf_counter() - started, **_peak_memory(args.device, baseline)}


def _reset_peak_memory(device: str) -> float:
    """Reset the peak counters (resident set; on CUDA also the device's allocator) and return the RSS now."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    return _reset_peak_rss_mb()


def _peak_memory(device: str, baseline: float) -> dict[str, float]:
    """Peak resident set above ``baseline`` (MiB); on CUDA also the peak of the device's allocator."""
    peaks = {"peak_mb": _peak_rss_mb() - baseline}
    if device.startswith("cuda"):
        import torch

        peaks["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peaks


def worker_before(args: argparse.Namespace) -> dict[str, Any]:
    """predict as it was when issue 24 was filed: run with ``voxuda_cli`` from that revision on the path.

    Its defaults were the box path (32^3 windows, overlap 0.5, Gaussian blending, windows z-scored)
    on ATen's own convolutions; the model file format is unchanged since, so it reads the same weights.
    """
    import voxuda_cli
    from voxuda_cli.inference import Predictor, PredictSettings

    if not str(Path(voxuda_cli.__file__).resolve()).startswith(str(Path(args.before_tree).resolve())):
        raise RuntimeError(f"the before worker imported {voxuda_cli.__file__}, not {args.before_tree}")
    settings = PredictSettings(
        device=args.device, amp=args.amp, batch_size=args.batch_size, overlap=args.overlap, probabilities=True
    )
    result, measured = _timed_tomogram(Predictor(args.model, settings), args)
    # the revision's own count where it has one (issue 24's engine), else its box windows'
    computed = float(getattr(result, "computed", 0.0) * np.prod(result.shape) or result.windows * BOX**3)
    return {**measured, "computed": computed, "window": [BOX] * 3}


def before_tree(revision: str, folder: Path) -> Path | None:
    """``voxuda_cli`` of ``revision`` extracted under ``folder`` (git archive), or None outside a git clone."""
    root = Path(__file__).resolve().parent.parent
    tree = folder / "before"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "voxuda_cli"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        print(f"  (no `before` row: git archive {revision}: {archive.stderr.decode().strip()[:200]})", flush=True)
        return None
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def worker_monai(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from monai.inferers import sliding_window_inference

    from voxuda_cli.inference.sliding_window import WindowPlan
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
    baseline = _reset_peak_rss_mb()
    started = time.perf_counter()
    volume = read_mrc(args.tomogram)
    inputs = torch.from_numpy(np.asarray(volume.data, dtype=np.float32))[None, None]
    with torch.inference_mode():
        probabilities = sliding_window_inference(
            inputs, (BOX,) * 3, args.batch_size, predictor, overlap=args.overlap, mode="gaussian"
        )[0, 0].numpy()
    write_mrc(args.out / "monai.mrc", volume.with_data((probabilities > 0.5).astype(np.int8)))
    write_mrc(args.out / "monai_probabilities.mrc", volume.with_data(probabilities))
    seconds = time.perf_counter() - started
    computed = float(WindowPlan.make(volume.shape, (BOX,) * 3, args.overlap).computed_voxels)
    return {"seconds": seconds, "peak_mb": _peak_rss_mb() - baseline, "computed": computed, "window": [BOX] * 3}


def run_worker(
    name: str, model: Path, tomogram: Path, out: Path, args: argparse.Namespace, tree: Path | None = None
) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--worker", name, "--model", str(model), "--tomogram", str(tomogram),
        "--out", str(out), "--batch-size", str(args.batch_size), "--overlap", str(args.overlap),
        "--memory", str(args.memory), "--device", args.device, *(["--amp"] if args.amp else []),
    ]  # fmt: skip
    env = dict(os.environ)
    if tree is not None:  # the before row: that revision's voxuda_cli first on the path
        command += ["--before-tree", str(tree)]
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"{name} worker failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---- part 1: speed and memory ---------------------------------------------------------------------


def flop_per_voxel(width: int) -> float:
    """Forward FLOPs of VoxResNet per input voxel (torch's own counter, on a 32^3 input).

    Counted on the training forward (the model's arithmetic as defined): the inference forward
    computes the same numbers through oneDNN calls the counter does not see.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from voxuda_cli.models import VoxResNet, VoxResNetConfig

    network = VoxResNet(VoxResNetConfig(width=width)).eval()
    with FlopCounterMode(display=False) as counter:
        network.forward_features(torch.zeros(1, 1, BOX, BOX, BOX))
    return counter.get_total_flops() / BOX**3


def conv3d_peak(width: int, device: str = "cpu", seconds: float = 3.0) -> float:
    """GFLOP/s of a plain torch conv3d (width -> width channels, 3^3, 64^3; channels-last on CPU): the reference."""
    import torch

    layout = torch.channels_last_3d if device == "cpu" else torch.contiguous_format
    conv = torch.nn.Conv3d(width, width, 3, padding=1, bias=False).to(device, memory_format=layout)
    x = torch.randn(1, width, 64, 64, 64, device=device).to(memory_format=layout)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else None
    return _giga_per_second(conv, x, 2 * width * width * 27 * 64**3, seconds, synchronize)


def _giga_per_second(function: Any, x: Any, operations: float, seconds: float, synchronize: Any = None) -> float:
    """Giga-operations per second of ``function(x)`` (``operations`` each), repeated for ``seconds`` after a warm-up."""
    import torch

    with torch.inference_mode():
        function(x)
        if synchronize is not None:
            synchronize()
        started, reps = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            function(x)
            reps += 1
            if synchronize is not None:
                synchronize()
    return operations * reps / (time.perf_counter() - started) / 1e9


def int8_conv3d_rate(width: int, seconds: float = 3.0) -> float | None:
    """GOP/s of the same conv3d in 8 bits as ``predict --int8`` runs it (oneDNN's int8 convolution on
    uint8 activations and int8 weights, requantised to uint8), or None where torch has none: its reference."""
    import torch

    from voxuda_cli.models import int8
    from voxuda_cli.models.int8 import Int8Ops, Layer

    if not int8.supported():
        return None
    ops = Int8Ops()
    ops.scales.update({"x": 0.01, "y": 0.1})
    ops.freeze()
    x = ops.quantise_view("x", torch.rand(1, width, 64, 64, 64), torch.ones(width), torch.zeros(width))
    layer = Layer(torch.randn(width, width, 3, 3, 3).contiguous(memory_format=torch.channels_last_3d), None)
    x = x._replace(data=x.data.contiguous(memory_format=torch.channels_last_3d))
    return _giga_per_second(lambda a: ops.conv("y", layer, a, True), x, 2 * width * width * 27 * 64**3, seconds)


def speed_and_memory(
    args: argparse.Namespace,
    folder: Path,
    shape: tuple[int, ...],
    width: int,
    names: list[str],
    tree: Path | None = None,
) -> dict:
    from voxuda_cli.io.mrc import read_mrc

    tomogram, model = folder / "tomogram.mrc", folder / f"model{width}.pt"
    if not tomogram.exists():
        make_tomogram(tomogram, shape)  # type: ignore[arg-type]
    make_model(model, width)
    voxels = int(np.prod(shape))
    size_mb = voxels * 4 / 2**20
    per_voxel, peak = flop_per_voxel(width), conv3d_peak(width, args.device)
    print(
        f"\ntomogram {shape[0]}x{shape[1]}x{shape[2]} (float32 {size_mb:.0f} MB), VoxResNet width {width} "
        f"({per_voxel / 1e3:.1f} kFLOP/voxel), batch {args.batch_size}, --memory {args.memory} GiB, "
        f"{os.cpu_count()} CPUs; plain conv3d ({width}->{width}, 3^3, 64^3, channels-last): {peak:.1f} GFLOP/s",
        flush=True,
    )
    int8 = int8_conv3d_rate(width) if "int8" in names else None
    if int8 is not None:
        print(f"  the same conv3d in int8 (as predict --int8 runs it): {int8:.1f} GOP/s, {int8 / peak:.2f}x float32")
    results = _interleaved_runs(args, folder, model, tomogram, [n for n in names if n != "before" or tree], tree)
    for name, r in results.items():
        gflops = per_voxel * r["computed"] / r["seconds"] / 1e9
        reference, of = (int8, "int8 conv3d") if name == "int8" and int8 else (peak, "conv3d")
        print(
            f"  {name:6s} window {'x'.join(str(e) for e in r['window']):11s} {r['seconds']:7.1f} s  "
            f"{voxels / 1e6 / r['seconds']:6.3f} Mvoxel/s  computed {r['computed'] / voxels:4.2f}x  "
            f"{gflops:5.1f} GFLOP/s ({100 * gflops / reference:3.0f} % of {of})  "
            f"peak +{r['peak_mb']:6.1f} MB ({r['peak_mb'] / size_mb:.2f}x tomogram)"
            + (f", GPU {r['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in r else ""),
            flush=True,
        )
    if "box" in results and "large" in results:
        ratio = results["box"]["seconds"] / results["large"]["seconds"]
        agree = float(np.mean(read_mrc(folder / "box.mrc").data == read_mrc(folder / "large.mrc").data))
        print(f"  large / box = {ratio:.1f}x Mvoxel/s; masks agree on {100 * agree:.3f} % of voxels")
    for new, old in (("large", "before"), ("int8", "before"), ("int8", "large")):
        if new in results and old in results:
            ratio = results[old]["seconds"] / results[new]["seconds"]
            agree = float(np.mean(read_mrc(folder / f"{old}.mrc").data == read_mrc(folder / f"{new}.mrc").data))
            label = f"{old} ({args.before})" if old == "before" else old
            print(f"  {new} / {label} = {ratio:.1f}x Mvoxel/s; masks agree on {100 * agree:.3f} % of voxels")
    if "monai" in results and "box" in results:
        print(f"  box / MONAI = {results['monai']['seconds'] / results['box']['seconds']:.2f}x")
    return results


def _interleaved_runs(
    args: argparse.Namespace, folder: Path, model: Path, tomogram: Path, names: list[str], tree: Path | None
) -> dict[str, dict[str, Any]]:
    """Each path once per round, ``--repeat`` rounds: per path, the fastest round's figures and the largest peak.

    Rounds, not each path's runs in a row: the machine's speed drifts by 20 % over minutes, and a
    drift then lands on every path alike instead of on the one that happened to run during it.
    """
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for name in names:
            r = run_worker(name, model, tomogram, folder, args, tree if name == "before" else None)
            best = results.setdefault(name, r)
            peaks = {key: max(value, r[key]) for key, value in best.items() if key.endswith("_mb")}
            results[name] = {**(r if r["seconds"] < best["seconds"] else best), **peaks}
    return results


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


QUALITY_SEEDS = (11, 12, 13)  # the tomograms' balls and noise; the network is trained once (seed 0)


def _backgrounds(shape: tuple[int, ...]) -> dict[str, Any]:
    """What a tomogram's background does, in units of the noise-free ball contrast (1): a function of the
    clean volume (truth + noise) giving the observed one."""
    z, y, x = np.indices(shape, dtype=np.float32)
    bump = 0.8 * np.exp(-((x - 0.6 * shape[2]) ** 2 + (y - 0.4 * shape[1]) ** 2) / (2 * (shape[2] / 4) ** 2))
    return {
        "flat": lambda v: v,
        "ramp x +-0.5": lambda v: v + (x / shape[2] - 0.5),
        "ramp z +-1": lambda v: v + 2 * (z / shape[0] - 0.5),
        "bump 0.8": lambda v: v + bump,
        "gain x2 on half": lambda v: v * np.where(x < shape[2] / 2, 1.0, 2.0),
    }


def normalisation_experiment(args: argparse.Namespace) -> None:
    """Dice of each path and normalisation on ball tomograms with truth, over backgrounds and seeds."""
    from voxuda_cli.inference import Predictor, PredictSettings
    from voxuda_cli.models import ModelInfo

    steps = 10 if args.quick else args.train_steps
    shape = (32, 48, 48) if args.quick else (48, 96, 96)
    started = time.perf_counter()
    network = _train_ball_network(steps)
    info = ModelInfo(architecture=network.config, box=(EXPERIMENT_BOX,) * 3)
    held_out, held_out_masks = _ball_subtomograms(np.random.default_rng(1), 32)
    plain = Predictor.from_network(network, info, PredictSettings(device="cpu", batch_size=16))
    subtomogram_dice = _dice(plain.predict_batches(held_out) > 0.5, held_out_masks)
    print(
        f"\nnormalisation: VoxResNet width 4, box {EXPERIMENT_BOX}, trained {steps} steps on z-scored ball "
        f"subtomograms ({time.perf_counter() - started:.0f} s; Dice {subtomogram_dice:.3f} on held-out "
        f"subtomograms); tomograms {shape}, noise sd 0.7, seeds {QUALITY_SEEDS}; Dice mean +- sd"
    )
    paths: dict[str, dict[str, Any]] = {
        "box, window": {"blend": "gaussian", "normalise": "window"},
        "large, local (default)": {},
        "large, tomogram": {"normalise": "tomogram"},
        "large, window": {"normalise": "window"},
        **({"large, local, int8": {"int8": True}} if int8_here() else {}),
    }
    scores: dict[tuple[str, str], list[float]] = {}
    for seed in QUALITY_SEEDS[:1] if args.quick else QUALITY_SEEDS:
        rng = np.random.default_rng(seed)
        truth = _balls(shape, max(int(np.prod(shape) / 3_000), 2), rng, (2.5, 4.5))
        clean = truth + rng.normal(0.0, 0.7, shape)
        for case, observe in _backgrounds(shape).items():
            volume = observe(clean).astype(np.float32)
            for name, changes in paths.items():
                mask = plain.with_settings(batch_size=8, **changes).predict_volume(volume) > 0.5
                scores.setdefault((case, name), []).append(_dice(mask, truth))
    print("  " + f"{'background':16s}" + "".join(f"{name:>24s}" for name in paths))
    for case in _backgrounds(shape):
        cells = [np.array(scores[(case, name)]) for name in paths]
        print("  " + f"{case:16s}" + "".join(f"{c.mean():>15.3f} +- {c.std():.3f}" for c in cells), flush=True)


def int8_here(device: str = "cpu") -> bool:
    """Whether ``predict --int8`` runs here (a CPU with oneDNN's int8 convolution)."""
    from voxuda_cli.models import int8

    return device == "cpu" and int8.supported()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small tomogram and network: checks the script runs")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="tomogram D H W [default: 128 256 256]")
    parser.add_argument("--widths", default=None, help="VoxResNet widths, comma-separated [default: 8,32; quick: 8]")
    parser.add_argument("--memory-shape", type=int, nargs=3, default=None,
                        help="tomogram of the memory check (large path, width 8) [default: 256 512 512]")  # fmt: skip
    parser.add_argument("--memory", type=float, default=0.5, help="predict --memory (GiB)")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every path (one run each); each path's fastest is reported")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="where every path runs: cpu or cuda[:N] (MONAI: cpu only)")
    parser.add_argument("--amp", action="store_true", help="predict --amp (bf16 where the device has it)")
    parser.add_argument("--train-steps", type=int, default=60, help="steps of the normalisation experiment's network")
    parser.add_argument("--skip-monai", action="store_true", help="without the MONAI row")
    parser.add_argument("--skip-normalisation", action="store_true", help="only the speed and memory part")
    parser.add_argument("--skip-speed", action="store_true", help="only the normalisation experiment")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory run (memory-shape)")
    parser.add_argument("--before", default=BEFORE_ISSUE_24,
                        help="the revision whose predict is the `before` row (git; '' for none) [default: the last "
                        "before issue 24]")  # fmt: skip
    parser.add_argument("--worker", choices=(*PATHS, "monai", "before"), help=argparse.SUPPRESS)
    parser.add_argument("--before-tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tomogram", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        workers = {"monai": worker_monai, "before": worker_before}
        result = workers.get(args.worker, worker_voxuda)(args)
        print(json.dumps(result))
        return 0
    shape = tuple(args.shape or ([48, 96, 96] if args.quick else [128, 256, 256]))
    memory_shape = tuple(args.memory_shape or ([64, 128, 128] if args.quick else [256, 512, 512]))
    widths = [int(w) for w in (args.widths or ("8" if args.quick else "8,32")).split(",")]
    if not args.skip_speed:
        with tempfile.TemporaryDirectory(prefix="bench_predict_") as folder:
            monai = not args.skip_monai and args.device == "cpu"  # the MONAI worker is written for the CPU
            names = (
                ["before", "box", "large"] + (["int8"] if int8_here(args.device) else []) + (["monai"] if monai else [])
            )
            tree = before_tree(args.before, Path(folder)) if args.before and not args.memory_only else None
            for width in [] if args.memory_only else widths:
                speed_and_memory(args, Path(folder), shape, width, names, tree)
        with tempfile.TemporaryDirectory(prefix="bench_predict_") as folder:
            paths = ["large"] + (["int8"] if int8_here(args.device) else [])
            results = speed_and_memory(args, Path(folder), memory_shape, 8, paths)
            size_mb = float(np.prod(memory_shape)) * 4 / 2**20
            for name, result in results.items():
                ratio = result["peak_mb"] / size_mb
                verdict = "met" if ratio <= 2 else "NOT met"
                print(f"  {name}: peak memory {ratio:.2f}x the tomogram's float32 size (target <= 2): {verdict}")
    if not args.skip_normalisation:
        normalisation_experiment(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
