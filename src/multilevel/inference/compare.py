"""Likelihood-ratio tests between nested linear, or generalized linear, mixed models
(lme4's ``anova(m0, m1)``).

Models fitted by REML are refitted by ML first (REML criteria of models with different fixed
effects are not comparable), as lme4 does. Ordered by their number of parameters, each model
after the first is tested against the one before:

    Chisq = max(0, d_{k-1} - d_k),   Df = npar_k - npar_{k-1},   p = P(χ²_Df > Chisq),

with d the ML deviance (-2 log-likelihood; for a GLMM its Laplace or AGQ approximation, the
fit's objective), AIC = d + 2 npar, BIC = d + npar log(n). The models must be of one kind:
linear, or of one family and link.

When the smaller model leaves out a variance component of the larger (an SD set to 0 under
the null), the null value is on the boundary of the parameter space: the chi-square
reference distribution is then wrong (the null distribution is a mixture of chi-squares with
fewer degrees of freedom) and the p-value conservative. Such rows get a note and a
:class:`BoundaryWarning`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..errors import MultilevelError
from ..model import LinearMixedFit
from ..model.glmm import GeneralizedLinearMixedFit
from .distributions import chi2_sf
from .varpar import variance_names, varpar_names

REFIT_MESSAGE = "refitting model(s) with ML (instead of REML)"
COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


class RefitNotice(UserWarning):
    """REML fits were refitted by ML before the comparison (lme4 says so in a message)."""


class BoundaryWarning(UserWarning):
    """The null hypothesis puts a variance on the boundary: the p-value is conservative."""


def _kind(m) -> str:
    if isinstance(m, LinearMixedFit):
        return "linear"
    return f"{m.family}({m.link})"


def _check_models(models) -> None:
    if len(models) < 2:
        raise MultilevelError("anova needs at least two models to compare")
    for i, m in enumerate(models):
        if not isinstance(m, LinearMixedFit | GeneralizedLinearMixedFit):
            raise MultilevelError(
                f"model {i + 1} is a {type(m).__name__}, not a fitted mixed model"
            )
    kind0 = _kind(models[0])
    y0, w0 = models[0].frame.y, models[0].frame.weights
    for i, m in enumerate(models[1:], start=2):
        if _kind(m) != kind0:
            raise MultilevelError(
                f"model {i} is a {_kind(m)} model and model 1 a {kind0} one: a "
                "likelihood-ratio test compares models of one family and link"
            )
        y, w = m.frame.y, m.frame.weights
        same_w = (w is None and w0 is None) or (
            w is not None and w0 is not None and np.array_equal(w, w0)
        )
        if m.nobs != models[0].nobs or not np.array_equal(y, y0) or not same_w:
            raise MultilevelError(
                f"model {i} was fitted to different data than model 1 ({m.nobs} against "
                f"{models[0].nobs} observations, or another response or weights): "
                "likelihood-ratio tests need the same observations"
            )


def _varpars(m) -> list[str]:
    if isinstance(m, LinearMixedFit):
        return varpar_names(m)
    return variance_names(m.problem.deviance.layout, m.schema.terms)


def _boundary_terms(small, large) -> list[str]:
    """SDs of the larger model that the smaller one does not have (set to 0 under the null)."""
    have = set(_varpars(small))
    return [nm for nm in _varpars(large) if nm.startswith("sd_") and nm not in have]


def _not_nested(small, large) -> list[str]:
    missing = [f for f in small.fixef.index if f not in large.fixef.index]
    missing += [v for v in _varpars(small) if v not in set(_varpars(large))]
    return missing


def anova(m0, m1, *more, names: list[str] | None = None) -> pd.DataFrame:
    """Likelihood-ratio tests between nested models fitted to the same data.

    Returns a DataFrame, one row per model ordered by number of parameters, with lme4's
    columns npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq) (NaN on the first row)
    and ``note``. ``names`` label the models in the order given (default m0, m1, ...).
    ``table.attrs``: ``formulas``, ``refitted`` (names of models refitted by ML) and
    ``messages``."""
    models = [m0, m1, *more]
    _check_models(models)
    if names is None:
        names = [f"m{i}" for i in range(len(models))]
    names = [str(nm) for nm in names]
    if len(names) != len(models) or len(set(names)) != len(names):
        raise MultilevelError(f"names must be {len(models)} distinct labels, not {names!r}")
    messages = []
    refitted = [nm for nm, m in zip(names, models, strict=True) if m.reml]
    if refitted:
        messages.append(REFIT_MESSAGE)
        warnings.warn(REFIT_MESSAGE, RefitNotice, stacklevel=2)
        models = [m.refit(reml=False) if m.reml else m for m in models]
    order = sorted(range(len(models)), key=lambda i: models[i].npar)  # stable, as R's order
    rows, notes = [], []
    prev = None
    for i in order:
        m = models[i]
        dev = float(m.objective)
        row = {
            "npar": int(m.npar),
            "AIC": dev + 2 * m.npar,
            "BIC": dev + m.npar * math.log(m.nobs),
            "logLik": -0.5 * dev,
            "deviance": dev,
            "Chisq": np.nan,
            "Df": np.nan,
            "Pr(>Chisq)": np.nan,
        }
        note = ""
        if prev is not None:
            pm = models[prev]
            df = m.npar - pm.npar
            stat = max(0.0, float(pm.objective) - dev)
            row["Chisq"], row["Df"] = stat, df
            row["Pr(>Chisq)"] = chi2_sf(stat, df)
            bnd = _boundary_terms(pm, m)
            if bnd:
                note = (
                    f"{names[prev]} sets {', '.join(bnd)} to 0, on the boundary of the "
                    "parameter space: the chi-square p-value is conservative"
                )
                warnings.warn(note, BoundaryWarning, stacklevel=2)
                messages.append(note)
            odd = _not_nested(pm, m)
            if odd:
                msg = (
                    f"{names[prev]} has {', '.join(odd)}, which {names[i]} does not: the "
                    "models may not be nested and the test may not be valid"
                )
                warnings.warn(msg, UserWarning, stacklevel=2)
                messages.append(msg)
                note = f"{note}; not nested?" if note else "not nested?"
        row["note"] = note
        rows.append(row)
        notes.append(note)
        prev = i
    table = pd.DataFrame(rows, index=pd.Index([names[i] for i in order]))
    table["Df"] = table["Df"].astype("Int64")
    table.attrs["formulas"] = {names[i]: models[i].formula for i in order}
    table.attrs["refitted"] = refitted
    table.attrs["messages"] = messages
    table.attrs["data"] = models[0].data_name
    return table


def format_anova(table: pd.DataFrame) -> str:
    """lme4's printed form: the data, the models' formulas, then the table."""
    lines = []
    if table.attrs.get("data"):
        lines.append(f"Data: {table.attrs['data']}")
    lines.append("Models:")
    for nm, f in table.attrs.get("formulas", {}).items():
        lines.append(f"{nm}: {f}")
    shown = table[COLUMNS].copy().astype(object)
    fmt = {
        "AIC": "{:.1f}",
        "BIC": "{:.1f}",
        "logLik": "{:.2f}",
        "deviance": "{:.1f}",
        "Chisq": "{:.4f}",
        "Pr(>Chisq)": "{:.4g}",
    }
    for c, f in fmt.items():
        shown[c] = [
            ""
            if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)))
            else f.format(v)
            for v in table[c]
        ]
    shown["Df"] = ["" if pd.isna(v) else str(int(v)) for v in table["Df"]]
    lines.append(shown.to_string())
    for msg in table.attrs.get("messages", []):
        lines.append(f"note: {msg}")
    return "\n".join(lines)
