"""Centring and scaling of X and y before the cross-products, and the map back.

Cross-products square the condition number, so a response at 1e6 with unit noise, or
predictors at 1e6 beside ones at 1e-6, would lose every digit without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: rows per chunk of a pass over the data: temporaries stay at a few chunk-sized columns
CHUNK = 1 << 18


def chunks(n: int):
    """Row slices of at most :data:`CHUNK` rows covering ``range(n)``."""
    for s in range(0, n, CHUNK):
        yield slice(s, min(s + CHUNK, n))


def mean_squares(M: np.ndarray, center: np.ndarray, weights: np.ndarray | None = None):
    """(p,) column means of (M - center)², weighted by ``weights`` (n,) when given, for M
    (n, p), accumulated over row chunks."""
    n, p = M.shape
    ss = np.zeros(p)
    for rows in chunks(n):
        d = M[rows] - center
        if weights is None:
            ss += np.einsum("ij,ij->j", d, d)
        else:
            ss += np.einsum("i,ij,ij->j", weights[rows], d, d)
    total = float(weights.sum()) if weights is not None else n
    return ss / max(total, 1e-300) if n else ss


@dataclass(frozen=True)
class Standardization:
    """X and y enter the blocks centred and scaled: ``X_s = (X - 1c')D⁻¹``, ``y_s = y - y₀``
    with D = diag(s). Centring needs an intercept column (then c and y₀ are the (weighted)
    means; the intercept column is left as it is); without one only the scaling (root mean
    square) applies. Any c, y₀ and D give the same fit; these keep the numbers near 1.

    ``β = T β_s + e₀ y₀`` maps the coefficients back; T is unit triangular up to D⁻¹, so the
    REML term log|X'V⁻¹X| = log|X_s'V⁻¹X_s| + 2 Σ log s_j."""

    x_center: np.ndarray
    x_scale: np.ndarray
    y_center: float
    intercept: int | None

    @classmethod
    def from_design(cls, X: np.ndarray, weights: np.ndarray | None = None) -> Standardization:
        """The standardisation of X (weighted by the prior ``weights``), with y₀ = 0 until
        :meth:`with_y_center` sets it from a response."""
        p = X.shape[1]
        lo, hi = X.min(axis=0, initial=np.inf), X.max(axis=0, initial=-np.inf)
        ones = [j for j in range(p) if lo[j] == hi[j] == 1.0]
        icol = ones[0] if ones else None
        if icol is None:
            c = np.zeros(p)
        elif weights is None:
            c = X.mean(axis=0)
        else:
            c = (weights @ X) / weights.sum()
        if icol is not None:
            c[icol] = 0.0
        s = np.sqrt(mean_squares(X, c, weights))
        s[~(s > 0) | ~np.isfinite(s)] = 1.0
        if icol is not None:
            s[icol] = 1.0
        return cls(c, s, 0.0, icol)

    def with_y_center(self, y: np.ndarray, weights: np.ndarray | None = None):
        """The same X standardisation with y₀ the (weighted) mean of a new response."""
        if self.intercept is None:
            return self
        y0 = float(y.mean() if weights is None else (weights @ y) / weights.sum())
        return Standardization(self.x_center, self.x_scale, y0, self.intercept)

    def transform(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (X - self.x_center) / self.x_scale, y - self.y_center

    @property
    def T(self) -> np.ndarray:
        """(p, p): β = T β_s + e₀ y₀."""
        T = np.diag(1.0 / self.x_scale)
        if self.intercept is not None:
            T[self.intercept, :] -= self.x_center / self.x_scale
            T[self.intercept, self.intercept] = 1.0
        return T

    def beta(self, beta_s: np.ndarray) -> np.ndarray:
        """β (p,) on the data's scale from β_s; ``beta_s`` may be (..., p) (stacked)."""
        beta = np.asarray(beta_s) @ self.T.T
        if self.intercept is not None:
            beta[..., self.intercept] += self.y_center
        return beta

    @property
    def log_scale(self) -> float:
        return float(np.log(self.x_scale).sum())
