"""Text summary of a generalized linear mixed fit, with the content of lme4's
``print(summary(glmer_fit))``: z tests of the fixed effects (the dispersion is known)."""

from __future__ import annotations

import numpy as np

from ..inference.distributions import t_sf2
from .format import fmt, labels, table
from .summary import pvalue


def glmm_summary_text(fit) -> str:
    """lme4-style summary of a binomial or Poisson mixed model."""
    how = (
        "Laplace Approximation"
        if fit.nagq == 1
        else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {fit.nagq}"
    )
    lines = [
        f"Generalized linear mixed model fit by maximum likelihood ({how}) ['multilevel']",
        f" Family: {fit.family}  ( {fit.link} )",
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
    lines.append("")
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
            ],  # fmt: skip
            ["AIC", "BIC", "logLik", "deviance", "df.resid"],
            align_left=0,
        )
    )
    lines.append("")
    q = np.quantile(fit.pearson_residuals, [0, 0.25, 0.5, 0.75, 1])
    lines.append("Scaled residuals:")
    lines.extend(table([[f"{v:.4f}" for v in q]], ["Min", "1Q", "Median", "3Q", "Max"], 0))
    lines.append("")
    lines.append("Random effects:")
    rows = []
    vc = fit.varcorr
    for g, sub in vc.groupby("group", sort=False):
        var = sub[sub.term2.isna()]
        cov = sub[sub.term2.notna()]
        names = list(var.term1)
        cors = {(c.term1, c.term2): c.sdcor for c in cov.itertuples()}
        for i, v in enumerate(var.itertuples()):
            corr = []
            for j in range(i):
                c = cors.get((names[j], names[i]), np.nan)
                corr.append("" if np.isnan(c) else f"{c:.2f}")
            rows.append([g if i == 0 else "", names[i], fmt(v.vcov), fmt(v.sdcor), " ".join(corr)])
    lines.extend(table(rows, ["Groups", "Name", "Variance", "Std.Dev.", "Corr"], align_left=2))
    groups = ", ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
    lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    lines.append("")
    fe, se = fit.fixef, fit.fixef_se
    z = fe / se
    p = t_sf2(z.to_numpy(), np.full(len(z), np.inf))
    lines.append("Fixed effects:")
    rows = [
        [name, f"{fe[name]:.6g}", f"{se[name]:.6g}", f"{z[name]:.3f}", pvalue(p[i])]
        for i, name in enumerate(fe.index)
    ]
    lines.extend(table(rows, ["", "Estimate", "Std. Error", "z value", "Pr(>|z|)"]))
    if 1 < len(fe) <= 12:
        lines.append("")
        lines.append("Correlation of Fixed Effects:")
        V = fit.vcov.to_numpy()
        with np.errstate(invalid="ignore"):
            d = np.sqrt(np.diag(V))
            C = V / np.outer(d, d)
        names = list(fe.index)
        crow = [[names[i]] + [f"{C[i, j]:.3f}" for j in range(i)] for i in range(1, len(names))]
        lines.extend(table(crow, [""] + labels(names[:-1], 6)))
    notes = []
    if fit.dropped_columns:
        notes.append(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(fit.dropped_columns)} column(s): {', '.join(fit.dropped_columns)}"
        )
    if fit.singular:
        notes.append("boundary (singular) fit: " + "; ".join(fit.singular_terms))
    notes.extend(fit.diagnostics)
    if not fit.converged:
        notes.append(f"the optimiser did not converge: {fit.optim.message}")
    if notes:
        lines.append("")
        lines.extend(f"Note: {n}" for n in notes)
    return "\n".join(lines)
