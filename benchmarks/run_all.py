"""`make bench`: run every benchmark script in turn (each prints its own figures and ratios).

Pass --quick to run each in its small configuration (a check that they run, not a measurement).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = (
    "bench_filters.py",
    "bench_simulate.py",
    "bench_extract.py",
    "bench_train.py",
    "bench_predict.py",
    "bench_uda.py",
)


def main() -> int:
    extra = sys.argv[1:]
    failures = []
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n=== {name} {' '.join(extra)} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *extra])
        print(f"=== {name}: exit {code}, {time.perf_counter() - start:.0f} s ===", flush=True)
        if code != 0:
            failures.append(name)
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
