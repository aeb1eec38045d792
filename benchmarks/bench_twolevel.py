"""The two-level form against the same model written as an lme4 formula, in one run.

``fit("log_radon ~ floor", radon, group="county", group_formula="~ log_uranium")`` fits
``log_radon ~ floor + log_uranium + floor:log_uranium + (1 + floor | county)``; the two-level
model is a view of that fit, so it should cost about the same. The two calls alternate, each
timed ``--reps`` times after a warm-up, and the script prints the medians, their ratio and
the difference of the objectives (which must be 0 to 1e-10).

    python benchmarks/bench_twolevel.py [--reps 60]

A benchmark, not a test: it asserts nothing and CI does not run it (target of issue 9: the
two-level fit at most 1.25x the formula fit).
"""

from __future__ import annotations

import argparse
import statistics
import time

import multilevel
from multilevel import datasets

FORMULA = "log_radon ~ floor + log_uranium + floor:log_uranium + (1 + floor | county)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=60)
    args = ap.parse_args()
    radon = datasets.load("radon")

    def formula():
        return multilevel.fit(FORMULA, radon)

    def two_level():
        return multilevel.fit(
            "log_radon ~ floor", radon, group="county", group_formula="~ log_uranium"
        )

    a, b = formula(), two_level()  # warm-up
    ta, tb = [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        formula()
        t1 = time.perf_counter()
        two_level()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    ma, mb = statistics.median(ta), statistics.median(tb)
    print(f"formula   {ma * 1e3:8.2f} ms  {FORMULA}")
    print(f"two-level {mb * 1e3:8.2f} ms  ratio {mb / ma:.3f}")
    print(f"objective difference {b.objective - a.objective:+.2e} ({args.reps} reps each)")


if __name__ == "__main__":
    main()
