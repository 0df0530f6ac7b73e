"""Wall time of ``propagate sweep`` serially, on local processes and on a local Dask cluster.

The issue's sweep: fan-in 2..64, depth 10, 30, 100, five schemes, 1000 networks per cell (one
input each), every cell computed from scratch (a fresh checkpoint folder per run). Prints the
wall time of each executor, the speed-up over one worker and the summed per-cell compute time
(cells run single-threaded, so wall x workers / cell time is the parallel efficiency).

    python benchmarks/bench_sweep.py             # the issue's case (~4 minutes on 2 cores)
    python benchmarks/bench_sweep.py --quick     # smaller, for a smoke check
    python benchmarks/bench_sweep.py --no-dask   # skip the Dask cluster
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from propagate.sweep import run_sweep

SCHEMES = "he-normal,he-uniform,orthogonal,gauss,torch"


def one(rows_ref: list | None, **kwargs):
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as out:
        start = time.perf_counter()
        result = run_sweep(out=out, progress=False, **kwargs)
        wall = time.perf_counter() - start
    rows = result.to_dict()["rows"]
    same = "" if rows_ref is None else ("  identical rows" if rows == rows_ref else "  ROWS DIFFER")
    return wall, result.summary["cell_seconds"], rows, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fan-in 2..16, 200 trials")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask cluster")
    parser.add_argument("--trials", type=int, default=None)
    args = parser.parse_args()
    grid = {
        "fan_ins": "2,4,8,16" if args.quick else "2,4,8,16,32,64",
        "depths": "10,30,100",
        "schemes": SCHEMES,
        "trials": args.trials or (200 if args.quick else 1000),
    }
    cores = os.cpu_count() or 1
    print(
        f"sweep: fan-in {grid['fan_ins']}, depth {grid['depths']}, {SCHEMES}, "
        f"{grid['trials']} networks x 1 input per cell; {cores} cores"
    )
    results = []
    wall1, cpu1, ref, _ = one(None, workers=1, **grid)
    results.append(("serial (1 worker)", wall1, cpu1, ""))
    for workers in sorted({2, cores} - {1}):
        wall, cpu, _, same = one(ref, workers=workers, **grid)
        results.append((f"processes ({workers} workers)", wall, cpu, same))
    if not args.no_dask:
        try:
            from distributed import LocalCluster
        except ImportError:
            print("dask: distributed is not installed (extra 'distributed'); skipped")
        else:
            n = max(2, min(cores, 2))
            with LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster:
                wall, cpu, _, same = one(ref, scheduler=cluster.scheduler_address, **grid)
            results.append((f"dask LocalCluster ({n} processes)", wall, cpu, same))
    print(f"{'executor':34s} {'wall s':>8s} {'speed-up':>9s} {'cell s':>8s}")
    for label, wall, cpu, same in results:
        print(f"{label:34s} {wall:8.1f} {wall1 / wall:9.2f} {cpu:8.1f}{same}")


if __name__ == "__main__":
    main()
