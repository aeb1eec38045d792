"""Profiled (RE)ML deviance of a linear mixed model, from the cross-product blocks.

With relative covariance factor Λ(θ) = blockdiag(Λ_1 ⊗ I_{l_1}, ..., Λ_m ⊗ I_{l_m}) and
``W = [X y]``, the symmetric matrix

    [ Λ'Z'ZΛ + I   Λ'Z'W ]
    [ W'ZΛ         W'W   ]  =  L L'

is factored blockwise (Bates et al. 2015, section 3; MixedModels.jl's ``updateL!``):

1. The first term (most levels) has a block-diagonal ``Z_1'Z_1``: each level's
   ``M_c = Λ_1'A_c Λ_1 + I`` (k_1 x k_1) is factored on its own.
2. Eliminating it leaves the Schur complement on the other terms and W,

       S = D' (A_rr - A_r1 G A_1r) D + diag(I, 0),   G = blockdiag_c(Λ_1 M_c⁻¹ Λ_1'),

   with ``D = blockdiag(Λ_2, ..., Λ_m, I)``. ``A_r1 G A_1r`` is accumulated through a
   precomputed sparse map from the entries of G (the symbolic pattern of the product is
   fixed); S is dense and factored by LAPACK.
3. The last diagonal element of chol(S) is r = sqrt(penalised RSS); the X block gives R_X.

    ML:   d(θ) = log|L_θ|² + n (1 + log(2π r²/n))
    REML: d(θ) = log|L_θ|² + log|R_X|² + (n-p)(1 + log(2π r²/(n-p)))

exactly as lme4 defines them. Nothing here touches an array of length n.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from .blocks import CrossProducts
from .errors import DataError

#: Largest dense Schur complement (random effects outside the first term) we will form.
MAX_DENSE = 12_000
#: Largest number of entries in the sparse map of A_r1 G A_1r.
MAX_PAIRS = 60_000_000


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


@dataclass
class Factorization:
    """Everything a fit keeps from the deviance at its optimum θ."""

    theta: np.ndarray
    lambdas: list[np.ndarray]
    objective: float
    M1inv: np.ndarray  # (l_1, k_1, k_1): (Λ_1'A_c Λ_1 + I)⁻¹
    L: np.ndarray  # lower Cholesky factor of S, (q_r + p + 1) square
    qr: int  # random effects outside the first term
    pwrss: float
    ldL2: float
    ldRX2: float


class ProfiledDeviance:
    """``d = ProfiledDeviance(cp, correlated, reml)``; ``d(theta)`` is the REML criterion or
    the ML deviance. Precomputes everything that does not depend on θ."""

    def __init__(self, cp: CrossProducts, correlated: list[bool], reml: bool = True):
        self.cp = cp
        self.reml = reml
        self.layout = ThetaLayout.build(cp.k, correlated)
        self.n, self.p = cp.n, cp.p
        k1, l1 = cp.k[0], cp.nlevels[0]
        self.k1, self.l1 = k1, l1
        self.A11 = cp.diag[0]
        self.B1 = cp.zw[0].reshape(l1, k1, self.p + 1)
        self.first = first_block(self.A11, self.B1)
        q = cp.q
        self.offsets = np.concatenate([[0], np.cumsum(q[1:])]).astype(int)
        self.qr = int(self.offsets[-1])
        if self.qr > MAX_DENSE:
            raise DataError(
                f"the random-effects terms after the first have {self.qr} effects in all; the "
                f"dense engine handles at most {MAX_DENSE}"
            )
        m = self.qr + self.p + 1
        self.m = m
        self.rest_scalar = all(kt == 1 for kt in cp.k[1:])
        self.Arr = self._static_rest()
        if self.qr:
            self.R = sp.vstack([cp.off[(j, 0)] for j in range(1, len(q))]).tocsr()
            self.Q, self.Qrows = _pair_map(self.R, k1, self.m, lower_only=self.rest_scalar)
        self._diag_z = np.arange(self.qr) * (m + 1)
        self._ld_xscale = 2.0 * cp.std.log_scale  # REML: log|X'V⁻¹X| of X, not of X_s

    def with_crossproducts(self, cp: CrossProducts, reml: bool | None = None):
        """The same model for blocks that differ only in the response (see
        :func:`multilevel.blocks.with_response`), or fitted by the other criterion. The
        θ-independent structure (pair map, layout) is shared, not rebuilt."""
        new = copy.copy(self)
        new.cp = cp
        new.reml = self.reml if reml is None else reml
        new.B1 = cp.zw[0].reshape(self.l1, self.k1, self.p + 1)
        new.first = first_block(new.A11, new.B1)
        new.Arr = new._static_rest()
        new._ld_xscale = 2.0 * cp.std.log_scale
        return new

    # -- static part -------------------------------------------------------------------
    def _static_rest(self) -> np.ndarray:
        """Dense A_rr over [Z_2 .. Z_m, X, y] (does not depend on θ)."""
        cp, qr, m = self.cp, self.qr, self.m
        A = np.zeros((m, m))
        for j in range(1, len(cp.k)):
            o, kj, lj = self.offsets[j - 1], cp.k[j], cp.nlevels[j]
            for lv in range(kj):
                for b in range(kj):
                    idx_r = o + np.arange(lj) * kj + lv
                    idx_c = o + np.arange(lj) * kj + b
                    A[idx_r, idx_c] = cp.diag[j][:, lv, b]
            A[o : o + lj * kj, qr:] = cp.zw[j]
            A[qr:, o : o + lj * kj] = cp.zw[j].T
            for i in range(1, j):
                oi = self.offsets[i - 1]
                blk = cp.off[(j, i)].toarray()
                A[o : o + blk.shape[0], oi : oi + blk.shape[1]] = blk
                A[oi : oi + blk.shape[1], o : o + blk.shape[0]] = blk.T
        A[qr:, qr:] = cp.ww
        return A

    # -- evaluation --------------------------------------------------------------------
    def __call__(self, theta: np.ndarray) -> float:
        return self._compute(np.asarray(theta, dtype=float), keep=False)

    def factor(self, theta: np.ndarray) -> Factorization:
        return self._compute(np.asarray(theta, dtype=float), keep=True)

    def _compute(self, theta: np.ndarray, keep: bool):
        lams = self.layout.lambdas(theta)
        qr, m, p = self.qr, self.m, self.p
        logdet1, BGB, G, minv = self.first(lams[0], full=keep or qr > 0)
        S = self.Arr.copy()
        S[qr:, qr:] -= BGB
        if qr:
            GB = _times_blocks(G, self.B1).reshape(self.l1 * self.k1, p + 1)
            RGB = self.R @ GB
            S[qr:, :qr] -= RGB.T
            flat = S.reshape(-1)
            flat[self.Qrows] -= self.Q @ G.reshape(-1)
            if self.rest_scalar:
                s = np.ones(m)
                for j in range(1, len(lams)):
                    s[self.offsets[j - 1] : self.offsets[j]] = lams[j][0, 0]
                S *= s[:, None]
                S *= s[None, :]
            else:
                S[:qr, qr:] -= RGB
                self._scale_blocks(S, lams)
            flat[self._diag_z] += 1.0
        # S is symmetric in its lower triangle; S.T is its Fortran-ordered view, whose upper
        # triangle LAPACK factors in place as U = L'.
        U, info = lapack.dpotrf(S.T, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            return math.inf if not keep else None
        L = U.T
        d = np.diagonal(L)
        pwrss = d[-1] ** 2
        if not pwrss > 0:
            return math.inf if not keep else None
        ldL2 = logdet1 + 2.0 * float(np.log(d[:qr]).sum()) if qr else logdet1
        ldRX2 = 2.0 * float(np.log(d[qr : qr + p]).sum()) + self._ld_xscale
        n = self.n
        if self.reml:
            nu = n - p
            obj = ldL2 + ldRX2 + nu * (1.0 + math.log(2.0 * math.pi * pwrss / nu))
        else:
            obj = ldL2 + n * (1.0 + math.log(2.0 * math.pi * pwrss / n))
        if not keep:
            return obj
        return Factorization(
            theta=theta.copy(),
            lambdas=lams,
            objective=obj,
            M1inv=minv,
            L=np.tril(L),
            qr=qr,
            pwrss=pwrss,
            ldL2=ldL2,
            ldRX2=ldRX2,
        )

    def _scale_blocks(self, S: np.ndarray, lams: list[np.ndarray]) -> None:
        """S[Z_j rows] ← Λ_j' S[...], S[:, Z_j cols] ← S[...] Λ_j, level by level."""
        cp, m = self.cp, self.m
        for j in range(1, len(lams)):
            o, kj, lj = self.offsets[j - 1], cp.k[j], cp.nlevels[j]
            lam = lams[j]
            rows = S[o : o + lj * kj, :].reshape(lj, kj, m)
            S[o : o + lj * kj, :] = np.einsum("ba,lbc->lac", lam, rows).reshape(lj * kj, m)
            cols = S[:, o : o + lj * kj].reshape(m, lj, kj)
            S[:, o : o + lj * kj] = np.einsum("rlb,ba->rla", cols, lam).reshape(m, lj * kj)


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
        return B.T @ _times_blocks(G, self.B).reshape(-1, w)

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


def _times_blocks(G: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Level by level G_c B_c for G (l, k, k) and B (l, k, m)."""
    if G.shape[1] == 1:
        return G[:, 0, 0, None, None] * B
    if G.shape[1] == 2:
        out = np.empty_like(B)
        out[:, 0] = G[:, 0, 0, None] * B[:, 0] + G[:, 0, 1, None] * B[:, 1]
        out[:, 1] = G[:, 1, 0, None] * B[:, 0] + G[:, 1, 1, None] * B[:, 1]
        return out
    return np.matmul(G, B)


def _pair_map(R: sp.csr_matrix, k1: int, m: int, lower_only: bool):
    """Sparse map Q with ``(R G R')[i, i'] = (Q @ vec(G))`` at flat index ``i*m + i'``.

    G is block diagonal with one k1 x k1 block per level of the first term; the product's
    pattern depends only on R, so it is built once. Returns (Q, flat target indices)."""
    Rc = R.tocsc()
    Rc.sort_indices()
    ncol = Rc.shape[1]
    counts = np.diff(Rc.indptr)
    col = np.repeat(np.arange(ncol), counts)
    level, a = col // k1, col % k1
    rows, vals = Rc.indices.astype(np.int64), Rc.data
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
    Q = sp.csr_matrix((vals[e1] * vals[e2], (inv, gidx)), shape=(len(uniq), nl * k1 * k1))
    Q.sum_duplicates()
    return Q, uniq
