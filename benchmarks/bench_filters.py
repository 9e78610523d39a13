"""Filters benchmark: IBF/BF throughput vs numpy and SimpleITK, whole-tomogram peak memory, denoising quality.

1. Throughput (CPU) on a 128x256x256 volume: voxuda IBF and BF (the fused numba kernel and, in the
   same run, the torch path it replaced) next to a plain numpy IBF (27 shifted
   views) and SimpleITK's 3D bilateral filter at the same 3x3x3 window, all run here, best of a few
   runs (other jobs share this machine), with ratios.
2. Peak memory of `voxuda ibf-denoise` on a 512x512x256 float32 tomogram (256 MiB), in a child process
   (its own VmHWM), next to a child that only imports the same modules.
3. Denoising quality where the clean density is known: the simulator's subtomograms (simulate-prep's
   engine, CTF included) and a synthetic phantom (blobs + white noise). Correlation with the clean
   density, and Dice of the thresholded result with the true mask (threshold: the mask's voxel count,
   so every method is judged at the same volume), for none / Gaussian / NGM / BF / IBF.

Usage: python benchmarks/bench_filters.py [--quick] [--part throughput|memory|quality]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch

from voxuda_cli.filters import bilateral_filter, fused_bilateral, improved_bilateral_filter, ngm_denoise
from voxuda_cli.filters.bilateral import DEFAULT_SIGMA_D, DEFAULT_SIGMA_R

# ITK's bilateral kernel radius is ceil(DomainMu * domainSigma / spacing), DomainMu = 2.5 (not exposed
# in SimpleITK): domainSigma 0.4 at unit spacing gives radius 1, the 3x3x3 window.
SITK_DOMAIN_SIGMA_3X3X3 = 0.4


def best_time(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of the fastest of ``repeats`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def numpy_ibf(x: np.ndarray, sigma_d: float, sigma_r: float) -> np.ndarray:
    """The plain way: Sobel by scipy, then 27 shifted views of padded arrays, float32 throughout."""
    gradient = np.stack([ndi.sobel(x, axis=a, mode="nearest") / np.float32(32) for a in range(3)])
    values = np.pad(x, 1, mode="edge")
    padded = np.pad(gradient, ((0, 0), (1, 1), (1, 1), (1, 1)), mode="edge")
    num = np.zeros_like(x)
    den = np.zeros_like(x)
    for offset in itertools.product((-1, 0, 1), repeat=3):
        window = tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, x.shape))
        r2 = np.square(padded[(slice(None), *window)] - gradient).sum(axis=0)
        spatial = np.float32(np.exp(-sum(o * o for o in offset) / (2 * sigma_d**2)))
        weight = spatial * np.exp(-r2 / np.float32(2 * sigma_r**2))
        num += weight * values[window]
        den += weight
    return num / den


def sitk_bilateral(x: np.ndarray, sigma_r: float) -> np.ndarray:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(x)
    return sitk.GetArrayFromImage(sitk.Bilateral(image, SITK_DOMAIN_SIGMA_3X3X3, sigma_r))


def throughput(shape: tuple[int, int, int], repeats: int) -> None:
    import SimpleITK as sitk

    print(f"\n## Throughput on {'x'.join(map(str, shape))} float32, CPU, best of {repeats}")
    voxels = int(np.prod(shape))
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    tensor = torch.from_numpy(x)
    improved_bilateral_filter(tensor[:4])  # warm-up (and numba's compile, the first time)
    bilateral_filter(tensor[:4])
    small = x[:16, :48, :48]
    ours_small = improved_bilateral_filter(torch.from_numpy(small)).numpy()
    print(f"check: numpy IBF vs voxuda IBF max |diff| {np.abs(numpy_ibf(small, 120.0, 1.2) - ours_small).max():.2e}")
    itk_small = sitk_bilateral(small, 1.2)
    ours_bf = bilateral_filter(torch.from_numpy(small), SITK_DOMAIN_SIGMA_3X3X3, 1.2).numpy()
    print(
        "check: SimpleITK Bilateral(domainSigma=0.4) vs voxuda BF(sigma_d=0.4), same 3x3x3 window: "
        f"max |diff| {np.abs(itk_small - ours_bf).max():.2e} (ITK tabulates the range Gaussian)"
    )
    ours_torch = improved_bilateral_filter(torch.from_numpy(small), kernel="torch").numpy()
    print(f"check: voxuda IBF fused kernel vs torch path max |diff| {np.abs(ours_small - ours_torch).max():.2e}")
    fused = "fused" if fused_bilateral.AVAILABLE else "torch"  # numba missing: both rows run the torch path
    rows = [
        (f"voxuda IBF ({fused})", best_time(lambda: improved_bilateral_filter(tensor, kernel=fused), repeats)),
        ("voxuda IBF (torch path)", best_time(lambda: improved_bilateral_filter(tensor, kernel="torch"), repeats)),
        (f"voxuda BF ({fused})", best_time(lambda: bilateral_filter(tensor, kernel=fused), repeats)),
        ("voxuda BF (torch path)", best_time(lambda: bilateral_filter(tensor, kernel="torch"), repeats)),
        ("numpy IBF (27 views)", best_time(lambda: numpy_ibf(x, DEFAULT_SIGMA_D, DEFAULT_SIGMA_R), 1)),
        ("SimpleITK Bilateral 3x3x3", best_time(lambda: sitk_bilateral(x, DEFAULT_SIGMA_R), repeats)),
    ]
    threads = (
        f"torch threads {torch.get_num_threads()}, ITK threads {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}"
    )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"({threads}, {os.cpu_count()} CPUs; load average {load}: other jobs slow every figure alike)")
    print(f"{'filter':28s} {'seconds':>8s} {'Mvoxel/s':>9s} {'Mvoxel per CPU-s':>17s}")
    for name, (wall, cpu) in rows:
        print(f"{name:28s} {wall:8.3f} {voxels / wall / 1e6:9.1f} {voxels / cpu / 1e6:17.1f}")
    ibf, ibf_torch, bf, bf_torch, numpy_time, itk = (row[1][0] for row in rows)
    print(f"ratio IBF fused vs IBF torch path: {ibf_torch / ibf:6.1f}x (same run)")
    print(f"ratio BF  fused vs BF  torch path: {bf_torch / bf:6.1f}x")
    print(f"ratio IBF vs numpy IBF:            {numpy_time / ibf:6.1f}x")
    print(f"ratio IBF vs SimpleITK (BF):       {itk / ibf:6.1f}x (torch path: {itk / ibf_torch:.1f}x)")
    print(f"ratio BF  vs SimpleITK (BF):       {itk / bf:6.1f}x")
    print(f"target: IBF >= 2x the torch path -> {'met' if ibf_torch / ibf >= 2 else 'NOT met'}; ", end="")
    print(f">= 4x SimpleITK -> {'met' if itk / ibf >= 4 else 'NOT met'}")


# The child reports its own high-water mark (VmHWM: since its exec, unlike ru_maxrss, which a child
# inherits from a large parent at fork/exec).
_CHILD = """
import sys
argv = {argv!r}
try:
    if argv:
        sys.argv = ["voxuda", *argv]
        from voxuda_cli.cli.app import main
        main()
    else:
        import numpy, torch, h5py, mrcfile, typer, rich
        import voxuda_cli.cli.app, voxuda_cli.filters.apply
        torch.ones(8).exp()
finally:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            sys.stderr.write("PEAK_KB " + line.split()[1] + chr(10))
"""


def _child_peak_mib(argv: list[str]) -> tuple[float, float]:
    """Run the CLI (or, with no arguments, only its imports) in a child: its peak RSS (MiB) and wall seconds."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(argv=argv)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - start
    peaks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("PEAK_KB")]
    if done.returncode != 0 or not peaks:
        raise RuntimeError(f"voxuda {' '.join(argv)} failed: {done.stderr[-2000:]}")
    return int(peaks[-1]) / 1024, seconds


def peak_memory(shape: tuple[int, int, int], method: str = "ibf") -> None:
    from voxuda_cli.io.mrc import create_mrc_memmap
    from voxuda_cli.io.volume import Volume

    size_mib = int(np.prod(shape)) * 4 / 2**20
    print(f"\n## Peak memory: voxuda ibf-denoise --denoiser {method} on a {'x'.join(map(str, shape))} tomogram")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "tomo.mrc", Path(folder) / "tomo_ibf.mrc"
        rng = np.random.default_rng(0)
        with create_mrc_memmap(source, shape, like=Volume(np.zeros((1, 1, 1), np.float32), voxel_size=10.0)) as data:
            for start in range(0, shape[0], 16):
                data[start : start + 16] = rng.normal(size=data[start : start + 16].shape)
        baseline, _ = _child_peak_mib([])
        peak, seconds = _child_peak_mib(
            ["ibf-denoise", str(source), "-o", str(target), "--denoiser", method, "--device", "cpu"]
        )
    print(f"volume {size_mib:.0f} MiB; child peak RSS {peak:.0f} MiB = {peak / size_mib:.2f}x the volume")
    print(
        f"(a child that only imports the same modules: {baseline:.0f} MiB; "
        f"above it: {(peak - baseline) / size_mib:.2f}x)"
    )
    print(
        f"whole command {seconds:.1f} s = {np.prod(shape) / seconds / 1e6:.1f} Mvoxel/s including reading and writing"
    )
    print(f"target: peak under 4x the volume -> {'met' if peak < 4 * size_mib else 'NOT met'}")


def _denoisers() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    def torch_filter(function: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: function(torch.from_numpy(x)).numpy()

    return {
        "none": lambda x: x,
        "Gaussian (sigma 1 voxel)": lambda x: np.stack([ndi.gaussian_filter(v, 1.0, mode="nearest") for v in x]),
        "NGM (keep_rate 0.244)": torch_filter(ngm_denoise),
        "BF (120, 1.2)": torch_filter(bilateral_filter),
        "IBF (120, 1.2)": torch_filter(improved_bilateral_filter),
    }


def _scores(denoised: np.ndarray, clean: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    correlations, dices = [], []
    for image, density, mask in zip(denoised, clean, masks):
        correlations.append(float(np.corrcoef(image.ravel(), density.ravel())[0, 1]))
        count = int(mask.sum())
        top = np.zeros(image.size, dtype=bool)
        top[np.argsort(image.ravel())[-count:]] = True
        dices.append(2 * float((top & mask.ravel().astype(bool)).sum()) / (2 * count))
    return float(np.mean(correlations)), float(np.mean(dices))


def _report(title: str, images: np.ndarray, clean: np.ndarray, masks: np.ndarray) -> None:
    print(f"\n{title}")
    print(f"{'denoiser':26s} {'corr(clean)':>11s} {'Dice(mask)':>10s}")
    zscored = (images - images.mean(axis=(1, 2, 3), keepdims=True)) / images.std(axis=(1, 2, 3), keepdims=True)
    for name, denoise in _denoisers().items():
        correlation, dice = _scores(denoise(zscored.astype(np.float32)), clean, masks)
        print(f"{name:26s} {correlation:11.3f} {dice:10.3f}")


def phantom(box: int, n: int, snr: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blobs (balls of radius 2-6 voxels, edges softened by a 1-voxel Gaussian) plus white noise at ``snr``."""
    rng = np.random.default_rng(seed)
    grid = np.indices((box,) * 3).astype(np.float32)
    masks, clean = [], []
    for _ in range(n):
        mask = np.zeros((box,) * 3, dtype=bool)
        for _ in range(6):
            centre = rng.uniform(6, box - 6, size=3)
            radius = rng.uniform(2, 6)
            mask |= np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre))) <= radius
        masks.append(mask.astype(np.uint8))
        clean.append(ndi.gaussian_filter(mask.astype(np.float32), 1.0))
    clean_array = np.stack(clean)
    noise_std = np.sqrt(clean_array.var(axis=(1, 2, 3), keepdims=True) / snr)
    images = clean_array + rng.normal(size=clean_array.shape).astype(np.float32) * noise_std
    return images.astype(np.float32), clean_array, np.stack(masks)


def quality(quick: bool) -> None:
    print("\n## Denoising quality (mean over samples; inputs z-scored per volume, as the filters expect)")
    for snr in (1.0, 0.1):
        images, clean, masks = phantom(32 if quick else 64, 2 if quick else 6, snr, seed=1)
        _report(f"synthetic phantom, SNR {snr} (white noise, no CTF), {len(images)} samples", images, clean, masks)
    try:
        from voxuda_cli.simulate.presets import SimulationSettings
        from voxuda_cli.simulate.simulator import simulate_in_memory
    except ImportError as exc:
        print(f"\n(simulator not available: {exc}; synthetic phantom only)")
        return
    for snr in (0.05, 0.5):
        dataset = simulate_in_memory(SimulationSettings(n_per_structure=1 if quick else 4, snr=(snr,), seed=0))
        title = f"simulate-prep engine, SNR {snr} (CTF, missing wedge, WBP), {len(dataset)} samples of 32^3"
        _report(title, dataset.images, dataset.density, dataset.masks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the benchmark runs")
    parser.add_argument("--part", choices=("all", "throughput", "memory", "quality"), default="all")
    args = parser.parse_args()
    print(
        f"# bench_filters {'(quick)' if args.quick else ''}: {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}"
    )
    if args.part in ("all", "throughput"):
        throughput((32, 64, 64) if args.quick else (128, 256, 256), 2 if args.quick else 5)
    if args.part in ("all", "memory"):
        peak_memory((64, 128, 128) if args.quick else (256, 512, 512))
    if args.part in ("all", "quality"):
        quality(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
