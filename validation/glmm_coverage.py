"""Coverage of 95% Wald and profile intervals for the fixed effects of a binomial GLMM.

Issue 10, done-when: "Simulation: 200 seeded binomial studies from a known
random-intercept-and-slope model; 95% Wald and profile intervals for the fixed effects cover
at the Monte Carlo rate".

Model (module constants below): J = 40 groups of 25 rows, x_ij ~ N(0, 1),

    y_ij ~ Bernoulli(logit⁻¹(β0 + β1 x_ij + b0_j + b1_j x_ij)),  (b0_j, b1_j) ~ N(0, Σ),

β = (-0.5, 1.0), SD(b0) = 1.0, SD(b1) = 0.5, cor(b0, b1) = 0.3. Study k (k = 0..n-1) draws
its data from ``np.random.default_rng(np.random.SeedSequence(seed).spawn(n)[k])``, so a study
is the same whatever the number of workers; and since ``spawn`` children depend only on the
seed and their index, study k of a 200-study run is study k of a 30-study run.

Each study fits ``multilevel.fit("y ~ x + (1 + x | g)", df, family="binomial")`` (Laplace)
and records ``converged``, ``singular``, the fixed effects, their SEs, ``confint("wald")``
and ``confint("profile", parm=["(Intercept)", "x"])``. The report gives, per fixed effect
and method, the coverage c (share of intervals containing the true β), its Monte Carlo SE
sqrt(c(1 - c)/n), whether 0.95 lies within c ± 2 MC SE, the mean width; then the estimates'
bias and spread against the mean SE, the counts of non-converged and singular fits and of
failed intervals, and the time.

This is a study of a statistical property, not a test and not a benchmark; the fast check
that CI runs is ``tests/test_validation_glmm_coverage.py``. Run from the repository root::

    python validation/glmm_coverage.py                      # 200 studies, writes GLMM_COVERAGE.md
    python validation/glmm_coverage.py --studies 20 --no-write
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUTPUT = HERE / "GLMM_COVERAGE.md"

# --- the known model --------------------------------------------------------------------------
FORMULA = "y ~ x + (1 + x | g)"
FAMILY = "binomial"
FIXED_NAMES = ("(Intercept)", "x")
BETA = np.array([-0.5, 1.0])  # β0, β1
SDS = np.array([1.0, 0.5])  # SD(b0), SD(b1)
COR = 0.3  # cor(b0, b1)
N_GROUPS = 40
N_PER_GROUP = 25
BASE_SEED = 20240610
N_STUDIES = 200
LEVEL = 0.95
METHODS = ("wald", "profile")


def true_sigma() -> np.ndarray:
    """Σ, the covariance of (b0_j, b1_j)."""
    R = np.array([[1.0, COR], [COR, 1.0]])
    return np.diag(SDS) @ R @ np.diag(SDS)


def true_theta() -> np.ndarray:
    """lme4's θ of the true model: the lower Cholesky factor of Σ (a binomial model has no σ),
    column-wise lower triangle (L11, L21, L22)."""
    L = np.linalg.cholesky(true_sigma())
    return np.array([L[0, 0], L[1, 0], L[1, 1]])


def study_seeds(n: int, seed: int = BASE_SEED) -> list[np.random.SeedSequence]:
    """The per-study seeds: ``SeedSequence(seed).spawn(n)``."""
    return np.random.SeedSequence(seed).spawn(n)


def simulate(seed: np.random.SeedSequence) -> pd.DataFrame:
    """One study's data (columns y, x, g) from the known model."""
    rng = np.random.default_rng(seed)
    b = rng.multivariate_normal(np.zeros(2), true_sigma(), size=N_GROUPS)
    g = np.repeat(np.arange(N_GROUPS), N_PER_GROUP)
    x = rng.standard_normal(N_GROUPS * N_PER_GROUP)
    eta = BETA[0] + BETA[1] * x + b[g, 0] + b[g, 1] * x
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    labels = np.array([f"g{j:02d}" for j in range(N_GROUPS)])
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": pd.Categorical(labels[g])})


def _interval(ci: pd.DataFrame, name: str) -> tuple[float, float]:
    lo, hi = ci.loc[name].to_numpy(dtype=float)
    return float(lo), float(hi)


def run_study(index: int, seed: np.random.SeedSequence, methods=METHODS) -> dict:
    """Simulate and fit study ``index``; a dict of plain values (picklable). A failure of the
    fit or of an interval is recorded (``error``, ``<method>_error``), not raised."""
    import multilevel

    rec: dict = {"index": index, "error": None}
    c0 = time.process_time()
    df = simulate(seed)
    rec["ybar"] = float(df["y"].mean())
    t0 = time.perf_counter()
    try:
        m = multilevel.fit(FORMULA, df, family=FAMILY)
    except Exception as e:  # noqa: BLE001 - recorded and reported
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["fit_time"] = time.perf_counter() - t0
        return rec
    rec["fit_time"] = time.perf_counter() - t0
    rec["converged"] = bool(m.converged)
    rec["singular"] = bool(m.singular)
    rec["fixef_names"] = [str(s) for s in m.fixef.index]
    rec["fixef"] = [float(v) for v in m.fixef.to_numpy()]
    rec["se"] = [float(v) for v in m.fixef_se.to_numpy()]
    rec["theta"] = [float(v) for v in np.asarray(m.theta)]
    rec["objective"] = float(m.objective)
    for method in methods:
        t1 = time.perf_counter()
        try:
            if method == "wald":
                ci = m.confint("wald", level=LEVEL)
            else:
                ci = m.confint(method, level=LEVEL, parm=list(FIXED_NAMES))
            rec[method] = [_interval(ci, name) for name in FIXED_NAMES]
            rec[f"{method}_error"] = None
        except Exception as e:  # noqa: BLE001 - recorded and reported
            rec[method] = None
            rec[f"{method}_error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
        rec[f"{method}_time"] = time.perf_counter() - t1
    rec["cpu_time"] = time.process_time() - c0
    return rec


def _init_worker() -> None:
    # one BLAS thread per process: the processes already use the cores
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # noqa: BLE001, S110
        pass


def _run_one(args) -> dict:
    return run_study(*args)


def run_studies(
    n: int = N_STUDIES, seed: int = BASE_SEED, workers: int = 2, methods=METHODS, progress=None
) -> list[dict]:
    """Run studies 0..n-1 (``workers`` processes; 1: in this process); records in study order.
    ``progress(done, n)`` is called after each study if given."""
    import multilevel  # noqa: F401 - imported once, before the workers fork: one code snapshot

    seeds = study_seeds(n, seed)
    jobs = [(k, seeds[k], tuple(methods)) for k in range(n)]
    out: list[dict] = []
    if workers <= 1:
        _init_worker()
        for job in jobs:
            out.append(_run_one(job))
            if progress:
                progress(len(out), n)
        return out
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as ex:
        for rec in ex.map(_run_one, jobs, chunksize=1):
            out.append(rec)
            if progress:
                progress(len(out), n)
    return out


# --- summaries --------------------------------------------------------------------------------


def coverage_table(records: list[dict], methods=METHODS) -> pd.DataFrame:
    """One row per (method, fixed effect): n (studies with a finite interval), coverage,
    MC SE, within (|c - 0.95| <= 2 MC SE), misses below / above, mean width."""
    rows = []
    for method in methods:
        for i, name in enumerate(FIXED_NAMES):
            lo, hi = [], []
            for r in records:
                iv = r.get(method)
                if iv is None:
                    continue
                a, b = iv[i]
                if math.isfinite(a) and math.isfinite(b):
                    lo.append(a)
                    hi.append(b)
            lo, hi = np.array(lo), np.array(hi)
            n = len(lo)
            truth = BETA[i]
            if n:
                c = float(np.mean((lo <= truth) & (truth <= hi)))
                se = math.sqrt(c * (1 - c) / n)
                row = {
                    "method": method,
                    "parameter": name,
                    "true": truth,
                    "n": n,
                    "coverage": c,
                    "mc_se": se,
                    "within_2se": abs(c - LEVEL) <= 2 * se,
                    "miss_low": int(np.sum(hi < truth)),  # interval entirely below β
                    "miss_high": int(np.sum(lo > truth)),  # interval entirely above β
                    "mean_width": float(np.mean(hi - lo)),
                }
            else:
                row = {"method": method, "parameter": name, "true": truth, "n": 0}
            rows.append(row)
    return pd.DataFrame(rows)


def estimate_table(records: list[dict]) -> pd.DataFrame:
    """Per fixed effect: mean estimate, bias, empirical SD of the estimates, mean Wald SE."""
    ok = [r for r in records if r.get("fixef") is not None]
    est = np.array([r["fixef"] for r in ok]).reshape(-1, len(FIXED_NAMES))
    se = np.array([r["se"] for r in ok]).reshape(-1, len(FIXED_NAMES))
    rows = []
    for i, name in enumerate(FIXED_NAMES):
        rows.append(
            {
                "parameter": name,
                "true": BETA[i],
                "mean_est": float(est[:, i].mean()),
                "bias": float(est[:, i].mean() - BETA[i]),
                "sd_est": float(est[:, i].std(ddof=1)) if len(est) > 1 else math.nan,
                "mean_se": float(se[:, i].mean()),
            }
        )
    return pd.DataFrame(rows)


def theta_table(records: list[dict]) -> pd.DataFrame:
    """Mean and median of the estimated θ against the true θ."""
    th = np.array([r["theta"] for r in records if r.get("theta") is not None])
    names = ["L11 = SD(b0)", "L21", "L22"]
    return pd.DataFrame(
        {
            "theta": names,
            "true": true_theta(),
            "mean_est": th.mean(axis=0),
            "median_est": np.median(th, axis=0),
        }
    )


# --- report -----------------------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def code_state() -> dict:
    """The date, the commit and whether src/ has uncommitted changes, now."""
    dirty = _git("status", "--porcelain", "--", "src")
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "src_dirty": bool(dirty) and dirty != "unknown",
    }


def _fmt(v, digits=3) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "**no**"
    if isinstance(v, (int, np.integer)):
        return str(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.{digits}f}"


def _md_table(df: pd.DataFrame, cols: list[str], headers: list[str], digits=3) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in df.to_dict("records"):
        lines.append("| " + " | ".join(_fmt(row.get(c), digits) for c in cols) + " |")
    return "\n".join(lines)


def report(
    records: list[dict],
    *,
    seed: int,
    workers: int,
    elapsed: float,
    command: str,
    methods=METHODS,
    load: tuple[float, float] | None = None,
    code: dict | None = None,
) -> str:
    n = len(records)
    failed = [r for r in records if r.get("error")]
    fitted = [r for r in records if not r.get("error")]
    nonconv = sum(not r["converged"] for r in fitted)
    singular = sum(r["singular"] for r in fitted)
    clean = [r for r in fitted if r["converged"] and not r["singular"]]
    cov = coverage_table(records, methods)
    code = code or code_state()
    L = []
    L.append("# Coverage of GLMM fixed-effect intervals (binomial, random intercept and slope)")
    L.append("")
    L.append(
        "Written by `validation/glmm_coverage.py` (issue 10: *200 seeded binomial studies "
        "from a known random-intercept-and-slope model; 95% Wald and profile intervals for "
        "the fixed effects cover at the Monte Carlo rate*). A study of a statistical property, "
        "not a test."
    )
    L.append("")
    L.append(f"- Command: `{command}`")
    L.append(f"- Date: {code['date']} (start of the run)")
    L.append(
        f"- Seed: `np.random.SeedSequence({seed}).spawn({n})`, study k from child k "
        "(`np.random.default_rng(child)`: b, then x, then y)"
    )
    L.append(
        f"- Code: commit `{code['commit']}` at the start of the run"
        + (
            "; **src/ had uncommitted changes** (others' work in progress): the studies ran "
            "the working tree as it was then"
            if code["src_dirty"]
            else "; src/ clean"
        )
    )
    L.append(
        f"- Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}; "
        f"{workers} worker process(es), one BLAS thread each"
    )
    L.append("")
    L.append("## Model")
    L.append("")
    L.append(
        f"y_ij ~ Bernoulli(logit⁻¹(β0 + β1 x_ij + b0_j + b1_j x_ij)), (b0_j, b1_j) ~ N(0, Σ); "
        f"β = ({BETA[0]}, {BETA[1]}), SD(b0) = {SDS[0]}, SD(b1) = {SDS[1]}, "
        f"cor(b0, b1) = {COR} (θ = {', '.join(f'{t:.4f}' for t in true_theta())}); "
        f"J = {N_GROUPS} groups of {N_PER_GROUP} rows, x_ij ~ N(0, 1)."
    )
    L.append("")
    L.append(
        f'Fit: `multilevel.fit("{FORMULA}", df, family="{FAMILY}")` (Laplace); intervals '
        f'`m.confint("wald")` and `m.confint("profile", parm=["(Intercept)", "x"])`, level '
        f"{LEVEL}."
    )
    L.append("")
    L.append("## Coverage")
    L.append("")
    L.append(
        "c: share of the studies' intervals that contain the true β; MC SE = sqrt(c(1 - c)/n); "
        "*0.95 within ±2 MC SE*: |c - 0.95| ≤ 2 MC SE. (For reference, the MC SE at the "
        f"nominal rate is sqrt(0.95 · 0.05 / {n}) = {math.sqrt(0.95 * 0.05 / max(n, 1)):.4f}.) "
        "Misses below / above: intervals lying entirely below / above β."
    )
    L.append("")
    L.append(
        _md_table(
            cov,
            [
                "method",
                "parameter",
                "true",
                "n",
                "coverage",
                "mc_se",
                "within_2se",
                "miss_low",
                "miss_high",
                "mean_width",
            ],
            [
                "method",
                "parameter",
                "true β",
                "n",
                "coverage",
                "MC SE",
                "0.95 within ±2 MC SE",
                "misses below",
                "misses above",
                "mean width",
            ],
        )  # fmt: skip
    )
    L.append("")
    if len(clean) != n and clean:
        L.append(f"The same, over the {len(clean)} fits that converged and were not singular:")
        L.append("")
        L.append(
            _md_table(
                coverage_table(clean, methods),
                ["method", "parameter", "n", "coverage", "mc_se", "within_2se", "mean_width"],
                [
                    "method",
                    "parameter",
                    "n",
                    "coverage",
                    "MC SE",
                    "0.95 within ±2 MC SE",
                    "mean width",
                ],
            )  # fmt: skip
        )
        L.append("")
    L.append("## Fits")
    L.append("")
    L.append(f"- Studies: {n}; fits that raised: {len(failed)}")
    L.append(f"- Not converged: {nonconv}; singular: {singular}")
    for method in methods:
        bad = [r for r in fitted if r.get(f"{method}_error")]
        nonfinite = sum(
            1
            for r in fitted
            if r.get(method) is not None
            and not all(math.isfinite(v) for iv in r[method] for v in iv)
        )
        L.append(
            f"- {method} intervals that raised: {len(bad)}; with a non-finite limit: {nonfinite}"
        )
        for r in bad[:3]:
            first = r[f"{method}_error"].splitlines()[0]
            L.append(f"  - study {r['index']}: `{first}`")
    for r in failed[:3]:
        L.append(f"  - fit of study {r['index']} raised: `{r['error']}`")
    L.append("")
    if fitted:
        L.append("Fixed effects (bias and spread of the estimates against the mean Wald SE):")
        L.append("")
        L.append(
            _md_table(
                estimate_table(fitted),
                ["parameter", "true", "mean_est", "bias", "sd_est", "mean_se"],
                ["parameter", "true β", "mean β̂", "bias", "SD of β̂", "mean SE(β̂)"],
            )
        )
        L.append("")
        L.append("Variance parameters (θ, the relative Cholesky factor of Σ):")
        L.append("")
        L.append(
            _md_table(
                theta_table(fitted),
                ["theta", "true", "mean_est", "median_est"],
                ["θ", "true", "mean θ̂", "median θ̂"],
            )
        )
        L.append("")
    L.append("## Time")
    L.append("")
    fit_t = [r["fit_time"] for r in records if "fit_time" in r]
    L.append(f"- Total wall-clock time: {elapsed:.1f} s ({workers} workers)")
    if fit_t:
        parts = [f"fit {np.mean(fit_t):.2f} s"]
        for m in methods:
            ts = [r[f"{m}_time"] for r in fitted if f"{m}_time" in r]
            if ts:
                parts.append(f"{m} intervals {np.mean(ts):.2f} s")
        slowest = max(
            r.get("fit_time", 0.0) + sum(r.get(f"{m}_time", 0.0) for m in methods) for r in records
        )
        L.append(f"- Per study, mean wall-clock: {', '.join(parts)}; slowest study {slowest:.1f} s")
        cpu = [r["cpu_time"] for r in records if "cpu_time" in r]
        if cpu:
            L.append(
                f"- CPU time of the workers: {np.sum(cpu):.0f} s in all, {np.mean(cpu):.2f} s "
                "per study (less sensitive than wall-clock time to other jobs on the machine)"
            )
    if load is not None:
        L.append(
            f"- 1-minute load average at the start / end: {load[0]:.2f} / {load[1]:.2f} "
            f"(nproc {os.cpu_count()}); a load above the worker count means other jobs "
            "shared the cores and the wall-clock figures are inflated"
        )
    L.append("")
    return "\n".join(L)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=N_STUDIES, help="number of studies (200)")
    p.add_argument("--seed", type=int, default=BASE_SEED, help=f"base seed ({BASE_SEED})")
    p.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    p.add_argument("--no-write", action="store_true", help=f"do not write {DEFAULT_OUTPUT.name}")
    a = p.parse_args(argv)
    command = "python " + shlex.join([_script_path(), *argv])

    def progress(done, n):
        if done % 10 == 0 or done == n:
            print(f"  {done}/{n} studies, {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    code = code_state()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    records = run_studies(a.studies, a.seed, a.workers, METHODS, progress)
    elapsed = time.perf_counter() - t0
    load = (load0, os.getloadavg()[0])
    text = report(
        records,
        seed=a.seed,
        workers=a.workers,
        elapsed=elapsed,
        command=command,
        load=load,
        code=code,
    )
    print(text)
    if not a.no_write:
        DEFAULT_OUTPUT.write_text(text)
        print(f"wrote {DEFAULT_OUTPUT}", file=sys.stderr)
    return 0


def _script_path() -> str:
    try:
        return str(Path(sys.argv[0]).resolve().relative_to(Path.cwd()))
    except ValueError:
        return sys.argv[0]


if __name__ == "__main__":
    raise SystemExit(main())
