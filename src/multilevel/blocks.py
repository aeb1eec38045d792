"""Cross-product blocks of ``[Z X y]'[Z X y]``: everything a linear mixed fit reads of the data.

For random-effects terms ``i = 1..m`` (``Z_i`` is n x (l_i k_i), level-major: column
``level * k_i + a``) and ``W = [X y]`` (n x (p+1)):

* ``diag[i]``   (l_i, k_i, k_i)   per-level sums of ``z z'``     (Z_i'Z_i is block diagonal)
* ``off[j, i]`` sparse (l_j k_j, l_i k_i), j > i                 Z_j'Z_i, cross-tabulated sums
* ``zw[i]``     (l_i k_i, p+1)                                   Z_i'W
* ``ww``        (p+1, p+1)                                       W'W
* ``n``         number of observations

Any engine that can produce these numbers (in memory here; DuckDB or Dask for data beyond
memory) can feed the same deviance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from .frame import ModelFrame


@dataclass(frozen=True)
class Standardization:
    """X and y enter the blocks centred and scaled: ``X_s = (X - 1c')D⁻¹``, ``y_s = y - y₀``
    with D = diag(s). Cross-products square the condition number, so a response at 1e6 with
    unit noise, or predictors at 1e6 beside ones at 1e-6, would lose every digit without it.
    Centring needs an intercept column (then c and y₀ are the means; the intercept column is
    left as it is); without one only the scaling (root mean square) applies.

    ``β = T β_s + e₀ y₀`` maps the coefficients back; T is unit triangular up to D⁻¹, so the
    REML term log|X'V⁻¹X| = log|X_s'V⁻¹X_s| + 2 Σ log s_j."""

    x_center: np.ndarray
    x_scale: np.ndarray
    y_center: float
    intercept: int | None

    @classmethod
    def from_data(cls, X: np.ndarray, y: np.ndarray) -> Standardization:
        p = X.shape[1]
        lo, hi = X.min(axis=0, initial=np.inf), X.max(axis=0, initial=-np.inf)
        ones = [j for j in range(p) if lo[j] == hi[j] == 1.0]
        icol = ones[0] if ones else None
        c = X.mean(axis=0) if icol is not None else np.zeros(p)
        if icol is not None:
            c[icol] = 0.0
        s = np.sqrt(mean_squares(X, c))
        s[~(s > 0) | ~np.isfinite(s)] = 1.0
        if icol is not None:
            s[icol] = 1.0
        y0 = float(y.mean()) if icol is not None else 0.0
        return cls(c, s, y0, icol)

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
        beta = self.T @ beta_s
        if self.intercept is not None:
            beta[self.intercept] += self.y_center
        return beta

    @property
    def log_scale(self) -> float:
        return float(np.log(self.x_scale).sum())


@dataclass
class CrossProducts:
    """The blocks of ``[Z X_s y_s]'[Z X_s y_s]``; see the module docstring for shapes and
    :class:`Standardization` for X_s and y_s."""

    n: int
    p: int
    nlevels: list[int]
    k: list[int]
    diag: list[np.ndarray]
    off: dict[tuple[int, int], sp.csr_matrix]
    zw: list[np.ndarray]
    ww: np.ndarray
    std: Standardization
    z_scale: list[np.ndarray]  # per term (k,): the blocks hold Z_i D_i⁻¹ (see z_scales)

    @property
    def q(self) -> list[int]:
        return [lv * k for lv, k in zip(self.nlevels, self.k, strict=True)]


#: a Z column whose root mean square lies outside this range enters the blocks scaled to 1
Z_SCALE_RANGE = (0.5, 2.0)


def z_scales(Z: np.ndarray) -> np.ndarray:
    """(k,) column scales D for a term's Z: its root mean square where that is far from 1,
    else 1. A random slope on a predictor at 1e6 would otherwise put θ near 1e-6, where
    the optimiser's steps (O(1) from Λ = I) and the boundary test lose it. The blocks hold
    Z D⁻¹, the deviance works with Λ_s = D Λ, and the results map back: Λ = D⁻¹ Λ_s."""
    rms = np.sqrt(mean_squares(Z, np.zeros(Z.shape[1])))
    lo, hi = Z_SCALE_RANGE
    return np.where((rms > 0) & np.isfinite(rms) & ((rms < lo) | (rms > hi)), rms, 1.0)


def _level_sums(codes: np.ndarray, weights: np.ndarray, nlevels: int) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=nlevels)


#: rows per chunk of the data pass: temporaries stay at a few chunk-sized columns
CHUNK = 1 << 18


def _chunks(n: int):
    for s in range(0, n, CHUNK):
        yield slice(s, min(s + CHUNK, n))


def mean_squares(M: np.ndarray, center: np.ndarray) -> np.ndarray:
    """(p,) column means of (M - center)², M (n, p), accumulated over row chunks."""
    n, p = M.shape
    ss = np.zeros(p)
    for rows in _chunks(n):
        d = M[rows] - center
        ss += np.einsum("ij,ij->j", d, d)
    return ss / max(n, 1)


def crossproducts(frame: ModelFrame) -> CrossProducts:
    """Compute all blocks from an in-memory model frame, accumulating over row chunks."""
    X, y, terms = frame.X, frame.y, frame.reterms
    n, p = X.shape
    std = Standardization.from_data(X, y)
    scales = [z_scales(t.Z) for t in terms]
    diag = [np.zeros((t.nlevels, t.k, t.k)) for t in terms]
    zw = [np.zeros((t.nlevels, t.k, p + 1)) for t in terms]
    off_parts: dict[tuple[int, int], list[sp.csr_matrix]] = {}
    ww = np.zeros((p + 1, p + 1))
    for rows in _chunks(n):
        Xs, ys = std.transform(X[rows], y[rows])
        W = np.column_stack([Xs, ys])
        ww += W.T @ W
        Zs = [t.Z[rows] / d for t, d in zip(terms, scales, strict=True)]
        for t, Z, D, ZW in zip(terms, Zs, diag, zw, strict=True):
            codes = t.codes[rows]
            for a in range(t.k):
                for b in range(a + 1):
                    D[:, a, b] += _level_sums(codes, Z[:, a] * Z[:, b], t.nlevels)
                for c in range(p + 1):
                    ZW[:, a, c] += _level_sums(codes, Z[:, a] * W[:, c], t.nlevels)
        for i in range(len(terms)):
            for j in range(i + 1, len(terms)):
                off_parts.setdefault((j, i), []).append(
                    _cross_table(terms[j], terms[i], Zs[j], Zs[i], rows)
                )
    for t, D in zip(terms, diag, strict=True):
        for a in range(t.k):
            for b in range(a):
                D[:, b, a] = D[:, a, b]
    off = {}
    for key, parts in off_parts.items():
        m = parts[0]
        for part in parts[1:]:
            m = m + part
        m.sum_duplicates()
        off[key] = m
    return CrossProducts(
        n=n,
        p=p,
        nlevels=[t.nlevels for t in terms],
        k=[t.k for t in terms],
        diag=diag,
        off=off,
        zw=[ZW.reshape(t.nlevels * t.k, p + 1) for t, ZW in zip(terms, zw, strict=True)],
        ww=ww,
        std=std,
        z_scale=scales,
    )


def _cross_table(tj, ti, Zj: np.ndarray, Zi: np.ndarray, rows: slice) -> sp.csr_matrix:
    """Z_j'Z_i over some rows: sparse (l_j k_j, l_i k_i), entry (c_j k_j + a, c_i k_i + b)
    summing z_ja z_ib over the rows where the factors take levels c_j and c_i."""
    cj, ci = tj.codes[rows], ti.codes[rows]
    r = np.repeat(cj * tj.k, tj.k * ti.k) + np.tile(np.repeat(np.arange(tj.k), ti.k), len(cj))
    c = np.repeat(ci * ti.k, tj.k * ti.k) + np.tile(np.tile(np.arange(ti.k), tj.k), len(ci))
    vals = (Zj[:, :, None] * Zi[:, None, :]).ravel()
    m = sp.coo_matrix((vals, (r, c)), shape=(tj.nlevels * tj.k, ti.nlevels * ti.k)).tocsr()
    m.sum_duplicates()
    return m


def unexplained_fraction(cp: CrossProducts) -> float:
    """The fraction of the response's sum of squares (about its mean, with an intercept)
    that the fixed effects leave unexplained: RSS/TSS of the least-squares fit of y_s on
    X_s, from W'W. 0 when the fixed effects reproduce the response exactly."""
    ww = cp.ww
    tss = float(ww[-1, -1])
    if not tss > 0:
        return 0.0
    beta = np.linalg.lstsq(ww[:-1, :-1], ww[:-1, -1], rcond=None)[0]
    return max(float(tss - ww[:-1, -1] @ beta), 0.0) / tss


def with_response(cp: CrossProducts, frame: ModelFrame, y: np.ndarray) -> CrossProducts:
    """The blocks for the same model and a new response ``y`` (n,): only Z_i'y, X'y and y'y
    change, so a refit (bootstrap, simulation) costs one pass over y."""
    std = cp.std
    Xs, y = std.transform(frame.X, np.asarray(y, dtype=float))
    zw = []
    for t, old, d in zip(frame.reterms, cp.zw, cp.z_scale, strict=True):
        new = old.copy()
        zy = np.empty((t.nlevels, t.k))
        for a in range(t.k):
            zy[:, a] = _level_sums(t.codes, t.Z[:, a] * (y / d[a]), t.nlevels)
        new[:, -1] = zy.reshape(-1)
        zw.append(new)
    ww = cp.ww.copy()
    xy = Xs.T @ y
    ww[:-1, -1] = ww[-1, :-1] = xy
    ww[-1, -1] = y @ y
    return replace(cp, zw=zw, ww=ww)
