"""Cross-product blocks of ``[Z X y]'W[Z X y]``: everything a linear mixed fit reads of the data.

For random-effects terms ``i = 1..m`` (``Z_i`` is n x (l_i k_i), level-major: column
``level * k_i + a``), ``V = [X y]`` (n x (p+1)) and weights W = diag(w):

* ``diag[i]``   (l_i, k_i, k_i)   per-level sums of ``w z z'``     (Z_i'WZ_i is block diagonal)
* ``off[j, i]`` sparse (l_j k_j, l_i k_i), j > i                   Z_j'WZ_i, cross-tabulated sums
* ``zw[i]``     (l_i k_i, p+1)                                     Z_i'WV
* ``ww``        (p+1, p+1)                                         V'WV
* ``n``         number of observations; ``log_weights`` Σ log w_i of the prior weights

:class:`BlockPattern` holds what depends on the design alone (the Z scales, the X
standardisation, the sparsity pattern of every Z_j'Z_i) and makes the blocks for any
response and weight vector in one pass: a new response changes only the y column
(:meth:`BlockPattern.with_response`), new weights (PIRLS) only the values. Any engine that
can produce these sums (in memory here; DuckDB or Dask for data beyond memory) can feed the
same deviance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy.sparse is imported where a model has several terms
    import scipy.sparse as sp

from .design import Design, RandomBlock
from .linalg import csr_with_data
from .response import Response
from .standardize import Standardization, chunks, mean_squares


@dataclass
class CrossProducts:
    """The blocks of ``[Z D⁻¹ X_s y_s]'W[Z D⁻¹ X_s y_s]``; see the module docstring for shapes,
    :class:`~multilevel.engine.standardize.Standardization` for X_s and y_s and
    :func:`z_scales` for D."""

    n: int
    p: int
    nlevels: list[int]
    k: list[int]
    diag: list[np.ndarray]
    off: dict[tuple[int, int], sp.csr_matrix]
    zw: list[np.ndarray]
    ww: np.ndarray
    std: Standardization
    z_scale: list[np.ndarray]  # per term (k,): the blocks hold Z_i D_i⁻¹
    log_weights: float = 0.0

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


class CrossPattern:
    """The sparsity pattern of Z_j'WZ_i for two terms, built once: the distinct pairs of
    levels (c_j, c_i) that share a row, each a k_j x k_i block at rows c_j k_j + a and
    columns c_i k_i + b, and the pair of every data row; :meth:`values` sums w z_ja z_ib
    into that pattern for any weights."""

    def __init__(self, bj: RandomBlock, bi: RandomBlock):
        import scipy.sparse as sp

        combined = bj.codes.astype(np.int64) * bi.nlevels + bi.codes
        uniq, self.pair = np.unique(combined, return_inverse=True)
        self.pair = self.pair.reshape(-1)
        self.npairs = len(uniq)
        kj, ki = bj.k, bi.k
        cj, ci = uniq // bi.nlevels, uniq % bi.nlevels
        a, b = np.divmod(np.arange(kj * ki), ki)
        rows = (cj[:, None] * kj + a[None, :]).ravel()
        cols = (ci[:, None] * ki + b[None, :]).ravel()
        shape = (bj.nlevels * kj, bi.nlevels * ki)
        order = sp.csr_matrix((np.arange(1, len(rows) + 1, dtype=float), (rows, cols)), shape)
        self.indptr, self.indices = order.indptr, order.indices
        self.perm = order.data.astype(np.int64) - 1  # entry of each stored value
        self.shape = shape
        self.template = sp.csr_matrix((order.data.copy(), self.indices, self.indptr), shape)

    def values(self, Zj: np.ndarray, Zi: np.ndarray, w: np.ndarray | None) -> sp.csr_matrix:
        """Z_j'WZ_i (sparse, this pattern) for the scaled columns Zj (n, k_j), Zi (n, k_i)."""
        kj, ki = Zj.shape[1], Zi.shape[1]
        vals = np.empty((self.npairs, kj, ki))
        for a in range(kj):
            za = Zj[:, a] if w is None else w * Zj[:, a]
            for b in range(ki):
                vals[:, a, b] = np.bincount(self.pair, za * Zi[:, b], minlength=self.npairs)
        return csr_with_data(self.template, vals.reshape(-1)[self.perm])


class BlockPattern:
    """What of the blocks depends on the design alone, built once: Z column scales, the X
    standardisation (for the prior weights ``weights``), the pattern of every Z_j'Z_i
    (j > i). :meth:`crossproducts` computes the blocks for a response and weights."""

    def __init__(self, design: Design, weights: np.ndarray | None = None):
        self.design = design
        self.z_scale = [z_scales(b.Z) for b in design.blocks]
        # Z_i D_i⁻¹, None for an intercept-only term (a column of ones: its sums are counts)
        self.z_scaled = [
            None if b.k == 1 and d[0] == 1.0 and np.all(b.Z == 1.0) else b.Z / d
            for b, d in zip(design.blocks, self.z_scale, strict=True)
        ]
        self.std = Standardization.from_design(design.X, weights)
        m = len(design.blocks)
        self.cross = {
            (j, i): CrossPattern(design.blocks[j], design.blocks[i])
            for i in range(m)
            for j in range(i + 1, m)
        }

    def crossproducts(self, response: Response, weights: np.ndarray | None = None):
        """The blocks of ``response`` with weights ``weights`` (default: its prior weights),
        accumulated over row chunks."""
        design = self.design
        w = response.weights if weights is None else weights
        X, y = design.X, response.working
        n, p = X.shape
        std = self.std.with_y_center(y, w)
        blocks = design.blocks
        diag = [np.zeros((b.nlevels, b.k, b.k)) for b in blocks]
        zw = [np.zeros((b.nlevels, b.k, p + 1)) for b in blocks]
        ww = np.zeros((p + 1, p + 1))
        for rows in chunks(n):
            Xs, ys = std.transform(X[rows], y[rows])
            V = np.column_stack([Xs, ys])
            wr = None if w is None else w[rows]
            WV = V if wr is None else V * wr[:, None]
            ww += WV.T @ V
            for b, zs, D, ZW in zip(blocks, self.z_scaled, diag, zw, strict=True):
                codes = b.codes[rows]
                if zs is None:  # an intercept: per-level sums of w and of wV
                    D[:, 0, 0] += (
                        np.bincount(codes, minlength=b.nlevels) if wr is None
                        else np.bincount(codes, wr, b.nlevels)
                    )  # fmt: skip
                    for c in range(p + 1):
                        ZW[:, 0, c] += np.bincount(codes, WV[:, c], b.nlevels)
                    continue
                Z = zs[rows]
                for a in range(b.k):
                    for c in range(a + 1):
                        D[:, a, c] += np.bincount(codes, _w(Z[:, a], wr) * Z[:, c], b.nlevels)
                    for c in range(p + 1):
                        ZW[:, a, c] += np.bincount(codes, Z[:, a] * WV[:, c], b.nlevels)
        for b, D in zip(blocks, diag, strict=True):
            for a in range(b.k):
                for c in range(a):
                    D[:, c, a] = D[:, a, c]
        off = {}
        for (j, i), pattern in self.cross.items():
            if self.z_scaled[j] is None and self.z_scaled[i] is None:  # two intercepts
                sums = np.bincount(pattern.pair, w, pattern.npairs) if w is not None else (
                    np.bincount(pattern.pair, minlength=pattern.npairs).astype(float))  # fmt: skip
                off[(j, i)] = csr_with_data(pattern.template, sums[pattern.perm])
            else:
                off[(j, i)] = pattern.values(self._zs(j), self._zs(i), w)
        return CrossProducts(
            n=n,
            p=p,
            nlevels=[b.nlevels for b in blocks],
            k=[b.k for b in blocks],
            diag=diag,
            off=off,
            zw=[ZW.reshape(b.q, p + 1) for b, ZW in zip(blocks, zw, strict=True)],
            ww=ww,
            std=std,
            z_scale=self.z_scale,
            log_weights=response.log_weights,
        )

    def _zs(self, i: int) -> np.ndarray:
        """Z_i D_i⁻¹ (n, k_i)."""
        zs = self.z_scaled[i]
        return self.design.blocks[i].Z if zs is None else zs

    def with_response(self, cp: CrossProducts, response: Response) -> CrossProducts:
        """The blocks for the same design and weights and a new ``response`` (its working
        y): only Z_i'Wy, X'Wy and y'Wy change, so a refit (bootstrap, simulation, a profile
        of a fixed effect) costs one pass over y. The standardisation is kept (any y₀ gives
        the same fit)."""
        std, design = cp.std, self.design
        w = response.weights
        Xs, y = std.transform(design.X, np.asarray(response.working, dtype=float))
        wy = y if w is None else w * y
        zw = []
        for b, old, d in zip(design.blocks, cp.zw, cp.z_scale, strict=True):
            new = old.copy()
            zy = np.empty((b.nlevels, b.k))
            for a in range(b.k):
                zy[:, a] = np.bincount(b.codes, b.Z[:, a] * (wy / d[a]), b.nlevels)
            new[:, -1] = zy.reshape(-1)
            zw.append(new)
        ww = cp.ww.copy()
        xy = Xs.T @ wy
        ww[:-1, -1] = ww[-1, :-1] = xy
        ww[-1, -1] = y @ wy
        return replace(cp, zw=zw, ww=ww, log_weights=response.log_weights)


def _w(z: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return z if w is None else w * z


def unexplained_fraction(cp: CrossProducts) -> float:
    """The fraction of the response's (weighted) sum of squares, about its mean with an
    intercept, that the fixed effects leave unexplained: RSS/TSS of the least-squares fit
    of y_s on X_s, from V'WV. 0 when the fixed effects reproduce the response exactly."""
    ww = cp.ww
    tss = float(ww[-1, -1])
    if not tss > 0:
        return 0.0
    beta = np.linalg.lstsq(ww[:-1, :-1], ww[:-1, -1], rcond=None)[0]
    return max(float(tss - ww[:-1, -1] @ beta), 0.0) / tss
