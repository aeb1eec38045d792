"""Time ``multilevel.fit`` against its peers in one run, and write the figures to BENCHMARKS.md.

Every tool fits the same model to the same data in the same environment (same machine, same
BLAS threads, same run). Python tools are timed in-process after import; lme4 is timed inside R
(so R's start-up and the CSV read are not counted). Each timing is the wall-clock time of the
whole fit call, model-matrix construction included (for us: ``multilevel.fit(formula, df,
reml=...)``), and a tool's figure is the median over its repetitions.

Warm-up: each tool's first call is timed too. When it is short (under ``--keep-first`` seconds)
it is thrown away as a warm-up and ``reps`` further calls are timed; when it is long, the
one-off costs are small beside it and it counts as the first repetition. A tool stops repeating
once its timings add up to ``--budget`` seconds (it always gets at least one).

Run ``python benchmarks/bench_fit.py --help`` for the options. This is a benchmark, not a test:
it asserts nothing and is not run by CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib
import importlib.metadata
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "src" / "multilevel" / "datasets" / "data"
DEFAULT_OUTPUT = REPO / "BENCHMARKS.md"

SEED_ROWS, SEED_GROUPS = 1_000_000, 10_000
QUICK_SEED_ROWS, QUICK_SEED_GROUPS = 100_000, 1_000
TOOLS = ("ours", "statsmodels", "mixedlm", "lme4")
LOAD_BEFORE = os.getloadavg()  # other work on the machine makes timings noisy; recorded


class OtherCpu:
    """CPU time used by processes other than this one and its children, from /proc/stat.

    On a 2-core machine a concurrent job skews timings; this measures how much there was."""

    def __init__(self):
        self.t0 = self._sample()

    @staticmethod
    def _sample():
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        ticks = [int(x) for x in fields]
        busy = sum(ticks[:3]) + sum(ticks[5:8])  # user nice system (idle iowait) irq softirq steal
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own

    def cores(self) -> float:
        """Average number of cores the others kept busy since construction (nan if unknown)."""
        t1 = self._sample()
        if self.t0 is None or t1 is None or t1[0] <= self.t0[0]:
            return math.nan
        other = (t1[1] - self.t0[1]) - (t1[2] - self.t0[2])
        return max(other, 0.0) / (t1[0] - self.t0[0])


BUSY = 0.1  # cores kept busy by other processes above which timings are flagged


def wait_for_idle(max_wait: float, window: float = 3.0) -> None:
    """Wait (at most max_wait s) until other processes use < BUSY cores for two windows."""
    deadline = time.perf_counter() + max_wait
    quiet = 0
    while time.perf_counter() < deadline:
        probe = OtherCpu()
        time.sleep(window)
        busy = probe.cores()
        if not math.isfinite(busy):
            return
        quiet = quiet + 1 if busy < BUSY else 0
        if quiet >= 2:
            return
    print(f"  (machine still busy after waiting {max_wait:g} s; going on)", flush=True)


# --------------------------------------------------------------------------------------------
# Models and data
# --------------------------------------------------------------------------------------------


@dataclass
class Model:
    key: str
    title: str
    formula: str  # lme4 syntax; used by us, mixedlm and lme4
    reml: bool
    target: float  # seconds, for our fit
    data: pd.DataFrame
    factors: list[str]  # grouping columns (read as factors in R)
    sm_fit: Callable[[pd.DataFrame], object] | None  # statsmodels equivalent, or None
    sm_skip_reason: str = ""  # why statsmodels is skipped by default
    notes: list[str] = field(default_factory=list)


def load_sleepstudy() -> pd.DataFrame:
    df = pd.read_csv(DATA_DIR / "sleepstudy.csv")
    df["Subject"] = df["Subject"].astype(str)
    df["Reaction"] = df["Reaction"].astype(float)
    df["Days"] = df["Days"].astype(float)
    return df


def load_insteval() -> pd.DataFrame:
    df = pd.read_csv(
        DATA_DIR / "insteval.csv.gz",
        usecols=["s", "d", "dept", "service", "y"],
        dtype={"s": str, "d": str, "dept": str},
    )
    df["service"] = df["service"].astype(float)
    df["y"] = df["y"].astype(float)
    return df


def simulate_seed(n_rows: int, n_groups: int, seed: int = 20240611) -> pd.DataFrame:
    """Students in schools, for ``y ~ x * u + (1 + x | school)``.

    School j has a school-level predictor u_j ~ N(0, 1) and
        alpha_j = a0 + b0 u_j + eta1_j,   beta_j = a1 + b1 u_j + eta2_j,
    with (eta1, eta2) ~ N(0, [[tau0², rho tau0 tau1], [rho tau0 tau1, tau1²]]). Student i in
    school j has x_i ~ N(0, 1) and y_i = alpha_j + beta_j x_i + sigma_y e_i, e_i ~ N(0, 1).
    Schools have equal sizes (± 1) and the rows are shuffled, so the data arrive unsorted.
    """
    a0, b0, a1, b1 = 1.0, 0.5, 0.3, -0.2
    tau0, tau1, rho, sigma_y = 0.8, 0.4, 0.3, 1.0
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n_groups)
    cov = np.array([[tau0**2, rho * tau0 * tau1], [rho * tau0 * tau1, tau1**2]])
    eta = rng.multivariate_normal(np.zeros(2), cov, size=n_groups)
    alpha = a0 + b0 * u + eta[:, 0]
    beta = a1 + b1 * u + eta[:, 1]
    school = rng.permutation(np.arange(n_rows) % n_groups)
    x = rng.normal(size=n_rows)
    y = alpha[school] + beta[school] * x + sigma_y * rng.normal(size=n_rows)
    return pd.DataFrame({"y": y, "x": x, "u": u[school], "school": school.astype(np.int64)})


def make_models(args: argparse.Namespace) -> list[Model]:
    models = []
    for key in args.models:
        if key == "sleepstudy":
            df = load_sleepstudy()
            models.append(
                Model(
                    key=key,
                    title="sleepstudy: Reaction ~ Days + (Days | Subject), REML",
                    formula="Reaction ~ Days + (Days | Subject)",
                    reml=True,
                    target=0.005,
                    data=df,
                    factors=["Subject"],
                    sm_fit=lambda d: _sm_fit(
                        "Reaction ~ Days", d, groups="Subject", re_formula="~Days", reml=True
                    ),
                )
            )
        elif key == "insteval":
            df = load_insteval()
            skip = (
                ""
                if args.statsmodels_crossed
                else "crossed random effects need one dense variance-component design in "
                "statsmodels (>300 s per fit); run with --statsmodels-crossed to include it"
            )
            models.append(
                Model(
                    key=key,
                    title="InstEval: y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept), ML",
                    formula="y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)",
                    reml=False,
                    target=2.0,
                    data=df,
                    factors=["s", "d", "dept"],
                    sm_fit=_sm_insteval,
                    sm_skip_reason=skip,
                )
            )
        elif key == "seed":
            n, g = args.seed_rows, args.seed_groups
            df = simulate_seed(n, g, seed=args.seed)
            models.append(
                Model(
                    key=key,
                    title=f"seed: y ~ x * u + (1 + x | school), REML, {n:,} rows, {g:,} schools",
                    formula="y ~ x * u + (1 + x | school)",
                    reml=True,
                    target=1.5,
                    data=df,
                    factors=["school"],
                    sm_fit=lambda d: _sm_fit(
                        "y ~ x * u", d, groups="school", re_formula="~x", reml=True
                    ),
                    notes=[
                        f"simulated with simulate_seed(n_rows={n}, n_groups={g}, "
                        f"seed={args.seed}); school is an int64 column of a pandas DataFrame"
                    ],
                )
            )
    return models


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    tool: str
    times: list[float] = field(default_factory=list)
    objective: float = math.nan
    fixef: dict[str, float] = field(default_factory=dict)
    status: str = "ok"  # "ok", or why there is no timing
    note: str = ""
    others: float = math.nan  # cores kept busy by other processes while this tool was timed

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else math.nan


def time_calls(fn: Callable[[], object], reps: int, budget: float, keep_first: float):
    """Return (timings, last result). See the module docstring for the warm-up rule."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times: list[float] = []
    if first >= keep_first:
        times.append(first)
    spent = first
    while len(times) < reps and spent < budget:
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        dt_ = time.perf_counter() - t0
        times.append(dt_)
        spent += dt_
    if not times:  # budget exhausted by a short warm-up (only with a tiny --budget)
        times.append(first)
    return times, out


def _sm_fit(formula, data, *, groups, re_formula, reml):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(formula, data, groups=groups, re_formula=re_formula).fit(reml=reml)


def _sm_insteval(data):
    import statsmodels.formula.api as smf

    vc = {"s": "0 + C(s)", "d": "0 + C(d)", "dept": "0 + C(dept)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.mixedlm(
            "y ~ 1 + service", data, groups=np.ones(len(data)), re_formula="0", vc_formula=vc
        )
        return model.fit(reml=False)


def tool_reps(tool: str, model: Model, args) -> int:
    slow = tool in ("statsmodels", "lme4") and model.key != "sleepstudy"
    return args.slow_reps if slow else args.reps


def run_ours(model: Model, args) -> Result:
    res = Result("ours")
    try:
        import multilevel

        fit = multilevel.fit
    except (ImportError, AttributeError) as exc:
        res.status = f"not available ({exc})"
        return res
    times, m = time_calls(
        lambda: fit(model.formula, model.data, reml=model.reml),
        args.reps,
        args.budget,
        args.keep_first,
    )
    res.times = times
    res.objective = float(m.objective)
    res.fixef = {str(k): float(v) for k, v in m.fixef.items()}
    return res


def run_statsmodels(model: Model, args) -> Result:
    res = Result("statsmodels")
    try:
        importlib.import_module("statsmodels.formula.api")
    except ImportError as exc:
        res.status = f"not available ({exc})"
        return res
    if model.sm_fit is None:
        res.status = "skipped (no equivalent model)"
        return res
    if model.sm_skip_reason:
        res.status = f"skipped: {model.sm_skip_reason}"
        return res
    times, r = time_calls(
        lambda: model.sm_fit(model.data),
        tool_reps("statsmodels", model, args),
        args.budget,
        args.keep_first,
    )
    res.times = times
    # statsmodels reports the (REML) log-likelihood; -2 llf is lme4's REML criterion / deviance.
    res.objective = -2.0 * float(r.llf)
    res.fixef = {
        "(Intercept)" if k == "Intercept" else str(k): float(v) for k, v in r.fe_params.items()
    }
    if not getattr(r, "converged", True):
        res.note = "statsmodels reports non-convergence"
    return res


def run_mixedlm(model: Model, args) -> Result:
    res = Result("mixedlm")
    try:
        mixedlm = importlib.import_module("mixedlm")
    except ImportError as exc:
        res.status = f"not available ({exc})"
        return res
    times, r = time_calls(
        lambda: mixedlm.lmer(model.formula, model.data, REML=model.reml),
        args.reps,
        args.budget,
        args.keep_first,
    )
    res.times = times
    # For REML fits mixedlm's `deviance` attribute is the REML criterion (as lme4's REMLcrit);
    # for ML fits it is the deviance.
    res.objective = float(r.deviance)
    res.fixef = {str(k): float(v) for k, v in r.fixef().items()}
    if not getattr(r, "converged", True):
        res.note = "mixedlm reports non-convergence"
    return res


R_TEMPLATE = r"""
suppressPackageStartupMessages(library(lme4))
d <- read.csv({csv}, stringsAsFactors = FALSE)
for (g in c({factors})) d[[g]] <- factor(d[[g]])
form <- as.formula({formula})
reml <- {reml}
reps <- {reps}
budget <- {budget}
keep_first <- {keep_first}
fitit <- function() lmer(form, data = d, REML = reml)
clock <- function() as.numeric(Sys.time())
invisible(gc())
t0 <- clock(); m <- fitit(); first <- clock() - t0
times <- c()
if (first >= keep_first) times <- c(times, first)
spent <- first
while (length(times) < reps && spent < budget) {{
  invisible(gc())
  t0 <- clock(); m <- fitit(); el <- clock() - t0
  times <- c(times, el); spent <- spent + el
}}
if (length(times) == 0) times <- first
for (t in times) cat(sprintf("TIME %.9f\n", t))
cat(sprintf("OBJ %.10f\n", -2 * as.numeric(logLik(m))))
fe <- fixef(m)
for (i in seq_along(fe)) cat(sprintf("FIXEF %s %.12g\n", names(fe)[i], fe[[i]]))
msgs <- m@optinfo$conv$lme4$messages
for (w in msgs) cat(sprintf("WARN %s\n", gsub("\n", " ", w)))
"""


def _r_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def r_info() -> dict[str, str] | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    code = (
        'cat(R.version.string, "\\n", sep="");'
        'v <- tryCatch(as.character(packageVersion("lme4")), error=function(e) "missing");'
        'cat(v, "\\n", sep="");'
        'cat(extSoftVersion()[["BLAS"]], "\\n", sep="")'
    )
    try:
        out = subprocess.run(
            [rscript, "-e", code], capture_output=True, text=True, timeout=120, check=True
        ).stdout.splitlines()
    except (subprocess.SubprocessError, OSError):
        return None
    if len(out) < 3 or out[1] == "missing":
        return None
    return {"R": out[0], "lme4": out[1], "BLAS": out[2] or "(R's internal BLAS)"}


def run_lme4(model: Model, args, rinfo) -> Result:
    res = Result("lme4")
    if rinfo is None:
        res.status = "not available (no Rscript on PATH, or lme4 not installed)"
        return res
    with tempfile.TemporaryDirectory(prefix="bench_lme4_") as tmp:
        csv = Path(tmp) / f"{model.key}.csv"
        model.data.to_csv(csv, index=False)
        script = Path(tmp) / "fit.R"
        script.write_text(
            R_TEMPLATE.format(
                csv=_r_str(str(csv)),
                factors=", ".join(_r_str(f) for f in model.factors),
                formula=_r_str(model.formula),
                reml="TRUE" if model.reml else "FALSE",
                reps=tool_reps("lme4", model, args),
                budget=args.budget,
                keep_first=args.keep_first,
            )
        )
        proc = subprocess.run(
            [shutil.which("Rscript"), "--vanilla", str(script)],
            capture_output=True,
            text=True,
            timeout=args.r_timeout,
        )
    if proc.returncode != 0:
        res.status = f"failed (Rscript exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
        return res
    warns = []
    for line in proc.stdout.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "TIME":
            res.times.append(float(rest))
        elif tag == "OBJ":
            res.objective = float(rest)
        elif tag == "FIXEF":
            name, _, value = rest.rpartition(" ")
            res.fixef[name] = float(value)
        elif tag == "WARN":
            warns.append(rest)
    if warns:
        res.note = "; ".join(warns)
    return res


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def fmt_time(t: float) -> str:
    if not math.isfinite(t):
        return "n/a"
    if t < 1.0:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.3f} s"


def max_fixef_diff(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest |difference| over the coefficients both have (names as each tool spells them)."""
    common = set(a) & set(b)
    if not common:  # e.g. statsmodels' "Intercept" against "(Intercept)": compare in order
        if len(a) != len(b):
            return math.nan
        return max(abs(x - y) for x, y in zip(a.values(), b.values(), strict=True))
    return max(abs(a[k] - b[k]) for k in common)


def table(model: Model, results: list[Result]) -> list[str]:
    ours = next((r for r in results if r.tool == "ours"), None)
    base = ours.median if ours is not None and ours.ok else math.nan
    lines = [
        "| tool | median | reps | ratio to ours | objective | objective − ours | max abs Δβ "
        "| others |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for r in results:
        if not r.ok:
            short, _, why = r.status.partition(" ")
            lines.append(f"| {r.tool} | {short.rstrip(':')} | | | | | | |")
            if why:
                notes.append(f"{r.tool}: {r.status}")
            continue
        ratio = r.median / base if math.isfinite(base) else math.nan
        dobj = r.objective - ours.objective if math.isfinite(base) else math.nan
        dbeta = max_fixef_diff(r.fixef, ours.fixef) if math.isfinite(base) else math.nan
        lines.append(
            f"| {r.tool} | {fmt_time(r.median)} | {len(r.times)} | "
            f"{ratio:.2f}× | {r.objective:.4f} | {dobj:+.2e} | {dbeta:.1e} | {r.others:.2f} |"
        )
        if r.note:
            notes.append(f"{r.tool}: {r.note}")
    if ours is not None and ours.ok:
        met = "met" if ours.median <= model.target else "NOT met"
        verdict = f"Target for ours: ≤ {fmt_time(model.target)} — {met} ({fmt_time(ours.median)})"
        if ours.median > model.target:
            verdict += f", {ours.median / model.target:.2f}× the target"
        notes.insert(0, verdict)
    out = lines + [""]
    out += [f"- {n}" for n in notes + model.notes]
    return out


def machine_info(rinfo) -> list[str]:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas = "unknown"
    try:
        from threadpoolctl import threadpool_info

        blas = "; ".join(
            f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')} kernel, "
            f"{p.get('num_threads')} threads)"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        )
    except ImportError:
        pass
    env = ", ".join(f"{k}={os.environ[k]}" if k in os.environ else f"{k} unset" for k in BLAS_ENV)
    commit = "unknown"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += " (with uncommitted changes under src/)"
    except (subprocess.SubprocessError, OSError):
        pass
    load = ", ".join(f"{x:.2f}" for x in LOAD_BEFORE)
    lines = [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"load average (1, 5, 15 min) before the run: {load}",
        f"- machine: {cpu}, nproc {nproc}, {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {version('scipy')}, pandas {pd.__version__}",
        f"- numpy BLAS: {blas}; {env}",
        f"- multilevel {version('multilevel')} at commit {commit}",
        f"- statsmodels {version('statsmodels')}, mixedlm {version('mixedlm')}",
    ]
    if rinfo is not None:
        lines.append(f"- {rinfo['R']}, lme4 {rinfo['lme4']}, R's BLAS: {rinfo['BLAS']}")
    else:
        lines.append("- R / lme4: not available")
    return lines


BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def command_line() -> str:
    """The command line, with the BLAS variables spelled out so it reproduces the environment."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    unset = [k for k in BLAS_ENV[:2] if k not in os.environ]
    prefix = ["env", *(f"-u {k}" for k in unset)] if unset else []
    prefix += [f"{k}={shlex.quote(os.environ[k])}" for k in BLAS_ENV if k in os.environ]
    argv = ["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])]
    return " ".join(prefix + argv)


MARK_START = "<!-- bench_fit: start (written by benchmarks/bench_fit.py; edits are overwritten) -->"
MARK_END = "<!-- bench_fit: end -->"


def merge_block(old: str | None, block: str) -> str:
    """Put our block between the markers in BENCHMARKS.md, keeping every other section.

    A file without the markers keeps its content below ours (other scripts' sections)."""
    if old is None or not old.strip():
        return f"# Benchmarks\n\n{block}\n"
    if MARK_START in old and MARK_END in old:
        head, _, rest = old.partition(MARK_START)
        _, _, tail = rest.partition(MARK_END)
        return head + block + tail
    title, _, body = old.partition("\n")
    if not title.startswith("# "):
        title, body = "# Benchmarks", old
    return f"{title}\n\n{block}\n\n{body.lstrip()}"


def write_markdown(path: Path, sections: list[tuple[Model, list[Result]]], args, rinfo) -> None:
    lines = [
        MARK_START,
        "## Fits: `benchmarks/bench_fit.py`",
        "",
        "Wall-clock time of one fit, median over repetitions, every tool timed in the same run "
        "on the same machine and data. This section is written by `benchmarks/bench_fit.py` "
        "(the rest of the file is left as it is) — do not edit it by hand; rerun it.",
        "",
        "Command:",
        "",
        "```",
        command_line(),
        "```",
        "",
        "Machine:",
        "",
        *machine_info(rinfo),
        "",
        "How it is measured: Python tools in-process after import, timing the whole fit call "
        "including the model-matrix construction (ours: `multilevel.fit(formula, df, "
        "reml=...)`; statsmodels: `smf.mixedlm(...).fit(...)`; mixedlm: `mixedlm.lmer(...)`); "
        "lme4 inside R on a data.frame already read (R start-up and CSV read not counted). "
        f"A short first call (< {args.keep_first:g} s) is a discarded warm-up; a tool stops "
        f"repeating after {args.budget:g} s. *ratio to ours* is the tool's median over ours "
        "(above 1: ours is faster). *objective* is the REML criterion for REML fits and the "
        "deviance (−2 log-likelihood) for ML fits, as each tool reports it (statsmodels: −2 "
        "llf); equal objectives mean all reached the same optimum. *max abs Δβ* is the "
        "largest difference from our fixed effects. *others* is the average number of cores "
        "that other processes kept busy while the tool was timed (/proc/stat less this "
        "process and its children): above 0.1 on this 2-core machine, the timing is suspect.",
        "",
    ]
    for model, results in sections:
        lines += [f"### {model.title}", "", *table(model, results), ""]
    lines.append(MARK_END)
    old = path.read_text() if path.exists() else None
    path.write_text(merge_block(old, "\n".join(lines)))


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models",
        nargs="+",
        choices=["sleepstudy", "insteval", "seed"],
        default=["sleepstudy", "insteval", "seed"],
        help="models to run (default: all three)",
    )
    p.add_argument(
        "--tools",
        nargs="+",
        choices=TOOLS,
        default=list(TOOLS),
        help="tools to run (default: all; the ones not installed are reported and skipped)",
    )
    p.add_argument("--quick", action="store_true", help="fewer repetitions and a smaller seed")
    p.add_argument("--reps", type=int, help="repetitions for fast fits (default 15; quick 3)")
    p.add_argument(
        "--slow-reps",
        type=int,
        help="repetitions for statsmodels and lme4 on the large models (default 3; quick 1)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="stop repeating a tool once its timings add up to this many seconds "
        "(default 120; quick 30)",
    )
    p.add_argument(
        "--keep-first",
        type=float,
        default=2.0,
        help="a first call at least this long counts as a repetition instead of a warm-up "
        "(default 2 s)",
    )
    p.add_argument("--seed-rows", type=int, help=f"students (default {SEED_ROWS:,})")
    p.add_argument("--seed-groups", type=int, help=f"schools (default {SEED_GROUPS:,})")
    p.add_argument("--seed", type=int, default=20240611, help="RNG seed for the simulation")
    p.add_argument(
        "--statsmodels-crossed",
        action="store_true",
        help="also run statsmodels on InstEval (crossed effects; takes > 300 s per fit)",
    )
    p.add_argument(
        "--r-timeout", type=float, default=3600, help="seconds before an R run is abandoned"
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before timing each tool, wait up to this long for other processes to go quiet",
    )
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    if args.reps is None:
        args.reps = 3 if q else 15
    if args.slow_reps is None:
        args.slow_reps = 1 if q else 3
    if args.budget is None:
        args.budget = 30.0 if q else 120.0
    if args.seed_rows is None:
        args.seed_rows = QUICK_SEED_ROWS if q else SEED_ROWS
    if args.seed_groups is None:
        args.seed_groups = QUICK_SEED_GROUPS if q else SEED_GROUPS
    if args.reps < 1 or args.slow_reps < 1:
        p.error("--reps and --slow-reps must be at least 1")
    if not 0 < args.seed_groups <= args.seed_rows:
        p.error("need 0 < --seed-groups <= --seed-rows")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rinfo = r_info() if "lme4" in args.tools else None
    print("\n".join(machine_info(rinfo)), flush=True)
    sections = []
    for model in make_models(args):
        print(f"\n== {model.title} ==", flush=True)
        results = []
        for tool in args.tools:
            skipped = tool == "statsmodels" and model.sm_skip_reason
            if args.wait_idle > 0 and not skipped:
                wait_for_idle(args.wait_idle)
            print(f"  {tool} ...", end=" ", flush=True)
            other = OtherCpu()
            t0 = time.perf_counter()
            try:
                if tool == "ours":
                    r = run_ours(model, args)
                elif tool == "statsmodels":
                    r = run_statsmodels(model, args)
                elif tool == "mixedlm":
                    r = run_mixedlm(model, args)
                else:
                    r = run_lme4(model, args, rinfo)
            except Exception as exc:  # a peer failing must not stop the others
                r = Result(tool, status=f"failed: {type(exc).__name__}: {exc}"[:300])
            wall = time.perf_counter() - t0
            r.others = other.cores()
            if r.ok:
                print(
                    f"median {fmt_time(r.median)} over {len(r.times)} ({wall:.1f} s; "
                    f"other processes: {r.others:.2f} cores)",
                    flush=True,
                )
            else:
                print(r.status, flush=True)
            results.append(r)
        busy = [r.tool for r in results if r.ok and r.others > BUSY]
        if busy:
            model.notes.append(
                f"other processes were busy while {', '.join(busy)} ran (see *others*): "
                "those timings are likely skewed"
            )
        print()
        print("\n".join(table(model, results)), flush=True)
        sections.append((model, results))
    if not args.no_write:
        write_markdown(args.output, sections, args, rinfo)
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
