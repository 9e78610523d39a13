"""Extract throughput and peak memory: a 512x512x256 tomogram at 13.5 A, 2,000 picks, boxes of 32^3 at 10 A.

The tomogram (256 MB of float32) is written first; the extraction runs in its own subprocess
(``voxuda_cli.extract`` as the CLI calls it: header read, picks matched, boxes Fourier-resampled
from 13.5 to 10 A and streamed into HDF5). Peak memory is ru_maxrss of that subprocess minus its
ru_maxrss after the imports and one warm-up batch; the figure to compare it with is the tomogram's size. ``--native``
extracts at the tomogram's own voxel size instead (plain crops, no resampling).

    python benchmarks/bench_extract.py                # the measurement (a minute or two on 2 cores)
    python benchmarks/bench_extract.py --quick        # a 128x128x64 tomogram, 100 picks: a check that it runs
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def make_inputs(folder: Path, shape: tuple[int, int, int], picks: int, seed: int = 0) -> tuple[Path, Path]:
    """A noise tomogram written slab by slab (so this process stays small) and a CSV of random picks."""
    from voxuda_cli.io.mrc import create_mrc_memmap
    from voxuda_cli.io.volume import Volume

    rng = np.random.default_rng(seed)
    tomogram = folder / "TS_01.mrc"
    like = Volume(np.empty((0, 0, 0), np.float32), voxel_size=13.5)
    with create_mrc_memmap(tomogram, shape, like) as data:
        for z in range(0, shape[0], 16):
            data[z : z + 16] = rng.normal(size=(min(16, shape[0] - z), *shape[1:])).astype(np.float32)
    zyx = rng.uniform(0, 1, (picks, 3)) * (np.array(shape) - 1)
    coords = folder / "TS_01.csv"
    np.savetxt(coords, zyx[:, ::-1], delimiter=",", header="x,y,z", comments="", fmt="%.2f")
    return tomogram, coords


def worker(args: argparse.Namespace) -> dict[str, float]:
    import pandas  # noqa: F401  (imports and one warm-up batch before the baseline: they are not the extraction's)

    from voxuda_cli.extract import BATCH, ExtractSettings, plan_extraction, write_subtomograms
    from voxuda_cli.resample import fourier_resize

    fourier_resize(np.zeros((BATCH, 24, 24, 24), np.float32), (32, 32, 32))
    baseline = _peak_mb()
    started = time.perf_counter()
    settings = ExtractSettings(box=32, voxel_size=None if args.native else 10.0)
    plan = plan_extraction([args.tomogram], [args.coords], settings)
    summary = write_subtomograms(args.out, plan, "{}")
    seconds = time.perf_counter() - started
    return {
        "subtomograms": summary["subtomograms"],
        "seconds": seconds,
        "per_second": summary["subtomograms"] / seconds,
        "peak_mb": _peak_mb() - baseline,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small tomogram, few picks: a check that it runs")
    parser.add_argument("--native", action="store_true", help="extract at the tomogram's voxel size (no resampling)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tomogram", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--coords", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    shape, picks = ((64, 128, 128), 100) if args.quick else ((256, 512, 512), 2000)
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as raw:
        folder = Path(raw)
        tomogram, coords = make_inputs(folder, shape, picks)
        command = [sys.executable, __file__, "--worker", "--tomogram", str(tomogram), "--coords", str(coords)]
        command += ["--out", str(folder / "sub.h5")] + (["--native"] if args.native else [])
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            print(completed.stderr, file=sys.stderr)
            return 1
        result = json.loads(completed.stdout.strip().splitlines()[-1])
    size_mb = np.prod(shape) * 4 / 2**20
    what = "native 13.5 A" if args.native else "13.5 -> 10 A"
    print(
        f"extract {'x'.join(str(n) for n in shape[::-1])} (z={shape[0]}) tomogram, {picks} picks, 32^3 {what}: "
        f"{result['per_second']:.0f} subtomograms/s ({result['seconds']:.1f} s), "
        f"peak memory {result['peak_mb']:.0f} MB = {result['peak_mb'] / size_mb:.2f}x the tomogram ({size_mb:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
