"""Scan random small designs for optimiser misses: our fit against scipy from other starts.

Designs as in ``tests/strategies.py``: 2-25 groups of 1-10 rows, x, w and y at scales
1e-6..1e6, a random slope or not, a crossed factor or not, variances that may be 0. For each
design i (seeded by i) the fit's objective is compared with the lowest that scipy reaches
(L-BFGS-B from 5 random starts, then Powell) on the same deviance; a miss is ours above it by
more than 1e-6 (relative). Also counts fits reported as not converged and evaluations.

    python benchmarks/optimiser_scan.py [--start 0] [--count 6000]

A scan, not a test: it takes about 0.25 s a design on one core. Misses it finds belong in
tests/data/optimiser_misses.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from scipy.optimize import minimize

import multilevel
from multilevel.errors import MultilevelError


def design(rng: np.random.Generator) -> tuple[pd.DataFrame, str, bool]:
    n_groups = int(rng.integers(2, 26))
    if rng.random() < 0.5:
        sizes = [int(rng.integers(1, 9))] * n_groups
    else:
        sizes = list(rng.integers(1, 11, n_groups))
    n = sum(sizes)
    xs, ws, ys = (10.0 ** rng.integers(-6, 7) for _ in range(3))
    slope, crossed = rng.random() < 0.7, rng.random() < 0.3
    sd_g, sd_s, sd_h = rng.choice([0.0, 0.1, 1.0, 3.0], 3)
    g = np.repeat(np.arange(n_groups), sizes)
    x, w = rng.normal(size=n), rng.uniform(-1, 1, n)
    h = rng.integers(0, rng.integers(2, 6), n)
    y = (
        1
        + 0.5 * x
        + 2 * w
        + sd_g * rng.normal(size=n_groups)[g]
        + sd_s * rng.normal(size=n_groups)[g] * x
        + (sd_h * rng.normal(size=5)[h] if crossed else 0)
        + rng.normal(size=n)
    )
    df = pd.DataFrame({"y": y * ys, "x": x * xs, "w": w * ws, "g": [f"G{v}" for v in g], "h": h})
    random = "(1 + x | g)" if slope else "(1 | g)"
    return df, f"y ~ x + w + {random}" + (" + (1 | h)" if crossed else ""), bool(rng.random() < 0.5)


def scipy_best(fit, seed: int, starts: int = 5) -> float:
    dev, lower = fit.deviance, fit.deviance.layout.lower
    bounds = [(0.0 if lo == 0 else None, None) for lo in lower]

    def f(t):
        v = dev(np.asarray(t, dtype=float))
        return v if np.isfinite(v) else 1e300

    rng, best = np.random.default_rng(seed), None
    with np.errstate(all="ignore"):
        for _ in range(starts):
            scale = 10.0 ** rng.uniform(-1.5, 1.5)
            x0 = np.where(
                lower == 0, np.abs(rng.normal(size=lower.size)) + 0.05, rng.normal(size=lower.size)
            )
            r = minimize(f, x0 * scale, method="L-BFGS-B", bounds=bounds)
            best = r if best is None or r.fun < best.fun else best
        r = minimize(
            f, best.x, method="Powell", bounds=bounds, options={"xtol": 1e-6, "ftol": 1e-12}
        )
    return float(min(r.fun, best.fun))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=6000)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    fitted, misses, nonconv, evals = 0, [], [], []
    for i in range(a.start, a.start + a.count):
        df, formula, reml = design(np.random.default_rng(i))
        try:
            m = multilevel.fit(formula, df, reml=reml)
        except MultilevelError:
            continue
        fitted += 1
        evals.append(m.optim.nevals)
        if not m.converged:
            nonconv.append(i)
        other = scipy_best(m, i)
        if m.objective > other + 1e-6 * max(1.0, abs(other)):
            misses.append((i, formula, reml, m.objective - other))
    print(
        f"designs {a.count} (seeds {a.start}..{a.start + a.count - 1}), fitted {fitted}: "
        f"misses {len(misses)}, not converged {len(nonconv)}, "
        f"evaluations mean {np.mean(evals):.0f} median {np.median(evals):.0f}"
    )
    for i, formula, reml, gap in misses:
        print(f"  miss: seed {i}, {formula}, {'REML' if reml else 'ML'}, {gap:.3g} above scipy")
    if nonconv:
        print(f"  not converged: seeds {nonconv}")


if __name__ == "__main__":
    main()
