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
        out = [np.zeros((kt, kt)) for kt in self.k]
        for i, v in enumerate(theta):
            out[self.term[i]][self.row[i], self.col[i]] = v
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

    def _first_block(self, lam1: np.ndarray):
        """Per level: M_c = Λ'A_cΛ + I, log det, M_c⁻¹ and G_c = Λ M_c⁻¹ Λ'."""
        A = self.A11
        if self.k1 == 1:
            t2 = lam1[0, 0] ** 2
            mdiag = t2 * A[:, 0, 0] + 1.0
            minv = (1.0 / mdiag)[:, None, None]
            return float(np.log(mdiag).sum()), minv, t2 * minv
        if self.k1 == 2:  # closed form, the common intercept-and-slope case
            return _first_block_2x2(lam1, A)
        M = np.einsum("ba,lbc,cd->lad", lam1, A, lam1)
        M[:, np.arange(self.k1), np.arange(self.k1)] += 1.0
        chol = np.linalg.cholesky(M)
        logdet = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
        minv = np.linalg.inv(M)
        G = np.einsum("ab,lbc,dc->lad", lam1, minv, lam1)
        return logdet, minv, G

    def _compute(self, theta: np.ndarray, keep: bool):
        lams = self.layout.lambdas(theta)
        logdet1, minv, G = self._first_block(lams[0])
        qr, m, p = self.qr, self.m, self.p
        GB = _times_blocks(G, self.B1).reshape(self.l1 * self.k1, p + 1)
        B = self.B1.reshape(self.l1 * self.k1, p + 1)
        S = self.Arr.copy()
        S[qr:, qr:] -= B.T @ GB
        if qr:
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


def _first_block_2x2(lam: np.ndarray, A: np.ndarray):
    """:meth:`ProfiledDeviance._first_block` for k = 2, element by element (numpy's stacked
    2 x 2 matmul and inverse cost ~10x more). Λ = [[l11, 0], [l21, l22]], A_c = [[a, b],
    [b, c]]: M = Λ'AΛ + I, M⁻¹ = [[m11, -m01], [-m01, m00]] / det, G = Λ M⁻¹ Λ'."""
    (l11, _), (l21, l22) = lam
    a, b, c = A[:, 0, 0], A[:, 1, 0], A[:, 1, 1]
    u = b * l11 + c * l21
    m00 = a * l11 * l11 + 2.0 * b * l11 * l21 + c * l21 * l21 + 1.0
    m01 = l22 * u
    m11 = c * l22 * l22 + 1.0
    det = m00 * m11 - m01 * m01
    minv = np.empty_like(A)
    p, q, r = m11 / det, -m01 / det, m00 / det
    minv[:, 0, 0], minv[:, 1, 1] = p, r
    minv[:, 0, 1] = minv[:, 1, 0] = q
    G = np.empty_like(A)
    G[:, 0, 0] = l11 * l11 * p
    G[:, 0, 1] = G[:, 1, 0] = l11 * (p * l21 + q * l22)
    G[:, 1, 1] = l21 * l21 * p + 2.0 * l21 * l22 * q + l22 * l22 * r
    return float(np.log(det).sum()), minv, G


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
