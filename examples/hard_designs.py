"""Hard designs and hostile input: what the user sees.

Runs every case of the README's table "Hard designs and hostile input" and prints the
table's rows (Markdown). Each fitted design is checked, not just run:

* "exact" means the fit equals that of the same data on a comfortable scale (the
  criterion up to the Jacobian of the rescaling, the estimates mapped back) to the
  relative difference printed;
* otherwise the criterion at the fitted θ is recomputed densely from the textbook
  formulas (V = I + ZΛΛ'Z') and the optimum compared with scipy's from three other
  starts.

Errors are shown as the command line prints them (``multilevel fit FILE FORMULA``, run
in-process from a scratch directory, so paths are short). Regenerate the table with

    python examples/hard_designs.py
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

import multilevel
from multilevel.cli import main as cli_main

RNG = np.random.default_rng(20240501)
ROWS: list[tuple[str, str, str]] = []


# -- checks -------------------------------------------------------------------------------


def dense_objective(fit) -> float:
    """The REML/ML criterion at the fit's θ from the textbook formulas, densely."""
    fr = fit.frame
    n, X, y = fr.n, fr.X, fr.y
    lams = fit.deviance.layout.lambdas(np.asarray(fit.theta, float))
    cols = []
    for rt, lam in zip(fr.reterms, lams, strict=True):
        ZL = rt.Z @ lam
        M = np.zeros((n, rt.nlevels * rt.k))
        for a in range(rt.k):
            M[np.arange(n), rt.codes * rt.k + a] = ZL[:, a]
        cols.append(M)
    ZL = np.hstack(cols)
    C = np.linalg.cholesky(np.eye(n) + ZL @ ZL.T)
    d = np.linalg.norm(X, axis=0)
    Xw, yw = np.linalg.solve(C, X / d), np.linalg.solve(C, y)
    Q, R = np.linalg.qr(Xw)
    r2 = float(np.sum((yw - Xw @ np.linalg.solve(R, Q.T @ yw)) ** 2))
    p, logdet_v = X.shape[1], 2 * np.log(np.diag(C)).sum()
    if fit.reml:
        logdet_x = 2 * np.log(np.abs(np.diag(R))).sum() + 2 * np.log(d).sum()
        return logdet_v + logdet_x + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))
    return logdet_v + n * (1 + np.log(2 * np.pi * r2 / n))


def other_optimum(fit, starts: int = 3) -> float:
    dev, lower = fit.deviance, fit.deviance.layout.lower
    bounds = [(0.0 if lo == 0 else None, None) for lo in lower]

    def f(t):
        v = dev(np.asarray(t, float))
        return v if np.isfinite(v) else 1e300

    rng, best = np.random.default_rng(0), np.inf
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for _ in range(starts):
            x0 = np.where(lower == 0, np.abs(rng.normal(size=lower.size)) + 0.05, 0.0)
            r = minimize(f, x0, method="L-BFGS-B", bounds=bounds)
            r = minimize(f, r.x, method="Powell", bounds=bounds)
            best = min(best, float(r.fun))
    return best


def verified(fit) -> str:
    """'criterion = dense formula to 1e-x; no better optimum from 3 other starts'."""
    dense = dense_objective(fit)
    rel = abs(fit.objective - dense) / abs(dense)
    other = other_optimum(fit)
    assert fit.objective <= other + 1e-6 * max(1, abs(other)), (fit.objective, other)
    return (
        f"criterion = dense textbook formula (rel. diff. {small(rel)}); scipy from 3 other "
        f"starts finds nothing lower"
    )


def small(rel: float) -> str:
    return f"{rel:.0e}" if rel >= 1e-15 else "< 1e-15"


def fit_quietly(formula, df, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        m = multilevel.fit(formula, df, **kw)
        elapsed = time.perf_counter() - t
    return m, [str(w.message) for w in caught], elapsed


def describe(m, notes, extra: str = "") -> str:
    parts = [f"fitted ({'converged' if m.converged else 'NOT converged'})"]
    if m.singular:
        parts.append("singular note: " + "; ".join(m.singular_terms))
    parts += [f"warning: {w}" for w in notes]
    if extra:
        parts.append(extra)
    return "; ".join(parts)


def row(case: str, design: str, seen: str) -> None:
    ROWS.append(tuple(s.replace("|", "\\|").replace("\n", " ") for s in (case, design, seen)))


def cli(files: dict[str, str | bytes], formula: str) -> str:
    """``multilevel fit data.csv FORMULA`` in a scratch directory: status and stderr."""
    with tempfile.TemporaryDirectory() as d:
        old = os.getcwd()
        os.chdir(d)
        try:
            for name, text in files.items():
                Path(name).write_bytes(text if isinstance(text, bytes) else text.encode())
            err, out = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = cli_main(["fit", next(iter(files)), formula])
            assert not Path("pwned").exists(), "a formula ran code"
        finally:
            os.chdir(old)
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    if code == 0:  # the summary's notes
        lines += [ln.strip() for ln in out.getvalue().splitlines() if "dropped" in ln]
    return f"status {code}: `{' '.join(lines)}`" if lines else f"status {code}"


def simulate(n_groups, sizes, slope_sd=0.0, x_scale=1.0, sd_g=1.0, seed=None):
    rng = np.random.default_rng(seed) if seed is not None else RNG
    sizes = np.broadcast_to(sizes, (n_groups,))
    g = np.repeat(np.arange(n_groups), sizes)
    x = rng.normal(size=g.size)
    y = (
        2.0
        + 0.5 * x
        + sd_g * rng.normal(size=n_groups)[g]
        + slope_sd * rng.normal(size=n_groups)[g] * x
        + rng.normal(size=g.size)
    )
    return pd.DataFrame({"y": y, "x": x * x_scale, "g": [f"g{v}" for v in g]})


def good_csv() -> str:
    return simulate(8, 6, seed=1).to_csv(index=False)


# -- hard designs ----------------------------------------------------------------------------


def hard_designs() -> None:
    df = pd.concat(
        [simulate(30, 1, slope_sd=0.5, seed=2), simulate(10, 50, slope_sd=0.5, seed=3)],
        ignore_index=True,
    )
    df["g"] = [f"{g}-{i // 1}" if i < 30 else f"big-{g}" for i, g in enumerate(df.g)]
    m, notes, _ = fit_quietly("y ~ x + (1 + x | g)", df)
    row(
        "Groups of size one mixed with large groups",
        "30 groups of 1 row and 10 of 50, `y ~ x + (1 + x | g)`",
        describe(m, notes, verified(m)),
    )

    n_groups = 100_000
    sizes = RNG.integers(1, 3, size=n_groups)
    df = simulate(n_groups, sizes, sd_g=0.7)
    m, notes, t = fit_quietly("y ~ x + (1 | g)", df)
    sd = m.varcorr.sdcor.to_numpy()
    row(
        "100,000 groups of one or two observations",
        f"{len(df):,} rows, `y ~ x + (1 | g)`, true SDs 0.7 and 1",
        describe(m, notes, f"{t:.1f} s; SDs {sd[0]:.3f} (group), {sd[1]:.3f} (residual)"),
    )

    df = simulate(12, 8, seed=4)
    df["school_type"] = df.g.map({f"g{i}": f"type{i}" for i in range(12)})
    m, notes, _ = fit_quietly("y ~ x + school_type + (1 | g)", df)
    row(
        "A factor perfectly aliased with the grouping factor",
        "`school_type` has one level per group: `y ~ x + school_type + (1 | g)`",
        describe(m, notes),
    )

    base = simulate(20, 10, seed=5)
    base["w"] = RNG.normal(size=len(base))
    big = base.assign(x=base.x * 1e6, w=base.w * 1e-6)
    m0, _, _ = fit_quietly("y ~ x + w + (1 | g)", base)
    m, notes, _ = fit_quietly("y ~ x + w + (1 | g)", big)
    beta = m.fixef.to_numpy() * np.array([1, 1e6, 1e-6])
    rel = max(
        abs(m.objective - m0.objective) / abs(m0.objective),
        np.max(np.abs(beta - m0.fixef.to_numpy()) / np.abs(m0.fixef.to_numpy())),
    )
    row(
        "Predictors at 1e6 beside predictors at 1e-6",
        "`x` ~ 1e6, `w` ~ 1e-6: `y ~ x + w + (1 | g)`",
        describe(
            m,
            notes,
            f"exact: criterion and estimates equal those on unit scale (rel. diff. {small(rel)})",
        ),
    )

    base = simulate(30, 10, slope_sd=0.5, seed=6)
    m0, _, _ = fit_quietly("y ~ x + (1 + x | g)", base)
    m, notes, _ = fit_quietly("y ~ x + (1 + x | g)", base.assign(x=base.x * 1e6))

    def slope(f):
        return f.varcorr.query("term1 == 'x' and term2.isna()", engine="python").sdcor.iloc[0]

    shift = 2 * np.log(1e6)  # REML's Jacobian of the rescaled column
    rel = max(
        abs(m.objective - shift - m0.objective) / abs(m0.objective),
        abs(slope(m) * 1e6 - slope(m0)) / slope(m0),
        abs(m.fixef["x"] * 1e6 - m0.fixef["x"]) / abs(m0.fixef["x"]),
    )
    row(
        "A random slope on a predictor at 1e6",
        "`x` ~ 1e6: `y ~ x + (1 + x | g)`",
        describe(
            m,
            notes,
            "exact: criterion, slope and its SD equal those on unit scale "
            f"(rel. diff. {small(rel)})",
        ),
    )

    base = simulate(20, 10, seed=7)
    tiny = base.assign(y=5.0 + 1e-9 * base.y)
    m0, _, _ = fit_quietly("y ~ x + (1 | g)", base)
    m, notes, _ = fit_quietly("y ~ x + (1 | g)", tiny)
    rel = max(
        abs(m.theta[0] - m0.theta[0]) / m0.theta[0],
        abs(m.fixef["x"] * 1e9 - m0.fixef["x"]) / abs(m0.fixef["x"]),
    )
    row(
        "y with tiny variance",
        "y = 5 + 1e-9 × (unit-variance data): `y ~ x + (1 | g)`",
        describe(
            m,
            notes,
            f"exact: θ and the slope equal those of the unscaled data (rel. diff. {small(rel)})",
        ),
    )

    row(
        "All-identical y",
        "y = 3 in every row",
        cli({"data.csv": simulate(8, 6).assign(y=3.0).to_csv(index=False)}, "y ~ x + (1 | g)"),
    )

    df = simulate(20, 10, seed=8).assign(k=4.0)
    m, notes, _ = fit_quietly("y ~ x + k + (1 | g)", df)
    row(
        "A constant predictor",
        "`k` = 4 in every row: `y ~ x + k + (1 | g)`",
        describe(m, notes, f"fixed effects {list(m.fixef.index)}"),
    )

    df = simulate(30, 10, sd_g=0.0, seed=9)
    m, notes, _ = fit_quietly("y ~ x + (1 | g)", df)
    row(
        "A group variance that is truly zero",
        "simulated without group effects: `y ~ x + (1 | g)`",
        describe(m, notes, verified(m)),
    )

    row(
        "A single group",
        "every row in group `g0`",
        cli({"data.csv": simulate(1, 40).to_csv(index=False)}, "y ~ x + (1 | g)"),
    )

    row(
        "More random effects than observations (lme4's check)",
        "10 groups of 2 rows: `y ~ x + (1 + x | g)`",
        cli({"data.csv": simulate(10, 2).to_csv(index=False)}, "y ~ x + (1 + x | g)"),
    )
    tiny = pd.DataFrame(
        {
            "y": [3.36, 2.46, 3.11, 1.31],
            "x": [0.13, -0.13, 0.64, 0.10],
            "w": [0.63, 0.83, 0.21, 0.46],
        }
    ).assign(g=["a", "a", "b", "b"])
    row(
        "Fixed and random effects that fit every observation",
        "4 rows, 2 groups: `y ~ x + w + (1 | g)` (each term passes lme4's check)",
        cli({"data.csv": tiny.to_csv(index=False)}, "y ~ x + w + (1 | g)"),
    )


# -- hostile input ---------------------------------------------------------------------------


def false_boundary() -> None:
    """A data set (from the property tests) whose optimum has a small intercept SD and a
    correlation of -1 with a slope on x at 1e-2: lme4's default optimiser and ours before
    2026-11-26 stopped 2.8 deviance units higher, with the intercept variance at 0."""
    path = Path(__file__).parent.parent / "tests/data/optimiser_misses/E1b.csv"
    m, notes, _ = fit_quietly("y ~ x + w + (1 + x | g)", pd.read_csv(path))
    row(
        "An optimum next to a false boundary",
        "48 rows, x at 1e-2: `y ~ x + w + (1 + x | g)` (tests/data/optimiser_misses/E1b.csv)",
        describe(
            m,
            notes,
            f"criterion {m.objective:.4f} (lme4's default stops at 355.7654); {verified(m)}",
        ),
    )


def hostile_input() -> None:
    good = good_csv()
    for case, formula in [
        ("Unbalanced parentheses", "y ~ x + (1 | g"),
        ("An empty bar", "y ~ x + ( | g)"),
        ("A bar with no grouping factor", "y ~ x + (1 | )"),
        ("A stray bar", "y ~ x | g"),
        ("An unknown function", "y ~ foo(x) + (1 | g)"),
        ("Code in a formula", "y ~ x + {__import__('os').system('touch pwned')} + (1 | g)"),
        ("Code without dunders", "y ~ x + I(open('pwned', 'w')) + (1 | g)"),
        ("Attribute access", "y ~ x.to_csv('pwned') + (1 | g)"),
        ("Formula operators in the response", "y - 1 ~ x + (1 | g)"),
        ("An unknown column", "y ~ z + (1 | g)"),
        ("The response among its own predictors", "y ~ y + x + (1 | g)"),
        ("A transform of the response among the predictors", "scale(y) ~ x + y + (1 | g)"),
        ("An unknown contrast", "y ~ x + C(g, Deviation) + (1 | g)"),
        ("A misspelt column", "y ~ x + (1 | G)"),
    ]:
        row(case, f"`{formula}`", cli({"data.csv": good}, formula))

    df = simulate(8, 6, seed=1)
    row(
        "A duplicated column",
        "header `y,x,x,g`",
        cli(
            {
                "data.csv": "y,x,x,g\n"
                + df.assign(x2=df.x)[["y", "x", "x2", "g"]].to_csv(index=False, header=False)
            },
            "y ~ x + (1 | g)",
        ),
    )
    row(
        "A non-numeric response",
        "`y` holds words",
        cli(
            {"data.csv": df.assign(y=[f"v{i}" for i in range(len(df))]).to_csv(index=False)},
            "y ~ x + (1 | g)",
        ),
    )
    typo = df.astype({"y": object})
    typo.loc[5, "y"] = "12,5"
    row(
        "A response with one stray text value",
        '`y` = `"12,5"` in row 5',
        cli({"data.csv": typo.to_csv(index=False)}, "y ~ x + (1 | g)"),
    )
    inf = df.copy()
    inf.loc[3, "x"] = np.inf
    row(
        "An infinite value",
        "`x` = `inf` in row 3",
        cli({"data.csv": inf.to_csv(index=False)}, "y ~ x + (1 | g)"),
    )
    huge = df.copy()
    huge.loc[4, "y"] = 4e163
    row(
        "A value too large to square",
        "`y` = `4e163` in row 4",
        cli({"data.csv": huge.to_csv(index=False)}, "y ~ x + (1 | g)"),
    )
    row(
        "log of a negative number",
        "`y ~ log(x) + (1 | g)` with x < 0",
        cli({"data.csv": good}, "y ~ log(x) + (1 | g)"),
    )
    mixed = df.astype({"x": object})
    mixed.loc[2, "x"] = "oops"
    row(
        "Mixed types in a column",
        "`x` = `oops` in row 2",
        cli({"data.csv": mixed.to_csv(index=False)}, "y ~ x + (1 | g)"),
    )
    mixed.loc[2, "x"] = "n/a"
    row(
        "A missing-value marker",
        "`x` = `n/a` in row 2 (pandas reads it as missing)",
        cli({"data.csv": mixed.to_csv(index=False)}, "y ~ x + (1 | g)"),
    )
    try:
        multilevel.fit("y ~ x + (1 | g)", df.assign(x=[1.5, "a"] * (len(df) // 2)))
        seen = "fitted"
    except multilevel.MultilevelError as e:
        seen = f"`DataError: {e.one_line()}`"
    row("Mixed types in a column (pandas object column)", "`x` = `[1.5, 'a', ...]`", seen)
    row("An empty file", "0 bytes", cli({"data.csv": ""}, "y ~ x + (1 | g)"))
    row("A header and no rows", "`y,x,g`", cli({"data.csv": "y,x,g\n"}, "y ~ x + (1 | g)"))
    row(
        "A ragged row",
        "a row with 5 fields under a 3-column header",
        cli({"data.csv": "y,x,g\n1,2,a\n3,4,b,5,6\n"}, "y ~ x + (1 | g)"),
    )
    row(
        "Not text",
        "random bytes",
        cli({"data.csv": bytes(RNG.integers(0, 256, 64, dtype=np.uint8))}, "y ~ x + (1 | g)"),
    )
    row(
        "A damaged Parquet file",
        "`data.parquet` of random bytes",
        cli({"data.parquet": b"PAR1" + bytes(40) + b"PAR1"}, "y ~ x + (1 | g)"),
    )

    n = 100_000
    ids = pd.DataFrame(
        {
            "y": RNG.normal(size=n),
            "x": RNG.normal(size=n),
            "id": [f"p{i}" for i in RNG.integers(0, 20_000, n)],
            "g": RNG.integers(0, 50, n),
        }
    )
    t = time.perf_counter()
    try:
        multilevel.fit("y ~ x + id + (1 | g)", ids)
        seen = "fitted"
    except multilevel.MultilevelError as e:
        seen = f"`DataError: {e.one_line()}` (after {time.perf_counter() - t:.1f} s)"
    row(
        "A factor with 20,000 levels as a fixed effect",
        "100,000 rows: `y ~ x + id + (1 | g)`",
        seen,
    )
    m, notes, t = fit_quietly("y ~ x + (1 | id)", ids)
    row(
        "The same factor as a grouping factor",
        "`y ~ x + (1 | id)`",
        describe(m, notes, f"{m.ngroups['id']:,} groups, {t * 1000:.0f} ms"),
    )
    row(
        "A grouping factor with a level per row",
        "`id` unique in each row: `y ~ x + (1 | id)`",
        cli(
            {"data.csv": simulate(8, 6).assign(id=range(48)).to_csv(index=False)},
            "y ~ x + (1 | id)",
        ),
    )


def timed_cli(files: dict[str, str | bytes], formula: str) -> str:
    t = time.perf_counter()
    seen = cli(files, formula)
    return f"{seen} (after {time.perf_counter() - t:.2f} s)"


def bounded_work() -> None:
    """Formulas that cost unbounded work, and names in every language (issue 14)."""
    rng = np.random.default_rng(14)
    sixty = simulate(6, 10, seed=14).to_csv(index=False)
    row(
        "A spline of a million degrees of freedom",
        "60 rows: `y ~ bs(x, df=1000000) + (1 | g)` (before: memory and CPU grew until killed)",
        timed_cli({"data.csv": sixty}, "y ~ bs(x, df=1000000) + (1 | g)"),
    )
    row(
        "A polynomial of degree 100,000",
        "60 rows: `y ~ poly(x, 100000) + (1 | g)` (before: 10-12 s, then a message about NaN)",
        timed_cli({"data.csv": sixty}, "y ~ poly(x, 100000) + (1 | g)"),
    )
    deep = "y ~ " + "(" * 3000 + "x" + ")" * 3000 + " + (1 | g)"
    row(
        "3,000 nested parentheses",
        "`y ~ ((((…x…)))) + (1 | g)` (before: an internal error, RecursionError)",
        timed_cli({"data.csv": sixty}, deep),
    )
    chain = "y ~ I(" + " + ".join(["x"] * 1000) + ") + (1 | g)"
    row(
        "A Python expression of 1,000 operators",
        "`y ~ I(x + x + … + x) + (1 | g)` (before: an internal error, RecursionError)",
        timed_cli({"data.csv": sixty}, chain),
    )
    row(
        "Term algebra that never ends",
        "`y ~ (x + g)^1000000 + (1 | g)` (before: formulaic's expansion never ended)",
        timed_cli({"data.csv": sixty}, "y ~ (x + g)^1000000 + (1 | g)"),
    )
    n = 100_000
    pairs = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "a": [f"a{i}" for i in rng.integers(0, 300, n)],
            "b": [f"b{i}" for i in rng.integers(0, 300, n)],
            "g": rng.integers(0, 50, n),
        }
    )
    t = time.perf_counter()
    try:
        multilevel.fit("y ~ x + a:b + (1 | g)", pairs)
        seen = "fitted"
    except multilevel.MultilevelError as e:
        seen = f"`DataError: {e.one_line()}` (after {time.perf_counter() - t:.1f} s)"
    row(
        "An interaction of two factors of 300 levels",
        "100,000 rows: `y ~ x + a:b + (1 | g)`",
        seen,
    )
    spanish = simulate(6, 10, seed=15).rename(columns={"y": "puntuación", "g": "escuela_año"})
    m, notes, _ = fit_quietly("puntuación ~ x + (1 | escuela_año)", spanish)
    row(
        "Column names in Spanish",
        "`puntuación ~ x + (1 | escuela_año)` (before: 'the grouping factor "
        "'escuela_año' must be a column name')",
        describe(m, notes, f"groups {list(m.ngroups)}; the summary shows the names as written"),
    )
    scripts = simulate(6, 10, seed=16)
    scripts["z"] = np.exp(rng.normal(size=len(scripts)))
    scripts = scripts.rename(columns={"y": "Größe", "x": "δ", "z": "µg", "g": "学校"})
    scripts["класс"] = [f"k{i % 4}" for i in range(len(scripts))]
    m, notes, _ = fit_quietly("Größe ~ δ + log(µg) + (1 | 学校) + (1 | класс/学校)", scripts)
    row(
        "Names in other scripts, inside functions, nested",
        "`Größe ~ δ + log(µg) + (1 | 学校) + (1 | класс/学校)`",
        describe(m, notes, f"fixed effects {list(m.fixef.index)}; groups {sorted(m.ngroups)}"),
    )
    odd = simulate(6, 10, seed=17).rename(columns={"x": "a-b"})
    row(
        "A column name that is not a Python name, written bare",
        "column `a-b`: `y ~ a-b + (1 | g)` (backticks, `` `a-b` ``, fit)",
        cli({"data.csv": odd.to_csv(index=False)}, "y ~ a-b + (1 | g)"),
    )


def main() -> None:
    hard_designs()
    false_boundary()
    n_hard = len(ROWS)
    hostile_input()
    bounded_work()
    print("| Case | Input | What the user sees |")
    print("|---|---|---|")
    for i, (case, design, seen) in enumerate(ROWS):
        if i == n_hard:
            print("| **Hostile input** | | |")
        print(f"| {case} | {design} | {seen} |")


if __name__ == "__main__":
    sys.exit(main())
