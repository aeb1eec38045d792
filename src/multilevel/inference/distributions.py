"""Tail probabilities and quantiles of the t, F, χ² and normal distributions, from
scipy.special (scipy.stats costs half a second to import; these are the same functions
underneath)."""

from __future__ import annotations

import numpy as np
from scipy import special


def t_sf2(t, df):
    """2 P(T_df > |t|), elementwise; df may be infinite."""
    t = np.abs(np.asarray(t, dtype=float))
    df = np.asarray(df, dtype=float)
    finite = np.where(np.isinf(df), 1.0, df)
    return 2.0 * np.where(np.isinf(df), special.ndtr(-t), special.stdtr(finite, -t))


def f_sf(F: float, q: float, den: float) -> float:
    """P(F(q, den) > F)."""
    if np.isinf(den):
        return chi2_sf(F * q, q)
    return float(special.fdtrc(q, den, F))


def chi2_sf(x: float, df: float) -> float:
    """P(χ²_df > x) (NaN for df <= 0)."""
    if df <= 0:
        return float("nan")
    return float(special.chdtrc(df, x))


def chi2_ppf(p: float, df: float) -> float:
    """The p-quantile of χ²_df."""
    return float(special.chdtri(df, 1.0 - p))


def norm_ppf(p):
    """The p-quantile of the standard normal."""
    return special.ndtri(p)
