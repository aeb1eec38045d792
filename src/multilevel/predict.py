"""Predictions with uncertainty, by simulation from the fit (Gelman & Hill's ``arm::sim``).

Draw s = 1..S:

    σ_s = σ̂ sqrt((n - p) / χ²_{n-p}),          β_s ~ N(β̂, vcov(β̂) (σ_s/σ̂)²),
    b_{s,c} ~ N(b̃_c, Var(b_c | y))              for each level c of the fit (its conditional
                                                  mode and lme4's conditional variance),
    η_{s,g} ~ N(0, σ_s² Λ̂ Λ̂')                  for each new level g (``new_groups="draw"``),

and μ_s = x'β_s + Σ_terms z'b_s (the mean of y at a row of ``newdata``); for
``interval="prediction"`` also y_s = μ_s + σ_s ε_s, ε_s ~ N(0, 1). The interval is the
(1-level)/2 and (1+level)/2 quantiles of the S draws; ``fit`` is the point prediction
(fixed part plus conditional modes; 0 for new levels). The conditional distribution of b
treats β as known (as lme4's condVar and arm's sim do).

New levels of a grouping factor: ``"population"`` gives them no group effect (the
population-level prediction, as lme4's ``allow.new.levels=TRUE``), ``"draw"`` draws their
effects from the estimated distribution (one draw per new level, shared by its rows), and
``"error"`` refuses them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError, MultilevelError
from .frame import to_pandas

INTERVALS = ("confidence", "prediction")
NEW_GROUPS = ("population", "error", "draw")


def newdata_design(fit, newdata, new_groups: str = "population"):
    """Model matrices of ``newdata``: X (m, p) and per term (Z (m, k), codes (m,), new (m,)),
    codes -1 for levels not in the fit and ``new`` numbering the distinct new levels (-1
    for known ones). ``newdata=None`` gives the fitted data's."""
    fr = fit._frame
    if newdata is None:
        m = fr.X.shape[0]
        return fr.X, [(rt.Z, rt.codes, np.full(m, -1)) for rt in fr.reterms]
    from .frame import _group_codes

    df = to_pandas(newdata)
    try:
        Xdf = fr.fixed_spec.get_model_matrix(df, na_action="raise")
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot build the fixed effects for newdata: {e}") from None
    cols = ["Intercept" if c == "(Intercept)" else c for c in fr.xnames]
    X = np.asarray(Xdf[cols], dtype=float)
    terms = []
    for rt in fr.reterms:
        missing = [f for f in rt.term.factors if f not in df.columns]
        if missing:
            raise DataError(f"newdata has no column '{missing[0]}' (grouping factor)")
        if df[list(rt.term.factors)].isna().any().any():
            raise DataError(f"newdata has missing values in grouping factor '{rt.group}'")
        try:
            Z = rt.spec.get_model_matrix(df, na_action="raise")
        except Exception as e:  # noqa: BLE001
            raise DataError(f"cannot build the term {rt.term} for newdata: {e}") from None
        lab_codes, labels = _group_codes(df, rt.term.factors)
        row_labels = labels[lab_codes]
        c = rt.levels.get_indexer(row_labels)
        if new_groups == "error" and (c < 0).any():
            bad = row_labels[c < 0][0]
            raise DataError(
                f"level '{bad}' of '{rt.group}' was not in the fitted data "
                f"({int((c < 0).sum())} rows with new levels)"
            )
        new = np.full(len(c), -1)
        if (c < 0).any():
            new[c < 0] = pd.factorize(pd.Index(row_labels[c < 0]))[0]
        terms.append((np.asarray(Z, dtype=float), c, new))
    return X, terms


def _sqrt_psd(S: np.ndarray) -> np.ndarray:
    """A square root R with R R' = S for (..., k, k) positive semi-definite S."""
    w, V = np.linalg.eigh(S)
    return V * np.sqrt(np.maximum(w, 0.0))[..., None, :]


def predict_interval(
    fit,
    newdata=None,
    interval: str = "confidence",
    level: float = 0.95,
    ndraws: int = 1000,
    seed=None,
    new_groups: str = "population",
) -> pd.DataFrame:
    """Point predictions and simulation intervals: a DataFrame with columns ``fit``,
    ``lower``, ``upper``, one row per row of ``newdata`` (the fitted data when None).

    ``interval``: "confidence" (for the mean x'β + z'b) or "prediction" (for a new
    observation: plus residual noise). ``ndraws`` simulations; ``seed`` as
    :func:`numpy.random.default_rng`. See the module docstring for the draws."""
    if interval not in INTERVALS:
        raise MultilevelError(f"interval must be one of {INTERVALS}, not {interval!r}")
    if new_groups not in NEW_GROUPS:
        raise MultilevelError(f"new_groups must be one of {NEW_GROUPS}, not {new_groups!r}")
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise MultilevelError(f"level must be a number between 0 and 1, not {level!r}")
    if isinstance(ndraws, bool) or not isinstance(ndraws, int | np.integer) or ndraws < 2:
        raise MultilevelError(f"ndraws must be a whole number of at least 2, not {ndraws!r}")
    rng = np.random.default_rng(seed)
    X, terms = newdata_design(fit, newdata, new_groups)
    m = X.shape[0]
    beta = fit.fixef.to_numpy()
    sig = float(fit.sigma)
    n, p = fit.nobs, len(beta)
    dof = max(n - p, 1)
    S = int(ndraws)

    point = X @ beta
    for t, (Z, c, _) in zip(fit._terms, terms, strict=True):
        known = c >= 0
        point[known] += np.einsum("nk,nk->n", Z[known], t.modes[c[known]])

    sig_s = sig * np.sqrt(dof / rng.chisquare(dof, size=S))  # (S,)
    ratio = sig_s / sig if sig > 0 else np.ones(S)
    V = fit.vcov.to_numpy()
    Rv = _sqrt_psd(V) if p else np.zeros((0, 0))
    beta_s = beta + ratio[:, None] * (rng.standard_normal((S, p)) @ Rv.T)  # (S, p)
    mu = beta_s @ X.T  # (S, m)
    for t, (Z, c, new) in zip(fit._terms, terms, strict=True):
        k = Z.shape[1]
        known = c >= 0
        if known.any():
            used, inv = np.unique(c[known], return_inverse=True)
            R = _sqrt_psd(t.condvar[used])  # (u, k, k)
            z = rng.standard_normal((S, len(used), k))
            b = t.modes[used][None] + np.einsum("uab,sub->sua", R, z)  # (S, u, k)
            mu[:, known] += np.einsum("nk,snk->sn", Z[known], b[:, inv, :])
        isnew = new >= 0
        if new_groups == "draw" and isnew.any():
            g = int(new.max()) + 1
            L = _sqrt_psd(sig**2 * t.lam @ t.lam.T)
            eta = ratio[:, None, None] * (rng.standard_normal((S, g, k)) @ L.T)  # (S, g, k)
            mu[:, isnew] += np.einsum("nk,snk->sn", Z[isnew], eta[:, new[isnew], :])
    if interval == "prediction":
        mu += sig_s[:, None] * rng.standard_normal((S, m))
    a = (1 - level) / 2
    lo, hi = np.quantile(mu, [a, 1 - a], axis=0)
    index = to_pandas(newdata).index if newdata is not None else pd.RangeIndex(m)
    return pd.DataFrame({"fit": point, "lower": lo, "upper": hi}, index=index)
