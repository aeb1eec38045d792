"""t and F tests of the fixed effects with Satterthwaite or Kenward-Roger denominator df.

Both methods test ``H0: L β = 0`` for a contrast matrix L (q, p) with the Wald statistic
``F = (Lβ̂)'(L V L')⁻¹(Lβ̂) / q`` (q = 1: ``t = Lβ̂ / sqrt(L V L')``) and differ in V and in
the denominator degrees of freedom (:mod:`~multilevel.inference.satterthwaite`,
:mod:`~multilevel.inference.kenward_roger`). t tests: ``p = 2 P(T_df > |t|)``; F tests:
``P(F(q, DenDF) > F)``. Type III contrasts: :mod:`~multilevel.inference.type3`.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import pandas as pd

from ..errors import MultilevelError
from .distributions import f_sf, t_sf2
from .kenward_roger import KR_MAX_N, KenwardRoger, kenward_roger
from .satterthwaite import Satterthwaite, satterthwaite
from .type3 import type3_contrasts

_METHODS = {
    "satterthwaite": "satterthwaite",
    "kenward-roger": "kenward-roger",
    "kenward_roger": "kenward-roger",
    "kr": "kenward-roger",
}

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------------------------
# public entry points
# ----------------------------------------------------------------------------------------
def fixef_tests(fit, ddf: str = "satterthwaite") -> pd.DataFrame:
    """t tests of each fixed effect: a DataFrame indexed by coefficient name with columns
    Estimate, Std. Error, df, t value, Pr(>|t|).

    ``ddf="satterthwaite"``: Std. Error from vcov(β̂), Satterthwaite df (lmerTest's
    ``summary``). ``ddf="kenward-roger"``: Std. Error from the adjusted Φ_A, KR df of the
    one-row contrast (lmerTest's ``summary(m, ddf="Kenward-Roger")``)."""
    method = _method(ddf)
    _check_fit(fit, method)
    names = list(fit.fixef.index)
    beta = fit.fixef.to_numpy()
    p = len(beta)
    cols = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    if p == 0:
        return pd.DataFrame(columns=cols, dtype=float)
    se = np.empty(p)
    df = np.empty(p)
    if method == "satterthwaite":
        sat = _satterthwaite(fit)
        for j in range(p):
            var, df[j] = sat.t_df(np.eye(p)[j])
            se[j] = math.sqrt(var)
    else:
        kr = _kenward_roger(fit)
        for j in range(p):
            e = np.eye(p)[j]
            se[j] = math.sqrt(float(e @ kr.phi_adj @ e))
            df[j] = kr.ddf(e[None, :])
    tval = beta / se
    pval = t_sf2(tval, df)
    out = pd.DataFrame(
        {"Estimate": beta, "Std. Error": se, "df": df, "t value": tval, "Pr(>|t|)": pval},
        index=pd.Index(names),
    )
    return out[cols]


def anova_type3(fit, ddf: str = "satterthwaite") -> pd.DataFrame:
    """Type III F tests, one row per fixed-effects term (the intercept is not a term), as
    lmerTest's ``anova(m)``: columns Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F).

    Mean Sq = F σ̂², Sum Sq = Mean Sq x NumDF. With Kenward-Roger, Mean Sq uses the unscaled
    F (Wald statistic with Φ_A over q) and F value is the scaled one, as pbkrtest's
    ``KRmodcomp``."""
    method = _method(ddf)
    _check_fit(fit, method)
    contrasts = type3_contrasts(fit)
    cols = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    rows = {}
    for term, L in contrasts.items():
        rows[term] = contrast_test(fit, L, ddf=method)
    if not rows:
        return pd.DataFrame(columns=cols, dtype=float)
    out = pd.DataFrame.from_dict(rows, orient="index")
    return out[cols]


def contrast_test(fit, L, ddf: str = "satterthwaite") -> dict:
    """F test of ``L β = 0`` for a contrast matrix L (q, p) (a vector is one row): a dict
    with Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F) (lmerTest's ``contestMD``)."""
    method = _method(ddf)
    _check_fit(fit, method)
    beta = fit.fixef.to_numpy()
    p = len(beta)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if L.shape[1] != p:
        raise MultilevelError(
            f"the contrast has {L.shape[1]} columns; the model has {p} fixed effects"
        )
    if not np.isfinite(L).all():
        raise MultilevelError("the contrast has missing or infinite entries")
    sigma2 = fit.sigma**2
    if method == "kenward-roger":
        kr = _kenward_roger(fit)
        Lr = _row_basis(L, fit.vcov.to_numpy())
        if Lr.shape[0] == 0:
            raise MultilevelError("the contrast is zero: there is nothing to test")
        F_unscaled, scaling, q, den = kr.ftest(Lr, beta)
        Fval = F_unscaled * scaling
        ms = F_unscaled * sigma2
    else:
        sat = _satterthwaite(fit)
        Fval, q, den = sat.ftest(L, beta)
        ms = Fval * sigma2
    return {
        "Sum Sq": ms * q,
        "Mean Sq": ms,
        "NumDF": float(q),
        "DenDF": den,
        "F value": Fval,
        "Pr(>F)": f_sf(Fval, q, den),
    }


def _method(ddf) -> str:
    key = str(ddf).strip().lower() if isinstance(ddf, str) else None
    if key not in _METHODS:
        raise MultilevelError(f"unknown ddf method {ddf!r}; use 'satterthwaite' or 'kenward-roger'")
    return _METHODS[key]


def _check_fit(fit, method: str) -> None:
    if getattr(fit, "family", None) != "gaussian" or not hasattr(fit, "factorization"):
        raise MultilevelError(
            f"denominator-df tests need a linear mixed model fit, not {type(fit).__name__}"
        )
    if method == "kenward-roger":
        if not fit.reml:
            raise MultilevelError(
                "Kenward-Roger's method is defined for REML fits only; refit with "
                "fit.refit(reml=True) or use ddf='satterthwaite'"
            )
        if fit.nobs > KR_MAX_N:
            raise MultilevelError(
                f"Kenward-Roger needs the dense {fit.nobs} x {fit.nobs} covariance of y "
                f"(time O(n³)); it is limited to {KR_MAX_N} observations: use "
                "ddf='satterthwaite'"
            )


def _cached(fit, key, build):
    try:
        store = _CACHE.setdefault(fit, {})
    except TypeError:  # not weak-referenceable: compute every time
        return build()
    if key not in store:
        store[key] = build()
    return store[key]


def _satterthwaite(fit) -> Satterthwaite:
    return _cached(fit, "satterthwaite", lambda: satterthwaite(fit))


def _kenward_roger(fit) -> KenwardRoger:
    return _cached(fit, "kenward-roger", lambda: kenward_roger(fit))


def _row_basis(L: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Rows spanning the row space of L, as contestMD ranks it (eigenvalues of L V L')."""
    d, P = np.linalg.eigh(L @ V @ L.T)
    d, P = d[::-1], P[:, ::-1]
    tol = max(np.sqrt(np.finfo(float).eps) * d[0], 0.0)
    q = int((d > tol).sum())
    if q == L.shape[0]:
        return L
    return (P.T @ L)[:q]
