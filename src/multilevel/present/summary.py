"""Text summary of a linear mixed fit, with the content of lme4's ``print(summary(fit))``."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import MultilevelError
from ..inference.ftests import fixef_tests
from .format import fmt, labels, table


def _satterthwaite(fit):
    """Satterthwaite t tests for the summary, or None when they cannot be computed (the
    table then shows t values only, as lme4 does)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fixef_tests(fit, ddf="satterthwaite")
    except (MultilevelError, np.linalg.LinAlgError, ValueError, FloatingPointError, OverflowError):
        return None


def pvalue(p: float) -> str:
    if not np.isfinite(p):
        return "NA"
    return "<2e-16" if p < 2e-16 else f"{p:.3g}"


def summary_text(fit) -> str:
    """lme4-style summary: criterion, scaled residuals, random effects, fixed effects with
    t values, their correlations, and plain-word notes on dropped rows and singularity."""
    lines = [
        f"Linear mixed model fit by {'REML' if fit.reml else 'maximum likelihood'} ['multilevel']",
        f"Formula: {fit.formula}",
    ]
    if fit.data_name:
        lines.append(f"   Data: {fit.data_name}")
    if fit.weights:
        lines.append(f"Weights: {fit.weights}")
    if fit.schema.offset:
        lines.append(f" Offset: {fit.schema.offset}")
    if fit.n_dropped:
        rows = "row" if fit.n_dropped == 1 else "rows"
        lines.append(f"   {fit.n_dropped} {rows} with missing values dropped")
    zero = fit.schema.n_zero_weight
    if zero:
        lines.append(f"   {zero} {'row' if zero == 1 else 'rows'} with weight 0 dropped")
    lines.append("")
    if fit.reml:
        lines.append(f"REML criterion at convergence: {fit.objective:.4f}")
    else:
        lines.extend(
            table(
                [
                    [
                        f"{fit.aic:.1f}",
                        f"{fit.bic:.1f}",
                        f"{fit.loglik:.1f}",
                        f"{fit.objective:.1f}",
                        f"{fit.nobs - fit.npar}",
                    ]
                ],
                ["AIC", "BIC", "logLik", "deviance", "df.resid"],
                align_left=0,
            )
        )
    lines.append("")
    r = fit.pearson_residuals / fit.sigma
    q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1])
    lines.append("Scaled residuals:")
    lines.extend(
        table([[f"{v:.4f}" for v in q]], ["Min", "1Q", "Median", "3Q", "Max"], align_left=0)
    )
    lines.append("")
    lines.append("Random effects:")
    vc = fit.varcorr
    rows = []
    for g, sub in vc.groupby("group", sort=False):
        var = sub[sub.term2.isna()]
        cov = sub[sub.term2.notna()]
        names = list(var.term1) if g != "Residual" else [""]
        cors = {(c.term1, c.term2): c.sdcor for c in cov.itertuples()}
        for i, v in enumerate(var.itertuples()):
            corr_cells = []
            for j in range(i):
                c = cors.get((names[j], names[i]), np.nan)
                corr_cells.append("" if pd.isna(c) else f"{c:.2f}")
            rows.append(
                [g if i == 0 else "", names[i], fmt(v.vcov), fmt(v.sdcor), " ".join(corr_cells)]
            )
    lines.extend(table(rows, ["Groups", "Name", "Variance", "Std.Dev.", "Corr"], align_left=2))
    groups = ", ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
    lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    lines.append("")
    fe = fit.fixef
    se = fit.fixef_se
    tests = _satterthwaite(fit)
    if tests is None:
        lines.append("Fixed effects:")
        rows = [
            [name, f"{fe[name]:.6g}", f"{se[name]:.6g}", f"{fe[name] / se[name]:.3f}"]
            for name in fe.index
        ]
        lines.extend(table(rows, ["", "Estimate", "Std. Error", "t value"]))
    else:
        lines.append("Fixed effects (Satterthwaite's degrees of freedom, as lmerTest):")
        rows = [
            [
                name,
                f"{fe[name]:.6g}",
                f"{se[name]:.6g}",
                f"{tests.loc[name, 'df']:.2f}",
                f"{fe[name] / se[name]:.3f}",
                pvalue(tests.loc[name, "Pr(>|t|)"]),
            ]
            for name in fe.index
        ]
        lines.extend(table(rows, ["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]))
    if len(fe) > 12:
        lines.append("")
        lines.append(
            f"Correlation matrix not shown, as p = {len(fe)} > 12 (it is fit.vcov, scaled)"
        )
    elif len(fe) > 1:
        lines.append("")
        lines.append("Correlation of Fixed Effects:")
        V = fit.vcov.to_numpy()
        d = np.sqrt(np.diag(V))
        C = V / np.outer(d, d)
        names = list(fe.index)
        rows = []
        for i in range(1, len(names)):
            rows.append([names[i]] + [f"{C[i, j]:.3f}" for j in range(i)])
        lines.extend(table(rows, [""] + labels(names[:-1], 6)))
    notes = []
    if fit.dropped_columns:
        notes.append(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(fit.dropped_columns)} column(s): {', '.join(fit.dropped_columns)}"
        )
    notes.extend(fit.aliased_terms)
    if fit.scale_note:
        notes.append(fit.scale_note)
    if fit.singular:
        notes.append(
            "boundary (singular) fit: " + "; ".join(fit.singular_terms) + ". " + _singular_hint(fit)
        )
    if not fit.converged:
        notes.append(f"the optimiser did not converge: {fit.optim.message}")
    if notes:
        lines.append("")
        lines.extend(f"Note: {n}" for n in notes)
    return "\n".join(lines)


def _singular_hint(fit) -> str:
    """What a boundary estimate usually means, in plain words."""
    hints = []
    if any("variance of" in m for m in fit.singular_terms):
        hints.append(
            "A variance at zero means the groups differ no more than the residual variation "
            "alone would make them (or there are too few groups to tell); the estimates are "
            "those of the model without that effect, which can be dropped"
        )
    if any("correlation of" in m or "is singular" in m for m in fit.singular_terms):
        hints.append(
            "A correlation at +1 or -1 (or a singular covariance matrix) means the data "
            "cannot separate the variation of the effects (often too few groups for a random "
            "slope); an uncorrelated term such as (1 + x || g), or fewer varying effects, "
            "is usually as good a fit"
        )
    return ". ".join(hints) + "."
