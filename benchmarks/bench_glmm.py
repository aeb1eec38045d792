"""Time our GLMM fits against their peers in one run, and write the figures to BENCHMARKS.md.

The models are the GLMM references of the conformance suite (``../shared/reference``): cbpp
(binomial, Laplace and nAGQ = 25), VerbAgg (binomial, crossed), grouseticks (Poisson, crossed)
and owls (Poisson with an offset). Every tool fits the same model to the same data in the same
run: ours (``multilevel.fit(formula, df, family=..., nagq=...)``), mixedlm
(``mixedlm.glmer``), statsmodels' variational Bayes (``BinomialBayesMixedGLM`` /
``PoissonBayesMixedGLM`` with ``fit_vb``, where it can express the model) and R's lme4
(``glmer``, default control, timed inside R on a data.frame already read).

The timing rules are those of ``bench_fit.py``, whose helpers this script imports: each timing
is the wall-clock time of the whole fit call, model-matrix construction included; a first call
shorter than ``--keep-first`` seconds is a discarded warm-up; a tool stops repeating once its
timings add up to ``--budget`` seconds (it always gets at least one); a tool's figure is the
median. The section of BENCHMARKS.md between the ``bench_glmm`` markers is rewritten; the rest
of the file is left as it is.

Objectives: the full -2 log-likelihood (Laplace, or adaptive Gauss-Hermite quadrature) at each
tool's optimum. Ours: ``fit.objective``; mixedlm: ``get_deviance()`` (= -2 ``logLik()``, its
``deviance`` attribute leaves out the saturated log-likelihood); lme4: ``-2 * logLik(fit)``,
to which, for nAGQ > 1, the saturated term ``family$aic(y, n, mu = y, wt)`` is added, because
lme4's quadrature deviance and hence its ``logLik`` leave it out (for nAGQ = 1 ``logLik`` is
already the full one). statsmodels maximises a variational bound, not the likelihood: no
comparable objective ("n/a"); its fixed effects are posterior means.

Run ``python benchmarks/bench_glmm.py --help`` for the options. This is a benchmark, not a
test: it asserts nothing and is not run by CI.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the shared timing and reporting helpers
    sys.path.insert(0, str(HERE))

from bench_fit import (  # noqa: E402
    BUSY,
    OtherCpu,
    Result,
    _r_str,
    command_line,
    fmt_time,
    machine_info,
    r_info,
    time_calls,
    wait_for_idle,
)

REPO = HERE.parent
DATA_DIR = HERE / "data"  # copies of ../shared/data (not bundled with the package)
DEFAULT_OUTPUT = REPO / "BENCHMARKS.md"
TOOLS = ("ours", "statsmodels", "mixedlm", "lme4")
MODELS = ("cbpp", "cbpp_agq", "verbagg", "grouseticks", "owls")

# Issue 10: every GLMM reference at least this many times faster than the peer, at the same or
# a better objective (within OBJ_RTOL relative, the conformance suite's tolerance).
SPEEDUP_TARGETS = {"lme4": 3.0, "mixedlm": 2.0}
OBJ_RTOL = 1e-6


# --------------------------------------------------------------------------------------------
# Models and data
# --------------------------------------------------------------------------------------------


@dataclass
class GlmmModel:
    key: str
    title: str
    formula: str  # lme4 syntax; used by us and lme4
    family: str  # "binomial" or "poisson"
    nagq: int
    data: pd.DataFrame
    r_factors: list[str]  # columns read as factors in R (grouping columns, a factor response)
    ml_formula: str  # the same model in mixedlm's syntax (no cbind(), no offset())
    ml_kwargs: dict[str, str] = field(default_factory=dict)  # weights=, offset= for mixedlm
    sm_fit: Callable[[pd.DataFrame], object] | None = None  # statsmodels VB, or None
    sm_skip_reason: str = ""
    notes: list[str] = field(default_factory=list)


def _read(name: str, groups: list[str]) -> pd.DataFrame:
    path = DATA_DIR / f"{name}.csv"
    if not path.exists():
        path = DATA_DIR / f"{name}.csv.gz"
    return pd.read_csv(path, dtype={g: str for g in groups})


def _sm_vb(family: str, formula: str, vc: dict[str, str]) -> Callable[[pd.DataFrame], object]:
    def fit(data: pd.DataFrame):
        from statsmodels.genmod import bayes_mixed_glm as bmg

        cls = bmg.BinomialBayesMixedGLM if family == "binomial" else bmg.PoissonBayesMixedGLM
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = cls.from_formula(formula, vc, data).fit_vb()
        r.bench_warnings = sorted({str(w.message) for w in caught})
        return r

    return fit


def make_models(keys) -> list[GlmmModel]:
    models = []
    for key in keys:
        if key in ("cbpp", "cbpp_agq"):
            df = _read("cbpp", ["herd"])
            df["prop"] = df["incidence"] / df["size"]  # mixedlm's form of a binomial count
            nagq = 25 if key == "cbpp_agq" else 1
            method = "adaptive Gauss-Hermite, nAGQ = 25" if nagq > 1 else "Laplace"
            models.append(
                GlmmModel(
                    key=key,
                    title="cbpp: cbind(incidence, size - incidence) ~ period + (1 | herd), "
                    f"binomial, {method}",
                    formula="cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    family="binomial",
                    nagq=nagq,
                    data=df,
                    r_factors=["herd"],
                    ml_formula="prop ~ period + (1 | herd)",
                    ml_kwargs={"weights": "size"},
                    sm_skip_reason=(
                        "variational Bayes, no quadrature"
                        if nagq > 1
                        else "BinomialBayesMixedGLM takes 0/1 responses only, not "
                        "cbind(successes, failures) counts"
                    ),
                    notes=[
                        "period is numeric, as in the reference data (one slope); mixedlm "
                        "fits prop = incidence / size with weights = size"
                    ],
                )
            )
        elif key == "verbagg":
            df = _read("verbagg", ["id", "item"])
            df["r2_01"] = (df["r2"] == "Y").astype(float)  # statsmodels wants 0/1
            models.append(
                GlmmModel(
                    key=key,
                    title="VerbAgg: r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), "
                    "binomial, Laplace",
                    formula="r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                    family="binomial",
                    nagq=1,
                    data=df,
                    r_factors=["id", "item", "r2"],
                    ml_formula="r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                    sm_fit=_sm_vb(
                        "binomial",
                        "r2_01 ~ Anger + Gender + btype + situ",
                        {"id": "0 + C(id)", "item": "0 + C(item)"},
                    ),
                    notes=["statsmodels fits r2_01 = (r2 == 'Y'), the others the N/Y factor r2"],
                )
            )
        elif key == "grouseticks":
            df = _read("grouseticks", ["BROOD", "LOCATION"])
            models.append(
                GlmmModel(
                    key=key,
                    title="grouseticks: TICKS ~ YEAR + HEIGHT_z + (1 | BROOD) + (1 | LOCATION), "
                    "Poisson, Laplace",
                    formula="TICKS ~ YEAR + HEIGHT_z + (1 | BROOD) + (1 | LOCATION)",
                    family="poisson",
                    nagq=1,
                    data=df,
                    r_factors=["BROOD", "LOCATION"],
                    ml_formula="TICKS ~ YEAR + HEIGHT_z + (1 | BROOD) + (1 | LOCATION)",
                    sm_fit=_sm_vb(
                        "poisson",
                        "TICKS ~ YEAR + HEIGHT_z",
                        {"BROOD": "0 + C(BROOD)", "LOCATION": "0 + C(LOCATION)"},
                    ),
                )
            )
        elif key == "owls":
            df = _read("owls", ["Nest"])
            models.append(
                GlmmModel(
                    key=key,
                    title="owls: SiblingNegotiation ~ FoodTreatment * SexParent + "
                    "offset(logBroodSize) + (1 | Nest), Poisson, Laplace",
                    formula="SiblingNegotiation ~ FoodTreatment * SexParent + "
                    "offset(logBroodSize) + (1 | Nest)",
                    family="poisson",
                    nagq=1,
                    data=df,
                    r_factors=["Nest"],
                    ml_formula="SiblingNegotiation ~ FoodTreatment * SexParent + (1 | Nest)",
                    ml_kwargs={"offset": "logBroodSize"},
                    sm_skip_reason="PoissonBayesMixedGLM has no offset",
                    notes=["mixedlm takes the offset as offset='logBroodSize'"],
                )
            )
    return models


# --------------------------------------------------------------------------------------------
# The tools
# --------------------------------------------------------------------------------------------


def tool_reps(tool: str, model: GlmmModel, args) -> int:
    return args.slow_reps if tool == "lme4" and model.key == "verbagg" else args.reps


def run_ours(model: GlmmModel, args) -> Result:
    res = Result("ours")
    try:
        import multilevel

        fit = multilevel.fit
    except (ImportError, AttributeError) as exc:
        res.status = f"not available ({exc})"
        return res
    times, m = time_calls(
        lambda: fit(model.formula, model.data, family=model.family, nagq=model.nagq),
        args.reps,
        args.budget,
        args.keep_first,
    )
    res.times = times
    res.objective = float(m.objective)
    res.fixef = {str(k): float(v) for k, v in m.fixef.items()}
    if not getattr(m, "converged", True):
        res.note = "ours reports non-convergence"
    return res


def run_mixedlm(model: GlmmModel, args) -> Result:
    res = Result("mixedlm")
    try:
        mixedlm = importlib.import_module("mixedlm")
        families = importlib.import_module("mixedlm.families")
    except ImportError as exc:
        res.status = f"not available ({exc})"
        return res
    fam = families.Binomial() if model.family == "binomial" else families.Poisson()

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mixedlm.glmer(
                model.ml_formula, model.data, family=fam, nAGQ=model.nagq, **model.ml_kwargs
            )

    times, r = time_calls(call, args.reps, args.budget, args.keep_first)
    res.times = times
    res.objective = float(r.get_deviance())  # -2 logLik, the saturated term included
    res.fixef = {str(k): float(v) for k, v in r.fixef().items()}
    if not getattr(r, "converged", True):
        res.note = f"mixedlm reports non-convergence ({r.message})"
    return res


def run_statsmodels(model: GlmmModel, args) -> Result:
    res = Result("statsmodels")
    try:
        importlib.import_module("statsmodels.genmod.bayes_mixed_glm")
    except ImportError as exc:
        res.status = f"not available ({exc})"
        return res
    if model.sm_fit is None:
        res.status = f"skipped: {model.sm_skip_reason or 'no equivalent model'}"
        return res
    times, r = time_calls(lambda: model.sm_fit(model.data), args.reps, args.budget, args.keep_first)
    res.times = times
    res.objective = math.nan  # a variational bound, not the likelihood: not comparable
    res.fixef = {str(k): float(v) for k, v in zip(r.model.fep_names, r.fe_mean, strict=True)}
    if r.bench_warnings:
        res.note = "; ".join(r.bench_warnings)
    return res


R_TEMPLATE = r"""
suppressPackageStartupMessages(library(lme4))
d <- read.csv({csv}, stringsAsFactors = FALSE)
for (g in c({factors})) d[[g]] <- factor(d[[g]])
form <- as.formula({formula})
fam <- {family}()
nagq <- {nagq}
reps <- {reps}
budget <- {budget}
keep_first <- {keep_first}
fitit <- function() glmer(form, data = d, family = fam, nAGQ = nagq)
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
ll2 <- -2 * as.numeric(logLik(m))
# For nAGQ > 1 lme4's deviance, hence logLik, leaves out the saturated log-likelihood:
# add it back (-2 log L_sat = family$aic at mu = y) to get the full -2 log L.
r <- m@resp
sat <- if (nagq > 1) r$family$aic(r$y, r$n, r$y, r$weights, 0) else 0
cat(sprintf("OBJ %.10f\n", ll2 + sat))
cat(sprintf("RAW %.10f\n", ll2))
fe <- fixef(m)
for (i in seq_along(fe)) cat(sprintf("FIXEF %s %.12g\n", names(fe)[i], fe[[i]]))
msgs <- m@optinfo$conv$lme4$messages
for (w in msgs) cat(sprintf("WARN %s\n", gsub("\n", " ", w)))
"""


def run_lme4(model: GlmmModel, args, rinfo) -> Result:
    res = Result("lme4")
    if rinfo is None:
        res.status = "not available (no Rscript on PATH, or lme4 not installed)"
        return res
    with tempfile.TemporaryDirectory(prefix="bench_glmm_lme4_") as tmp:
        csv = Path(tmp) / f"{model.key}.csv"
        model.data.to_csv(csv, index=False)
        script = Path(tmp) / "fit.R"
        script.write_text(
            R_TEMPLATE.format(
                csv=_r_str(str(csv)),
                factors=", ".join(_r_str(f) for f in model.r_factors),
                formula=_r_str(model.formula),
                family=model.family,
                nagq=model.nagq,
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
    raw = math.nan
    for line in proc.stdout.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "TIME":
            res.times.append(float(rest))
        elif tag == "OBJ":
            res.objective = float(rest)
        elif tag == "RAW":
            raw = float(rest)
        elif tag == "FIXEF":
            name, _, value = rest.rpartition(" ")
            res.fixef[name] = float(value)
        elif tag == "WARN":
            warns.append(rest)
    if model.nagq > 1:
        warns.append(
            f"objective = -2 logLik ({raw:.4f}) + the saturated term "
            f"({res.objective - raw:.4f}), which lme4's nAGQ > 1 logLik leaves out"
        )
    res.note = "; ".join(warns)
    return res


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def norm_name(name: str) -> str:
    """'YEAR[T.Y96]' -> 'YEARY96', 'Intercept' -> '(Intercept)': lme4's coefficient names."""
    name = re.sub(r"C\(([^),]+)[^)]*\)", r"\1", name)
    name = name.replace("[T.", "").replace("]", "").replace(" ", "")
    return "(Intercept)" if name == "Intercept" else name


def fixef_diff(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest |difference| between two sets of fixed effects: by name where the normalised
    names agree (statsmodels orders the columns its own way), otherwise in column order
    (mixedlm names factor columns by level number, e.g. YEAR.1)."""
    na = {norm_name(k): v for k, v in a.items()}
    nb = {norm_name(k): v for k, v in b.items()}
    if set(na) == set(nb):
        return max(abs(na[k] - nb[k]) for k in na)
    if len(a) != len(b):
        return math.nan
    return max(abs(x - y) for x, y in zip(a.values(), b.values(), strict=True))


def _ratio(r: Result, ours: Result | None) -> float:
    if ours is None or not ours.ok or not r.ok:
        return math.nan
    return r.median / ours.median


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if math.isfinite(x) else "n/a"


def target_checks(results: list[Result]) -> list[tuple[str, float, bool | None, bool | None]]:
    """(peer, peer median / ours, speed target met, objective the same or better) per peer of
    SPEEDUP_TARGETS that ran; None where it cannot be judged."""
    ours = next((r for r in results if r.tool == "ours"), None)
    out = []
    for r in results:
        if r.tool not in SPEEDUP_TARGETS or not r.ok:
            continue
        ratio = _ratio(r, ours)
        speed = ratio >= SPEEDUP_TARGETS[r.tool] if math.isfinite(ratio) else None
        obj = None
        if ours is not None and ours.ok and math.isfinite(r.objective):
            obj = ours.objective <= r.objective + OBJ_RTOL * max(1.0, abs(r.objective))
        out.append((r.tool, ratio, speed, obj))
    return out


def table(model: GlmmModel, results: list[Result]) -> list[str]:
    ours = next((r for r in results if r.tool == "ours"), None)
    have_ours = ours is not None and ours.ok
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
        ratio = _ratio(r, ours)
        dobj = r.objective - ours.objective if have_ours else math.nan
        dbeta = fixef_diff(r.fixef, ours.fixef) if have_ours else math.nan
        lines.append(
            f"| {r.tool} | {fmt_time(r.median)} | {len(r.times)} | {_fmt(ratio, '.2f')}× | "
            f"{_fmt(r.objective, '.4f')} | {_fmt(dobj, '+.2e')} | {_fmt(dbeta, '.1e')} | "
            f"{r.others:.2f} |"
        )
        if r.note:
            notes.append(f"{r.tool}: {r.note}")
    verdicts = []
    for peer, ratio, speed, obj in target_checks(results):
        want = SPEEDUP_TARGETS[peer]
        s = "n/a" if speed is None else ("met" if speed else "NOT met")
        o = "n/a" if obj is None else ("same or better" if obj else "WORSE")
        verdicts.append(
            f"≥ {want:g}× faster than {peer}: {s} ({_fmt(ratio, '.2f')}×), objective {o}"
        )
    if verdicts:
        notes.insert(0, "Targets for ours: " + "; ".join(verdicts))
    return lines + [""] + [f"- {n}" for n in notes + model.notes]


def summary(sections: list[tuple[GlmmModel, list[Result]]]) -> list[str]:
    lines = [
        "| model | ours | lme4 / ours (target ≥ 3) | mixedlm / ours (target ≥ 2) | objective |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for model, results in sections:
        ours = next((r for r in results if r.tool == "ours"), None)
        checks = {peer: (ratio, speed, obj) for peer, ratio, speed, obj in target_checks(results)}
        cells = []
        for peer in ("lme4", "mixedlm"):
            if peer not in checks:
                cells.append("not run")
                continue
            ratio, speed, _ = checks[peer]
            mark = "" if speed is None else (" met" if speed else " **not met**")
            cells.append(f"{_fmt(ratio, '.2f')}×{mark}")
        objs = [obj for _, _, obj in checks.values() if obj is not None]
        verdict = "n/a" if not objs else ("same or better" if all(objs) else "**worse**")
        when = fmt_time(ours.median) if ours is not None and ours.ok else "failed"
        name = model.title.split(":", 1)[0] + (f", nAGQ = {model.nagq}" if model.nagq > 1 else "")
        lines.append(f"| {name} | {when} | {cells[0]} | {cells[1]} | {verdict} |")
    return lines


MARK_START = (
    "<!-- bench_glmm: start (written by benchmarks/bench_glmm.py; edits are overwritten) -->"
)
MARK_END = "<!-- bench_glmm: end -->"
BENCH_FIT_END = "<!-- bench_fit: end -->"


def merge_block(old: str | None, block: str) -> str:
    """Put our block between our markers; the first time, right after bench_fit's section (or
    at the end). Every other section is kept as it is."""
    if old is None or not old.strip():
        return f"# Benchmarks\n\n{block}\n"
    if MARK_START in old and MARK_END in old:
        head, _, rest = old.partition(MARK_START)
        _, _, tail = rest.partition(MARK_END)
        return head + block + tail
    if BENCH_FIT_END in old:
        head, _, tail = old.partition(BENCH_FIT_END)
        return f"{head}{BENCH_FIT_END}\n\n{block}\n{tail}"
    return f"{old.rstrip()}\n\n{block}\n"


def write_markdown(path: Path, sections, args, info: list[str]) -> None:
    lines = [
        MARK_START,
        "## GLMM fits: `benchmarks/bench_glmm.py`",
        "",
        "Wall-clock time of one fit of each GLMM reference model of the conformance suite, "
        "median over repetitions, every tool timed in the same run on the same machine and "
        "data (copies in `benchmarks/data/`). This section is written by "
        "`benchmarks/bench_glmm.py` (the rest of the file is left as it is) — do not edit it "
        "by hand; rerun it.",
        "",
        "Command:",
        "",
        "```",
        command_line(),
        "```",
        "",
        "Machine:",
        "",
        *info,
        "",
        "How it is measured, as in `bench_fit.py`: Python tools in-process after import, timing "
        "the whole fit call including the model-matrix construction (ours: "
        "`multilevel.fit(formula, df, family=..., nagq=...)`; mixedlm: `mixedlm.glmer(formula, "
        "df, family=Binomial()/Poisson(), nAGQ=...)`; statsmodels: "
        "`BinomialBayesMixedGLM/PoissonBayesMixedGLM.from_formula(...).fit_vb()`, crossed "
        "intercepts as `vc_formulas`); lme4's `glmer(..., nAGQ=)` with default control inside "
        "R on a data.frame already read (R start-up and CSV read not counted). A short first "
        f"call (< {args.keep_first:g} s) is a discarded warm-up; a tool stops repeating after "
        f"{args.budget:g} s (at most {args.reps} repetitions; lme4 on VerbAgg, a slow fit, at "
        f"most {args.slow_reps}). *ratio to ours* is the tool's median over ours (above 1: "
        "ours is faster). *objective* is the full −2 log-likelihood (Laplace approximation, "
        "or adaptive Gauss-Hermite quadrature for nAGQ > 1) at the tool's optimum: ours "
        "`fit.objective`; mixedlm `get_deviance()`; lme4 `-2 * logLik(fit)`, which for "
        "nAGQ > 1 leaves out the saturated log-likelihood, so there the benchmark adds "
        "`family$aic(y, n, mu = y, wt)` (= −2 log L of the saturated model) back, making it "
        "the same full −2 log L (the raw value is in the notes). statsmodels fits by "
        "variational Bayes (it maximises a bound, not the likelihood): its objective is n/a "
        "and its Δβ compares posterior means. *max abs Δβ* is the largest difference from our "
        "fixed effects (matched by name, or in column order where a tool names factor "
        "columns its own way). *others* is the average number of cores that other processes "
        "kept busy while the tool was timed (/proc/stat less this process and its children): "
        "above 0.1 on this 2-core machine, the timing is suspect.",
        "",
        "Targets (issue 10): on every GLMM reference, ours at least 3× faster than lme4's "
        "glmer and at least 2× faster than mixedlm, at the same or a better objective "
        f"(ours ≤ the peer's + {OBJ_RTOL:g} relative).",
        "",
        *summary(sections),
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
        choices=MODELS,
        default=list(MODELS),
        help="models to run (default: all; cbpp_agq is cbpp with nAGQ = 25)",
    )
    p.add_argument(
        "--tools",
        nargs="+",
        choices=TOOLS,
        default=list(TOOLS),
        help="tools to run (default: all; the ones not installed are reported and skipped)",
    )
    p.add_argument("--quick", action="store_true", help="fewer repetitions, a smaller budget")
    p.add_argument("--reps", type=int, help="repetitions (default 15; quick 3)")
    p.add_argument(
        "--slow-reps", type=int, help="repetitions for lme4 on VerbAgg (default 3; quick 1)"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="stop repeating a tool once its timings add up to this many seconds "
        "(default 60; quick 15)",
    )
    p.add_argument(
        "--keep-first",
        type=float,
        default=2.0,
        help="a first call at least this long counts as a repetition instead of a warm-up "
        "(default 2 s)",
    )
    p.add_argument(
        "--r-timeout", type=float, default=1800, help="seconds before an R run is abandoned"
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
        args.budget = 15.0 if q else 60.0
    if args.reps < 1 or args.slow_reps < 1:
        p.error("--reps and --slow-reps must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rinfo = r_info() if "lme4" in args.tools else None
    info = machine_info(rinfo)  # at the start: the date and commit of the code measured
    print("\n".join(info), flush=True)
    sections = []
    for model in make_models(args.models):
        print(f"\n== {model.title} ==", flush=True)
        results = []
        for tool in args.tools:
            skipped = tool == "statsmodels" and model.sm_fit is None
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
            except Exception as exc:  # a tool failing (ours included) must not stop the others
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
    print()
    print("\n".join(summary(sections)), flush=True)
    if not args.no_write:
        write_markdown(args.output, sections, args, info)
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
