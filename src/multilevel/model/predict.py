"""Predictions, and their uncertainty by simulation from the conditional distribution.

The point prediction at a row with fixed-effects row x, random-effects rows z_i and offset o
is ``x'β̂ + Σ_i z_i'b̂_i[level] + o``; a level not seen in the fit contributes nothing.

Intervals (Gelman & Hill's ``sim``, here exact given θ̂): draw s = 1..S of (σ_s, β_s, b_s)
from :class:`~multilevel.model.conditional.ConditionalDistribution` (b jointly over all terms
and levels, coupled to β; ``joint=False``: not coupled, as arm's ``sim``), and for each new
level g (``new_groups="draw"``)
η_{s,g} ~ N(0, σ_s² Λ̂ Λ̂'); μ_s = x'β_s + Σ_terms z'b_s + o (the mean of y at a row); for
``interval="prediction"`` also y_s = μ_s + σ_s ε_s / sqrt(w), ε_s ~ N(0, 1), w the row's
prior weight (1 unless ``newdata`` has the weights column). The interval is the
(1-level)/2 and (1+level)/2 quantiles of the S draws; ``fit`` is the point prediction.

New levels of a grouping factor: ``"population"`` gives them no group effect (the
population-level prediction, as lme4's ``allow.new.levels=TRUE``), ``"draw"`` draws their
effects from the estimated distribution (one draw per new level, shared by its rows), and
``"error"`` refuses them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import to_pandas
from ..data.newdata import newdata_design
from ..errors import MultilevelError

INTERVALS = ("confidence", "prediction")
NEW_GROUPS = ("population", "error", "draw")


def linear_predictor(fit, X: np.ndarray, Zs: list[np.ndarray], codes: list[np.ndarray]):
    """η = Xβ̂ + Σ_i Z_i b̂_i (m,); a code of -1 (a new level) contributes nothing to its
    term. Column by column, so the temporaries stay at a few m-vectors."""
    eta = X @ fit.fixef.to_numpy()
    for modes, Z, c in zip(fit.conditional.modes, Zs, codes, strict=True):
        known = c >= 0
        rows = slice(None) if known.all() else known  # a slice indexes without copying
        for a in range(Z.shape[1]):
            eta[rows] += Z[rows, a] * modes[c[rows], a]
    return eta


def design(fit, newdata, new_groups: str = "population"):
    """(X, offset or None, per term (Z, codes, new)) of ``newdata``, or of the fitted data
    when it is None (see :func:`multilevel.data.newdata.newdata_design`)."""
    if newdata is None:
        fr = fit.frame
        m = fr.n
        return fr.X, fr.offset, [(rt.Z, rt.codes, np.full(m, -1)) for rt in fr.reterms]
    return newdata_design(fit.schema, newdata, new_groups)


def predict(fit, newdata=None, new_groups: str = "population") -> np.ndarray:
    """Point predictions (m,) for ``newdata`` (the fitted values when None)."""
    if new_groups not in ("population", "error"):
        raise ValueError("new_groups must be 'population' or 'error'")
    X, offset, terms = design(fit, newdata, new_groups)
    eta = linear_predictor(fit, X, [Z for Z, _, _ in terms], [c for _, c, _ in terms])
    return eta if offset is None else eta + offset


def _sqrt_psd(S: np.ndarray) -> np.ndarray:
    """A square root R with R R' = S for (..., k, k) positive semi-definite S."""
    w, V = np.linalg.eigh(S)
    return V * np.sqrt(np.maximum(w, 0.0))[..., None, :]


def _prediction_weights(fit, newdata, m: int) -> np.ndarray:
    name = fit.schema.weights
    if newdata is None:
        return fit.frame.weights if fit.frame.weights is not None else np.ones(m)
    df = to_pandas(newdata)
    if name is None or name not in df.columns:
        return np.ones(m)
    w = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(w) & (w > 0))
    if bad.any():
        i = int(np.argmax(bad))
        label, value = (
            v.item() if isinstance(v, np.generic) else v for v in (df.index[i], df[name].iloc[i])
        )
        raise MultilevelError(
            f"newdata's weights column '{name}' must be positive numbers (a prediction "
            f"interval adds noise of variance sigma^2/w), not {value!r} in row {label!r}"
        )
    return w


def predict_interval(
    fit,
    newdata=None,
    interval: str = "confidence",
    level: float = 0.95,
    ndraws: int = 1000,
    seed=None,
    new_groups: str = "population",
    joint: bool = True,
) -> pd.DataFrame:
    """Point predictions and simulation intervals: a DataFrame with columns ``fit``,
    ``lower``, ``upper``, one row per row of ``newdata`` (the fitted data when None).

    ``interval``: "confidence" (for the mean x'β + z'b) or "prediction" (for a new
    observation: plus residual noise). ``ndraws`` simulations; ``seed`` as
    :func:`numpy.random.default_rng`. See the module docstring for the draws; with
    ``joint=False`` the group effects are drawn around their modes whatever β is (arm's
    ``sim``: Var = x'Vx + z'Cz, the coupling of b̂ to β̂ left out)."""
    if interval not in INTERVALS:
        raise MultilevelError(f"interval must be one of {INTERVALS}, not {interval!r}")
    if new_groups not in NEW_GROUPS:
        raise MultilevelError(f"new_groups must be one of {NEW_GROUPS}, not {new_groups!r}")
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise MultilevelError(f"level must be a number between 0 and 1, not {level!r}")
    if isinstance(ndraws, bool) or not isinstance(ndraws, int | np.integer) or ndraws < 2:
        raise MultilevelError(f"ndraws must be a whole number of at least 2, not {ndraws!r}")
    rng = np.random.default_rng(seed)
    X, offset, terms = design(fit, newdata, "error" if new_groups == "error" else "population")
    m = X.shape[0]
    point = linear_predictor(fit, X, [Z for Z, _, _ in terms], [c for _, c, _ in terms])
    S = int(ndraws)
    draws = fit.conditional.draw(rng, S, joint=joint)
    mu = draws.beta @ X.T  # (S, m)
    for lam, b, (Z, c, new) in zip(fit.lambdas, draws.b, terms, strict=True):
        k = Z.shape[1]
        known = c >= 0
        if known.any():
            mu[:, known] += np.einsum("nk,snk->sn", Z[known], b[:, c[known], :])
        isnew = new >= 0
        if new_groups == "draw" and isnew.any():
            g = int(new.max()) + 1
            L = _sqrt_psd(lam @ lam.T)
            eta = draws.sigma[:, None, None] * (rng.standard_normal((S, g, k)) @ L.T)
            mu[:, isnew] += np.einsum("nk,snk->sn", Z[isnew], eta[:, new[isnew], :])
    if offset is not None:
        point = point + offset
        mu += offset
    if interval == "prediction":
        w = _prediction_weights(fit, newdata, m)
        mu += draws.sigma[:, None] * rng.standard_normal((S, m)) / np.sqrt(w)
    a = (1 - level) / 2
    lo, hi = np.quantile(mu, [a, 1 - a], axis=0)
    index = to_pandas(newdata).index if newdata is not None else pd.RangeIndex(m)
    return pd.DataFrame({"fit": point, "lower": lo, "upper": hi}, index=index)
