"""Fourier resampling: boxes (torch-fourier-rescale against a numpy complex FFT), and whole tomograms streamed.

Boxes: a Gaussian blob, 40^3 at 13.5 A <-> 54^3 at 10 A, resampled by ``resample.fourier_resample``
(torch-fourier-rescale) and by the complex-FFT numpy resampler voxuda had before; error against the
analytic blob and milliseconds per box (one thread).

Whole tomograms (what predict does for a tomogram at another voxel size):
A 512x512x256 noise tomogram at 13.5 A is written by a first subprocess, and a second one resamples
it to 10 A (691x691x346, 630 MB) with ``resample.resample_to_map``, reading and writing memory maps.
Peak memory is the resident set sampled every 50 ms, minus the resident set after the imports.

    python benchmarks/bench_resample.py            # the measurement (about half a minute on 2 cores)
    python benchmarks/bench_resample.py --quick    # 128x128x64: a check that it runs
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def make(folder: Path, shape: tuple[int, int, int]) -> None:
    from voxuda_cli.io.memory import release_rows
    from voxuda_cli.io.mrc import create_mrc_memmap
    from voxuda_cli.io.volume import Volume

    rng = np.random.default_rng(0)
    like = Volume(np.empty((0, 0, 0), np.float32), voxel_size=13.5)
    with create_mrc_memmap(folder / "t.mrc", shape, like, after_chunk=release_rows) as data:
        for z in range(0, shape[0], 16):
            data[z : z + 16] = rng.normal(size=(min(16, shape[0] - z), *shape[1:])).astype(np.float32)
            release_rows(data, z, z + 16)


def measure(folder: Path) -> str:
    from voxuda_cli.io.memory import release_rows
    from voxuda_cli.io.mrc import create_mrc_memmap, read_mrc
    from voxuda_cli.io.volume import Volume
    from voxuda_cli.resample import fourier_resample, resample_to_map, resampled_shape

    fourier_resample(np.zeros((8, 8, 8), np.float32), (10, 10, 10))  # imports and a first FFT
    base, peak = _rss_mb(), {"mb": 0.0}

    def watch() -> None:
        while True:
            peak["mb"] = max(peak["mb"], _rss_mb())
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    source = read_mrc(folder / "t.mrc", mmap=True, check=False)
    shape = resampled_shape(source.shape, 13.5, 10.0)
    started = time.perf_counter()
    with create_mrc_memmap(folder / "o.mrc", shape, Volume(source.data[:0], 10.0), after_chunk=release_rows) as out:
        resample_to_map(source.data, out, folder)
    seconds = time.perf_counter() - started
    size_in, size_out = np.prod(source.shape) * 4 / 2**20, np.prod(shape) * 4 / 2**20
    dims = "x".join(str(n) for n in source.shape[::-1])
    return (
        f"resample {dims} tomogram 13.5 -> 10 A ({'x'.join(str(n) for n in shape[::-1])}): {seconds:.1f} s, "
        f"peak memory {peak['mb'] - base:.0f} MB above imports (input {size_in:.0f} MB, output {size_out:.0f} MB)"
    )


def _numpy_resample(data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The complex-FFT resampler voxuda had before torch-fourier-rescale (the comparison)."""
    spectrum = np.fft.fftshift(np.fft.fftn(data))
    out = np.zeros(shape, dtype=np.complex128)
    source, target = [], []
    for old, new in zip(data.shape, shape):
        keep = min(old, new)
        source.append(slice(old // 2 - keep // 2, old // 2 - keep // 2 + keep))
        target.append(slice(new // 2 - keep // 2, new // 2 - keep // 2 + keep))
    out[tuple(target)] = spectrum[tuple(source)]
    scale = np.prod(shape) / np.prod(data.shape)
    return (np.real(np.fft.ifftn(np.fft.ifftshift(out))) * scale).astype(np.float32)


def compare_boxes(repeats: int = 50) -> None:
    import torch

    from voxuda_cli.resample import fourier_resample

    torch.set_num_threads(1)

    def blob(n: int, spacing: float) -> np.ndarray:
        axis = (np.arange(n) - n // 2) * spacing
        z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
        return np.exp(-(z**2 + y**2 + x**2) / (2 * 20.0**2)).astype(np.float32)

    for n, spacing, m, target in ((40, 13.5, 54, 10.0), (54, 10.0, 40, 13.5)):
        source, expected = blob(n, spacing), blob(m, target)
        for name, function in (("torch-fourier-rescale", fourier_resample), ("numpy complex FFT", _numpy_resample)):
            error = float(np.abs(function(source, (m,) * 3) - expected).max())
            started = time.perf_counter()
            for _ in range(repeats):
                function(source, (m,) * 3)
            milliseconds = (time.perf_counter() - started) / repeats * 1e3
            print(f"box {n}^3 -> {m}^3 {name:22s} max error {error:.1e}  {milliseconds:.1f} ms per box")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small tomogram: a check that it runs")
    parser.add_argument("--step", choices=("make", "measure"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (64, 128, 128) if args.quick else (256, 512, 512)
    if args.step == "make":
        make(args.folder, shape)
        return 0
    if args.step == "measure":
        print(measure(args.folder))
        return 0
    compare_boxes(5 if args.quick else 50)
    with tempfile.TemporaryDirectory(prefix="bench-resample-") as raw:
        for step in ("make", "measure"):
            extra = ["--quick"] if args.quick else []
            command = [sys.executable, __file__, "--step", step, "--folder", raw, *extra]
            if subprocess.call(command) != 0:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
