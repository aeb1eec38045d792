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


@dataclass
class CrossProducts:
    """The blocks of ``[Z X y]'[Z X y]``; see the module docstring for shapes."""

    n: int
    p: int
    nlevels: list[int]
    k: list[int]
    diag: list[np.ndarray]
    off: dict[tuple[int, int], sp.csr_matrix]
    zw: list[np.ndarray]
    ww: np.ndarray

    @property
    def q(self) -> list[int]:
        return [lv * k for lv, k in zip(self.nlevels, self.k, strict=True)]


def _level_sums(codes: np.ndarray, weights: np.ndarray, nlevels: int) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=nlevels)


def crossproducts(frame: ModelFrame) -> CrossProducts:
    """Compute all blocks from an in-memory model frame."""
    W = np.column_stack([frame.X, frame.y])
    terms = frame.reterms
    diag, zw = [], []
    for t in terms:
        k, nl, Z, codes = t.k, t.nlevels, t.Z, t.codes
        D = np.empty((nl, k, k))
        for a in range(k):
            for b in range(a + 1):
                D[:, a, b] = D[:, b, a] = _level_sums(codes, Z[:, a] * Z[:, b], nl)
        diag.append(D)
        ZW = np.empty((nl, k, W.shape[1]))
        for a in range(k):
            for c in range(W.shape[1]):
                ZW[:, a, c] = _level_sums(codes, Z[:, a] * W[:, c], nl)
        zw.append(ZW.reshape(nl * k, W.shape[1]))
    off = {}
    for i, ti in enumerate(terms):
        for j in range(i + 1, len(terms)):
            tj = terms[j]
            rows = np.repeat(tj.codes * tj.k, tj.k * ti.k) + np.tile(
                np.repeat(np.arange(tj.k), ti.k), len(tj.codes)
            )
            cols = np.repeat(ti.codes * ti.k, tj.k * ti.k) + np.tile(
                np.tile(np.arange(ti.k), tj.k), len(ti.codes)
            )
            vals = (tj.Z[:, :, None] * ti.Z[:, None, :]).ravel()
            m = sp.coo_matrix(
                (vals, (rows, cols)), shape=(tj.nlevels * tj.k, ti.nlevels * ti.k)
            ).tocsr()
            m.sum_duplicates()
            off[(j, i)] = m
    return CrossProducts(
        n=len(frame.y),
        p=frame.X.shape[1],
        nlevels=[t.nlevels for t in terms],
        k=[t.k for t in terms],
        diag=diag,
        off=off,
        zw=zw,
        ww=W.T @ W,
    )


def with_response(cp: CrossProducts, frame: ModelFrame, y: np.ndarray) -> CrossProducts:
    """The blocks for the same model and a new response ``y`` (n,): only Z_i'y, X'y and y'y
    change, so a refit (bootstrap, simulation) costs one pass over y."""
    y = np.asarray(y, dtype=float)
    zw = []
    for t, old in zip(frame.reterms, cp.zw, strict=True):
        new = old.copy()
        zy = np.empty((t.nlevels, t.k))
        for a in range(t.k):
            zy[:, a] = _level_sums(t.codes, t.Z[:, a] * y, t.nlevels)
        new[:, -1] = zy.reshape(-1)
        zw.append(new)
    ww = cp.ww.copy()
    xy = frame.X.T @ y
    ww[:-1, -1] = ww[-1, :-1] = xy
    ww[-1, -1] = y @ y
    return replace(cp, zw=zw, ww=ww)
