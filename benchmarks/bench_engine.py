"""Engine speed against the bare np.matmul floor on the same products, measured in one run.

The floor is what any NumPy implementation must pay: per layer one forward product
(trials, batch, n_in) @ (trials, n_in, n_out) and one backward product, with numpy's default
BLAS threading. The engine adds weight sampling, statistics, masks and the log-domain scale.
Both engine paths are timed: NumPy passes (``--kernels numpy``) and the fused numba passes
(``--kernels numba``, the ``fast`` extra); numba's one-off start-up is timed on its own.
The floor and the engines take turns, round after round, so a slow spell of this shared
machine (we have seen 30 % swings within a minute) hits them alike; each gets the same number
of runs, and both the ratio of the best times and the median ratio within a round are printed.

    python benchmarks/bench_engine.py            # the issue's cases
    python benchmarks/bench_engine.py --quick    # smaller, for a smoke check
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from propagate.activations import make_activation
from propagate.kernels import numba_installed
from propagate.network import EngineConfig, Network, simulate
from propagate.schemes import resolve_scheme


def matmul_floor(trials, batch, width, depth, dtype):
    """A callable doing the floor's products once: per layer forward and backward."""
    rng = np.random.default_rng(0)
    h = (rng.standard_normal((trials, batch, width)) * 0.1).astype(dtype)
    # orthogonal weights: the norm is preserved, so repeated passes never overflow
    w = np.linalg.qr(rng.standard_normal((trials, width, width)))[0].astype(dtype)
    out = np.empty_like(h)

    def passes():
        for _ in range(depth):
            np.matmul(h, w.transpose(0, 2, 1), out=out)  # forward
            np.matmul(out, w, out=h)  # backward

    return passes


def engine(trials, batch, width, depth, dtype, scheme="he-normal", kernels="auto"):
    """A callable running the engine once on the same shapes."""
    act = make_activation("relu")
    net = Network(
        widths=(width,) * (depth + 1), activation=act, init=resolve_scheme(scheme, activation=act)
    )
    cfg = EngineConfig(batch=batch, trials=trials, seed=0, dtype=dtype, kernels=kernels)
    return lambda: simulate(net, cfg)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(contestants: dict, rounds: int) -> dict[str, list[float]]:
    """Wall times of each callable, taken in turn round after round (after one warm-up each):
    a slow spell of the machine then hits every contestant alike."""
    for fn in contestants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(rounds):
        for name, fn in contestants.items():
            times[name].append(timed(fn))
    return times


def numba_startup():
    """Wall time of importing numba and loading the fused kernels, in a fresh interpreter."""
    code = (
        "import time, numpy as np; t = time.perf_counter();"
        "from propagate.kernels import choose;"
        "choose('numba', 1, np.float32, True);"
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main_job_wall():
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "propagate",
            "run",
            "--depth",
            "30",
            "--fan-in",
            "64",
            "--scheme",
            "gauss",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t


def peak_rss_case():
    code = (
        "import numpy as np;"
        "from propagate.activations import make_activation;"
        "from propagate.network import EngineConfig, Network, simulate;"
        "from propagate.schemes import resolve_scheme;"
        "a=make_activation('relu');"
        "s=resolve_scheme('he-normal', activation=a);"
        "n=Network(widths=(256,)*1001, activation=a, init=s);"
        "simulate(n, EngineConfig(batch=256, trials=8, seed=0, dtype=np.float32));"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) * 1024, time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    args = parser.parse_args()
    trials = 40 if args.quick else 200
    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"warning: load average {load:.2f} before starting: other processes slow the "
            "two-thread BLAS floor most, so ratios are unreliable (even above 100 %)"
        )
    print(
        f"speed vs floor = best floor time / best engine time over {args.rounds} interleaved "
        "rounds; paired = median over rounds of floor / engine"
    )
    print(f"{'case':56s} {'floor s':>8s} {'engine s':>9s} {'speed vs floor':>15s} {'paired':>7s}")
    kernels = ("numpy", "numba") if numba_installed() else ("numpy",)
    for dtype in (np.float32, np.float64):
        name = f"depth 30 width 64 batch 1024 {trials} trials {np.dtype(dtype).name}"
        contestants = {"floor": matmul_floor(trials, 1024, 64, 30, dtype)}
        for k in kernels:
            contestants[k] = engine(trials, 1024, 64, 30, dtype, kernels=k)
        times = interleaved(contestants, args.rounds)
        floor = min(times["floor"])
        for k in kernels:
            eng = min(times[k])
            paired = np.median(np.array(times["floor"]) / np.array(times[k]))
            label = f"{name}, {k}"
            print(
                f"{label:56s} {floor:8.3f} {eng:9.3f} {100 * floor / eng:14.0f}% "
                f"{100 * paired:6.0f}%"
            )
        del contestants, times
    if numba_installed():
        print(f"{'numba start-up (import + cached kernels)':56s} {'':8s} {numba_startup():9.3f}")
    narrow = min(interleaved({"narrow": engine(1000, 64, 8, 100, np.float32)}, 3)["narrow"])
    print(f"{'depth 100 width 8 batch 64 1000 trials':56s} {'':8s} {narrow:9.3f}   (target < 1 s)")
    walls = sorted(main_job_wall() for _ in range(3))
    print(
        f"{'main job wall (interpreter start included), best of 3':56s} {'':8s} "
        f"{walls[0]:9.3f}   (target < 2 s; worst {walls[-1]:.3f})"
    )
    if not args.quick:
        rss, secs = peak_rss_case()
        print(
            f"{'depth 1000 width 256 batch 256 8 trials':56s} peak RSS {rss / 2**20:.0f} MiB "
            f"in {secs:.1f} s (target < 1024 MiB)"
        )


if __name__ == "__main__":
    main()
