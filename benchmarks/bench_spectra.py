"""Speed of ``propagate spectra`` against the issue's targets, each case in a fresh process.

Targets (issue 3, section 6): spectra for depth 30, width 512, 16 trials in under 10 s; Jacobian
spectra for depth 1000, width 128 without overflow or a dense product; every figure under 2 s.
Each case runs in its own interpreter so the peak RSS is that case's alone; times exclude the
interpreter start but include imports done by the library on first use.

    python benchmarks/bench_spectra.py            # the issue's cases
    python benchmarks/bench_spectra.py --quick    # smaller, for a smoke check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CASE = r"""
import json, math, os, sys, time
import numpy as np
from propagate.api import build_network
from propagate.spectra import correlation_map, jacobian_spectrum, spectra, weight_spectra

args = json.loads(sys.argv[1])
kind = args.pop("kind")
out = {}
t = time.perf_counter()
if kind == "spectra":
    result = spectra(**args)
    out["seconds"] = time.perf_counter() - t
    jac = result.extra["jacobian"]
    data = result.to_dict()
    from propagate.plotting.spectra_plots import (
        correlation_figure, jacobian_figure, weights_figure)
    from propagate.plotting import atomic_savefig
    folder = os.environ["BENCH_FIG_DIR"]
    for name, draw in (("weights", weights_figure), ("jacobian", jacobian_figure),
                       ("correlation", correlation_figure)):
        t = time.perf_counter()
        atomic_savefig(draw(data), os.path.join(folder, f"{kind}_{name}.png"))
        out[f"figure_{name}_s"] = time.perf_counter() - t
else:
    net = build_network(**args.pop("net"))
    fn = {"weights": weight_spectra, "jacobian": jacobian_spectrum,
          "correlation": correlation_map}[kind]
    res = fn(net, **args)
    out["seconds"] = time.perf_counter() - t
    jac = res if kind == "jacobian" else None
if jac is not None:
    out.update({k: jac[k] for k in ("log10_mean_sq_sv", "log10_mean_sq_sv_pred",
                                     "log10_sv_max", "log10_sv_min", "zero_fraction")})
    out["finite"] = all(math.isfinite(jac[k]) for k in ("log10_mean_sq_sv", "log10_sv_max",
                                                        "log10_sv_min"))
# VmHWM, not ru_maxrss (which Linux carries over exec from the forking parent)
with open("/proc/self/status") as fh:
    hwm = [line.split()[1] for line in fh if line.startswith("VmHWM")][0]
out["peak_rss_mib"] = int(hwm) / 1024
print(json.dumps(out))
"""


def run_case(spec: dict, fig_dir: str) -> dict:
    env = dict(os.environ, BENCH_FIG_DIR=fig_dir, MPLBACKEND="Agg")
    done = subprocess.run(
        [sys.executable, "-c", CASE, json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    width, deep_width, deep = (128, 64, 200) if args.quick else (512, 128, 1000)
    net30 = {"depth": 30, "fan_in": width}
    net_deep = {"depth": deep, "fan_in": deep_width, "scheme": "gauss"}
    cases = [
        (
            f"spectra depth 30, width {width}, 16 trials (target < 10 s)",
            {"kind": "spectra", **net30, "trials": 16},
        ),
        (
            "  of which: weight spectra alone",
            {"kind": "weights", "net": net30, "trials": 16, "seed": 0},
        ),
        (
            "  of which: Jacobian spectra alone (2 inputs)",
            {"kind": "jacobian", "net": net30, "trials": 16, "seed": 0, "inputs_per_trial": 2},
        ),
        (
            "  of which: correlation map alone (4 x 4 pairs)",
            {"kind": "correlation", "net": net30, "trials": 16, "seed": 0},
        ),
        (
            f"Jacobian depth {deep}, width {deep_width}, gauss 0.01, 16 trials x 2 inputs",
            {"kind": "jacobian", "net": net_deep, "trials": 16, "seed": 0, "inputs_per_trial": 2},
        ),
        (
            f"spectra depth {deep}, width {deep_width}, gauss 0.01, 16 trials (all three)",
            {"kind": "spectra", **net_deep, "trials": 16},
        ),
    ]
    print(f"{'case':66s} {'wall s':>7s} {'peak RSS':>9s}")
    with tempfile.TemporaryDirectory() as fig_dir:
        for label, spec in cases:
            res = run_case(dict(spec), fig_dir)
            print(f"{label:66s} {res['seconds']:7.2f} {res['peak_rss_mib']:6.0f} MiB")
            if "finite" in res:
                print(
                    f"{'':4s}log10 mean sq sv {res['log10_mean_sq_sv']:.2f} (pred "
                    f"{res['log10_mean_sq_sv_pred']:.2f}), log10 sv max "
                    f"{res['log10_sv_max']:.2f}, min {res['log10_sv_min']:.2f}, zero fraction "
                    f"{res['zero_fraction']:.3f}, all finite: {res['finite']}"
                )
            for name in ("weights", "jacobian", "correlation"):
                key = f"figure_{name}_s"
                if key in res:
                    print(f"{'':4s}figure {name:12s} {res[key]:5.2f} s (target < 2 s)")
    print(
        f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} "
        "(other processes slow these figures down)"
    )


if __name__ == "__main__":
    main()
