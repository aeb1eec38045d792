"""Text summary of a two-level fit, in the seed's notation."""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd

from ..data.materialize import INTERCEPT
from ..errors import MultilevelError
from .format import table
from .summary import pvalue


def _tested(model) -> pd.DataFrame:
    """The level-2 table with Satterthwaite df and p, or a GLMM's z tests' p (NaN where
    they cannot be computed)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.test()
    except (MultilevelError, np.linalg.LinAlgError, ValueError, FloatingPointError, OverflowError):
        gl = model.group_level
        gl["df"] = gl["p"] = np.nan
        return gl


def _title(self) -> str:
    fit = self.fit
    if not self.generalized:
        crit = "REML" if fit.reml else "maximum likelihood"
        return f"Two-level linear model fit by {crit} ['multilevel']"
    how = (
        "Laplace approximation"
        if fit.nagq == 1
        else f"adaptive Gauss-Hermite quadrature, nAGQ = {fit.nagq}"
    )
    return (
        f"Two-level {self.family} model ({self.link} link) fit by maximum likelihood ({how}) "
        "['multilevel']"
    )


def two_level_summary(self, max_groups: int = 10) -> str:
    """The two-level fit in the seed's notation: the equations, the level-2
    regressions with Satterthwaite t tests (z tests for a GLMM), Σ and σ_y (linear model),
    and the first groups' coefficients."""
    d, spec, lmm = self.design, self.spec, self.fit
    glm = self.generalized
    lines = [_title(self)]
    data = f"{lmm.data_name}: " if lmm.data_name else ""
    lines.append(f"   Data: {data}{lmm.nobs} observations in {self.ngroups} groups ({spec.group})")
    if lmm.weights:
        lines.append(f"Weights: {lmm.weights}")
    if lmm.schema.offset:
        lines.append(f" Offset: {lmm.schema.offset}")
    if lmm.n_dropped:
        lines.append(f"   {lmm.n_dropped} rows with missing values were dropped")
    eq = self.equations()
    lines += ["", f"Level 1 (observation i in {spec.group} j):", "  " + eq[0]]
    lines += [f"Level 2 ({spec.group} j):"] + ["  " + e for e in eq[1:]]
    lines += ["", "Equivalent lme4 formula:", f"  {spec.lme4_formula}"]
    for note in spec.translation:
        lines += textwrap.wrap(note, 98, initial_indent="  - ", subsequent_indent="    ")
    lines.append("")
    if lmm.reml:
        lines.append(f"REML criterion at convergence: {lmm.objective:.4f}")
    else:
        lines.append(f"-2 log-likelihood: {lmm.objective:.4f}   AIC: {lmm.aic:.2f}")
    lines += ["", "Level-2 regressions:"]
    rows = []
    gl = _tested(self)
    stat = self.statistic
    tested = not gl["p" if glm else "df"].isna().all()
    sd = self.eta_sd
    for c, name in enumerate(d.x1names):
        first = True
        label = f"{self.symbols[name]} ({'intercept' if name == INTERCEPT else name})"
        for r in gl[gl.coefficient == name].itertuples():
            cells = [
                label if first else "",
                r.symbol,
                r.predictor,
                f"{r.estimate:.5g}",
                f"{r.se:.4g}",
                f"{getattr(r, stat):.2f}",
            ]
            if glm and tested:
                cells += [""] if np.isnan(r.p) else [pvalue(r.p)]
            elif tested:  # the df and p columns only when some row has them
                cells += ["", ""] if np.isnan(r.df) else [f"{r.df:.1f}", pvalue(r.p)]
            rows.append(cells)
            first = False
        if name in sd.index:
            a = int(np.flatnonzero(d.zcol == c)[0])
            rows.append(["", f"sd(η_j{a + 1})", "", f"{sd[name]:.4g}"])
        else:
            rows.append(["", "", "(not varying)"])
    header = ["Coefficient", "Symbol", "Predictor", "Estimate", "Std. Error", f"{stat} value"]
    if tested:
        header += ["Pr(>|z|)"] if glm else ["df", "Pr(>|t|)"]
    lines += table(rows, header, 3)
    if len(d.zcol) > 1:
        lines += ["", "Correlation of the η's:"]
        R = self.eta_cor.to_numpy()
        crow = []
        for a in range(1, len(d.zcol)):
            crow.append([f"η_j{a + 1}"] + [f"{R[a, b]:.3f}" for b in range(a)])
        lines += table(crow, [""] + [f"η_j{b + 1}" for b in range(len(d.zcol) - 1)])
    if not glm:
        lines += ["", f"Residual SD: σ_y = {self.sigma_y:.5g}"]
    ct = self.coef_table()
    shown = ct.head(max_groups)
    which = f"first {len(shown)} of {len(ct)}" if len(ct) > len(shown) else f"all {len(ct)}"
    scale = f" ({self.link} scale)" if glm else ""
    lines += [
        "",
        f"Group coefficients{scale} and SEs (fixed-effect and conditional uncertainty), {which}:",
    ]
    header = [spec.group, "n"]
    for name in d.x1names:
        sym = self.symbols[name] + ("_j" if name in set(d.varying) else "")
        header += [sym, "se"]
    grows = []
    for lev, r in shown.iterrows():
        cells = [str(lev), str(int(r["n"]))]
        for name in d.x1names:
            cells += [f"{r[name]:.4g}", f"{r[f'se({name})']:.3g}"]
        grows.append(cells)
    lines += table(grows, header)
    notes = []
    if d.dropped:
        notes.append(f"aliased, not estimated: {', '.join(d.dropped)}")
    if lmm.singular:
        notes.append("boundary (singular) fit: " + "; ".join(lmm.singular_terms))
    if not lmm.converged:
        notes.append(f"the optimiser did not converge: {lmm.optim.message}")
    if notes:
        lines.append("")
        lines += [f"Note: {n}" for n in notes]
    return "\n".join(lines)
