"""The layout of θ: where each element goes in the relative covariance factors Λ_i, and the
maps between θ, lme4's σ-scale parameters (SDs and correlations) and the θ of the scaled
blocks (Z D⁻¹, :func:`multilevel.engine.blocks.z_scales`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass
class ThetaLayout:
    """Where each element of θ goes: term ``term[i]``, row ``row[i]``, column ``col[i]`` of Λ.

    Within a term the order is lme4's: the lower triangle column by column."""

    k: list[int]
    term: np.ndarray
    row: np.ndarray
    col: np.ndarray

    @classmethod
    def build(cls, k: list[int], correlated: list[bool]) -> ThetaLayout:
        term, row, col = [], [], []
        for t, (kt, corr) in enumerate(zip(k, correlated, strict=True)):
            for b in range(kt):
                for a in range(b, kt) if corr else (b,):
                    term.append(t)
                    row.append(a)
                    col.append(b)
        return cls(k, np.array(term, int), np.array(row, int), np.array(col, int))

    @property
    def size(self) -> int:
        return len(self.term)

    @property
    def lower(self) -> np.ndarray:
        """Bounds: the diagonal of each Λ_i is non-negative, the rest is free."""
        return np.where(self.row == self.col, 0.0, -np.inf)

    @property
    def start(self) -> np.ndarray:
        """lme4's starting value: Λ_i = I."""
        return np.where(self.row == self.col, 1.0, 0.0)

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Λ_i (k_i, k_i) of each term, lower triangular, from θ."""
        theta = np.asarray(theta, dtype=float)
        out = []
        for kt, sel, flat in self._places:
            lam = np.zeros(kt * kt)
            lam[flat] = theta[sel]
            out.append(lam.reshape(kt, kt))
        return out

    @functools.cached_property
    def _places(self) -> list[tuple[int, slice, np.ndarray]]:
        """Per term: k, its slice of θ (a term's elements are consecutive) and their flat
        positions in Λ."""
        out = []
        for t, kt in enumerate(self.k):
            idx = np.flatnonzero(self.term == t)
            sel = slice(int(idx[0]), int(idx[-1]) + 1)
            out.append((kt, sel, self.row[idx] * kt + self.col[idx]))
        return out


def sdcor_from_theta(layout: ThetaLayout, theta: np.ndarray, sigma: float) -> np.ndarray:
    """θ (relative Cholesky factors) and σ → lme4's σ-scale vector (len(θ) + 1): for term i,
    Σ_i = σ² Λ_i Λ_i'; an element on Λ_i's diagonal becomes sqrt(Σ_i[a, a]), one below it the
    correlation Σ_i[a, b] / (sd_a sd_b) (NaN when an SD is 0); σ last."""
    out = np.empty(layout.size + 1)
    for t, lam in enumerate(layout.lambdas(theta)):
        S = sigma**2 * (lam @ lam.T)
        sd = np.sqrt(np.maximum(np.diag(S), 0.0))
        idx = np.flatnonzero(layout.term == t)
        for i in idx:
            a, b = layout.row[i], layout.col[i]
            if a == b:
                out[i] = sd[a]
            else:
                den = sd[a] * sd[b]
                out[i] = S[a, b] / den if den > 0 else np.nan
    out[-1] = sigma
    return out


def _psd_cholesky(C: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite correlation matrix (a zero pivot
    gives a zero column); None when C is not positive semi-definite."""
    k = C.shape[0]
    L = np.zeros_like(C)
    for j in range(k):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-10:
            return None
        L[j, j] = math.sqrt(max(d, 0.0))
        for i in range(j + 1, k):
            v = C[i, j] - L[i, :j] @ L[j, :j]
            if L[j, j] > 1e-12:
                L[i, j] = v / L[j, j]
            elif abs(v) > 1e-8:
                return None
    return L


def theta_from_sdcor(layout: ThetaLayout, v: np.ndarray) -> np.ndarray | None:
    """Inverse of :func:`sdcor_from_theta`: Λ_i = diag(sd) chol(R_i) / σ, with R_i the
    correlation matrix; None when the correlations are not a valid correlation matrix or
    σ <= 0."""
    v = np.asarray(v, dtype=float)
    sigma = v[-1]
    if not sigma > 0:
        return None
    theta = np.zeros(layout.size)
    for t, k in enumerate(layout.k):
        idx = np.flatnonzero(layout.term == t)
        rows, cols = layout.row[idx], layout.col[idx]
        diag = rows == cols
        sd = np.zeros(k)
        sd[rows[diag]] = v[idx[diag]]
        if (sd < 0).any():
            return None
        C = np.eye(k)
        for i, a, b in zip(idx[~diag], rows[~diag], cols[~diag], strict=True):
            C[a, b] = C[b, a] = v[i]
        Lc = _psd_cholesky(C)
        if Lc is None:
            return None
        lam = sd[:, None] * Lc / sigma
        theta[idx] = lam[rows, cols]
    return theta


def theta_for_deviance(layout: ThetaLayout, theta: np.ndarray, z_scale) -> np.ndarray:
    """θ on the data's scale (``fit.theta``, lme4's) → θ of the deviance, whose blocks hold
    Z_i D_i⁻¹ (:func:`multilevel.blocks.z_scales`): Λ_s = D Λ, element (a, b) times d_a."""
    d = np.array([z_scale[t][a] for t, a in zip(layout.term, layout.row, strict=True)])
    return np.asarray(theta, dtype=float) * d


def theta_for_data(layout: ThetaLayout, theta_s: np.ndarray, z_scale) -> np.ndarray:
    """Inverse of :func:`theta_for_deviance`."""
    d = np.array([z_scale[t][a] for t, a in zip(layout.term, layout.row, strict=True)])
    return np.asarray(theta_s, dtype=float) / d
