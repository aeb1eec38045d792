"""Kernels per block kind: the structure of a block picks the code that factors it.

* :class:`FirstBlock` (any k), :class:`FirstBlock1` (k = 1), :class:`FirstBlock2` (k = 2 in
  closed form): the largest term's per-level factors M_c = Λ'A_cΛ + I and what its random
  effects take out of [X y]'[X y];
* :class:`PairMap`: the fixed sparse map of A_r1 G A_1r, the other terms' part of the first
  term's elimination (its pattern depends on the design only, its values on the weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy.sparse is imported where a model has several terms
    import scipy.sparse as sp

from ..errors import DataError
from .linalg import csr_with_data

#: Largest number of entries in the sparse map of A_r1 G A_1r.
MAX_PAIRS = 60_000_000

#: largest table of per-level outer products (entries) that a first block precomputes
MAX_OUTER = 4_000_000


class FirstBlock:
    """The first (largest) term's diagonal blocks, level by level, for any k: from Λ (k, k)

    * M_c = Λ'A_cΛ + I (A_c = Z_c'Z_c) and log|L_1|² = Σ_c log det M_c,
    * G_c = Λ M_c⁻¹ Λ' and Σ_c B_c'G_cB_c (B_c = Z_c'[X y]), what the first term's random
      effects take out of [X y]'[X y].

    A (l, k, k), B (l, k, p+1). The sum is a product with a table of the per-level outer
    products of B's rows, precomputed when it is small enough (:data:`MAX_OUTER`)."""

    def __init__(self, A: np.ndarray, B: np.ndarray):
        self.A, self.B = A, B
        nl, k, w = B.shape
        self.table = (
            np.einsum("lai,lbj->labij", B, B).reshape(nl * k * k, w * w)
            if nl * k * k * w * w <= MAX_OUTER
            else None
        )

    def bgb(self, G: np.ndarray) -> np.ndarray:
        """Σ_c B_c'G_cB_c, (p+1, p+1), for G (l, k, k)."""
        w = self.B.shape[2]
        if self.table is not None:
            return (G.reshape(-1) @ self.table).reshape(w, w)
        B = self.B.reshape(-1, w)
        return B.T @ times_blocks(G, self.B).reshape(-1, w)

    def __call__(self, lam: np.ndarray, full: bool):
        """(log|L_1|², Σ B_c'G_cB_c, G, M⁻¹); G and M⁻¹ (l, k, k) are always given here."""
        A, k = self.A, self.A.shape[1]
        M = np.einsum("ba,lbc,cd->lad", lam, A, lam)
        M[:, np.arange(k), np.arange(k)] += 1.0
        chol = np.linalg.cholesky(M)
        logdet = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
        minv = np.linalg.inv(M)
        G = np.einsum("ab,lbc,dc->lad", lam, minv, lam)
        return logdet, self.bgb(G), G, minv


class FirstBlock1(FirstBlock):
    """k = 1: M_c = λ²a_c + 1, G_c = λ²/M_c."""

    def __init__(self, A: np.ndarray, B: np.ndarray):
        super().__init__(A, B)
        self.a = np.ascontiguousarray(A[:, 0, 0])

    def __call__(self, lam: np.ndarray, full: bool):
        t2 = float(lam[0, 0]) ** 2
        mdiag = t2 * self.a + 1.0
        g = t2 / mdiag
        logdet = float(np.log(mdiag).sum())
        if self.table is not None:
            bgb = (g @ self.table).reshape(self.B.shape[2], -1)
        else:
            bgb = self.bgb(g[:, None, None])
        if not full:
            return logdet, bgb, None, None
        return logdet, bgb, g[:, None, None], (1.0 / mdiag)[:, None, None]


class FirstBlock2(FirstBlock):
    """k = 2 in closed form, the common intercept-and-slope case (numpy's stacked 2 x 2
    matmul and inverse cost ~10x more). With Λ = [[l11, 0], [l21, l22]] and A_c = [[a, b],
    [b, c]], the entries (m00, m01, m11) of M_c are linear in
    v = (1, l11², l11 l21, l21², l11 l22, l21 l22, l22²): one product with a fixed (3l, 7)
    matrix. M_c⁻¹ = [[p, q], [q, r]] with p = m11/det, q = -m01/det, r = m00/det, and
    (g00, g01, g11) of G_c = ΛM_c⁻¹Λ' are (p, -q, r) times a 3 x 3 matrix of Λ's entries;
    Σ_c B_c'G_cB_c is then one product with the packed table of outer products."""

    def __init__(self, A: np.ndarray, B: np.ndarray):
        super().__init__(A, B)
        nl = A.shape[0]
        a, b, c = A[:, 0, 0], A[:, 1, 0], A[:, 1, 1]
        z, one = np.zeros(nl), np.ones(nl)
        self.C = np.concatenate(
            [
                np.column_stack([one, a, 2 * b, c, z, z, z]),
                np.column_stack([z, z, z, z, b, c, z]),
                np.column_stack([one, z, z, z, z, z, c]),
            ]
        )
        w = B.shape[2]
        if self.table is not None:  # packed rows: 00, 01 + 10, 11
            t = self.table.reshape(nl, 2, 2, w * w)
            self.packed = np.concatenate([t[:, 0, 0], t[:, 0, 1] + t[:, 1, 0], t[:, 1, 1]])

    def __call__(self, lam: np.ndarray, full: bool):
        (l11, _), (l21, l22) = lam.tolist()
        v = np.array([1.0, l11 * l11, l11 * l21, l21 * l21, l11 * l22, l21 * l22, l22 * l22])
        m3 = (self.C @ v).reshape(3, -1)
        m00, m01, m11 = m3
        det = m00 * m11 - m01 * m01
        prq = m3[::-1] / det  # p, -q, r
        K = np.array(
            [[l11 * l11, 0.0, 0.0], [l11 * l21, -l11 * l22, 0.0], [v[3], -2.0 * v[5], v[6]]]
        )
        g = K @ prq  # (3, l): g00, g01, g11
        logdet = float(np.log(det).sum())
        w = self.B.shape[2]
        if self.table is not None:
            bgb = (g.reshape(-1) @ self.packed).reshape(w, w)
        if not full and self.table is not None:
            return logdet, bgb, None, None
        G = np.empty_like(self.A)
        G[:, 0, 0], G[:, 1, 1] = g[0], g[2]
        G[:, 0, 1] = G[:, 1, 0] = g[1]
        if self.table is None:
            bgb = self.bgb(G)
        minv = np.empty_like(self.A)
        minv[:, 0, 0], minv[:, 1, 1] = prq[0], prq[2]
        minv[:, 0, 1] = minv[:, 1, 0] = -prq[1]
        return logdet, bgb, G, minv


def first_block(A: np.ndarray, B: np.ndarray) -> FirstBlock:
    """The first-block kernel for A's block size: the structure picks the kernel."""
    return {1: FirstBlock1, 2: FirstBlock2}.get(A.shape[1], FirstBlock)(A, B)


def times_blocks(G: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Level by level G_c B_c for G (l, k, k) and B (l, k, m)."""
    if G.shape[1] == 1:
        return G[:, 0, 0, None, None] * B
    if G.shape[1] == 2:
        out = np.empty_like(B)
        out[:, 0] = G[:, 0, 0, None] * B[:, 0] + G[:, 0, 1, None] * B[:, 1]
        out[:, 1] = G[:, 1, 0, None] * B[:, 0] + G[:, 1, 1, None] * B[:, 1]
        return out
    return np.matmul(G, B)


class PairMap:
    """Sparse map Q with ``(R G R')[i, i'] = (Q @ vec(G))`` at flat index ``i*m + i'``, for
    R = Z_r'Z_1 (q_r, l_1 k_1) and G block diagonal with one k1 x k1 block per level of the
    first term. The product's pattern depends only on R's pattern, so it is built once
    (:meth:`__init__`) and filled with R's values (:meth:`matrix`)."""

    def __init__(self, R: sp.csr_matrix, k1: int, m: int, lower_only: bool):
        Rc = R.tocsc()
        Rc.sort_indices()
        ncol = Rc.shape[1]
        counts = np.diff(Rc.indptr)
        col = np.repeat(np.arange(ncol), counts)
        level, a = col // k1, col % k1
        rows = Rc.indices.astype(np.int64)
        nl = ncol // k1
        n_level = np.bincount(level, minlength=nl)
        level_start = np.concatenate([[0], np.cumsum(n_level)[:-1]])
        pos = np.arange(len(rows)) - level_start[level]  # position of each entry in its level
        # With one column per level the rows of a level are sorted, so the lower triangle
        # (i >= i') pairs each entry with the ones before it; otherwise pair all and filter.
        triangular = lower_only and k1 == 1
        reps = pos + 1 if triangular else n_level[level]
        total = int(reps.sum())
        if total > MAX_PAIRS:
            raise DataError(
                f"the crossed random-effects structure needs {total} products per evaluation; "
                f"the engine handles at most {MAX_PAIRS}"
            )
        e1 = np.repeat(np.arange(len(rows)), reps)
        offset = np.arange(total) - np.repeat(np.cumsum(reps) - reps, reps)
        e2 = level_start[level[e1]] + offset
        if lower_only and not triangular:
            keep = rows[e1] >= rows[e2]
            e1, e2 = e1[keep], e2[keep]
        target = rows[e1] * m + rows[e2]
        gidx = level[e1] * (k1 * k1) + a[e1] * k1 + a[e2]
        if m * m <= 200_000_000:
            seen = np.zeros(m * m, dtype=bool)
            seen[target] = True
            uniq = np.flatnonzero(seen)
            index = np.cumsum(seen) - 1
            inv = index[target]
        else:
            uniq, inv = np.unique(target, return_inverse=True)
        self.e1, self.e2 = e1, e2
        self.shape = (len(uniq), nl * k1 * k1)
        self.targets = uniq  # flat indices into the m x m Schur complement
        # the position in R's CSR data of each entry of its sorted CSC form
        order = R.copy()
        order.data = np.arange(R.nnz, dtype=float)
        order = order.tocsc()
        order.sort_indices()
        self.csc_order = order.data.astype(np.int64)
        # Q's CSR pattern, and the slot of every product in it
        ncols = self.shape[1]
        slots, self.slot = np.unique(inv.astype(np.int64) * ncols + gidx, return_inverse=True)
        self.slot = self.slot.reshape(-1)
        q_rows = slots // ncols
        self.indices = (slots % ncols).astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(q_rows, minlength=len(uniq)))])
        self.nnz = len(slots)
        self.template = None

    def matrix(self, R: sp.csr_matrix) -> sp.csr_matrix:
        """Q for R's values (R with the pattern this map was built for): the products of R's
        entries summed into Q's fixed pattern."""
        vals = R.data[self.csc_order]
        data = np.bincount(self.slot, weights=vals[self.e1] * vals[self.e2], minlength=self.nnz)
        if self.template is None:
            import scipy.sparse as sp

            self.template = sp.csr_matrix((data, self.indices, self.indptr), shape=self.shape)
            return self.template.copy()
        return csr_with_data(self.template, data)
