"""Profiled (RE)ML deviance of a linear mixed model, from the cross-product blocks.

With relative covariance factor Λ(θ) = blockdiag(Λ_1 ⊗ I_{l_1}, ..., Λ_m ⊗ I_{l_m}) and
``V = [X y]`` (weighted: every block is a sum of w_i times a product), the symmetric matrix

    [ Λ'Z'ZΛ + I   Λ'Z'V ]
    [ V'ZΛ         V'V   ]  =  L L'

is factored blockwise (Bates et al. 2015, section 3; MixedModels.jl's ``updateL!``):

1. The first term (most levels) has a block-diagonal ``Z_1'Z_1``: each level's
   ``M_c = Λ_1'A_c Λ_1 + I`` (k_1 x k_1) is factored on its own
   (:mod:`multilevel.engine.kernels`, one kernel per block size).
2. Eliminating it leaves the Schur complement on the other terms and V,

       S = D' (A_rr - A_r1 G A_1r) D + diag(I, 0),   G = blockdiag_c(Λ_1 M_c⁻¹ Λ_1'),

   with ``D = blockdiag(Λ_2, ..., Λ_m, I)``. ``A_r1 G A_1r`` is accumulated through a
   precomputed sparse map from the entries of G (:class:`~multilevel.engine.kernels.PairMap`);
   S is dense and factored by LAPACK.
3. The last diagonal element of chol(S) is r = sqrt(penalised RSS); the X block gives R_X.

    ML:   d(θ) = log|L_θ|² - log|W| + n (1 + log(2π r²/n))
    REML: d(θ) = log|L_θ|² - log|W| + log|R_X|² + (n-p)(1 + log(2π r²/(n-p)))

exactly as lme4 defines them (log|W| = Σ log w_i of the prior weights, lme4's ``ldW``).
Nothing here touches an array of length n. :meth:`ProfiledDeviance.factor` returns the
:class:`~multilevel.engine.factorization.Factorization` that answers everything else.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy.sparse is imported where a model has several terms
    import scipy.sparse as sp

from ..errors import DataError
from .blocks import CrossProducts
from .factorization import Factorization
from .kernels import PairMap, first_block, times_blocks
from .layout import ThetaLayout
from .linalg import cholesky, csr_with_data

#: Largest dense Schur complement (random effects outside the first term) we will form.
MAX_DENSE = 12_000
#: R = Z_r'Z_1 at least this full (and at most :data:`MAX_DENSE_R` entries) is kept dense:
#: A_r1 G A_1r is then one BLAS product, cheaper than the sparse map of its pairs
DENSE_R_FILL = 0.2
MAX_DENSE_R = 4_000_000


class ProfiledDeviance:
    """``d = ProfiledDeviance(cp, correlated, reml)``; ``d(theta)`` is the REML criterion or
    the ML deviance. Precomputes everything that does not depend on θ."""

    def __init__(self, cp: CrossProducts, correlated: list[bool], reml: bool = True):
        self.reml = reml
        self.correlated = list(correlated)
        self.layout = ThetaLayout.build(cp.k, correlated)
        self.n, self.p = cp.n, cp.p
        k1, l1 = cp.k[0], cp.nlevels[0]
        self.k1, self.l1 = k1, l1
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
        self.pairs = None
        self._r_pattern = None
        self.dense_r = False
        if self.qr:
            R = self._stacked_off(cp)
            size = R.shape[0] * R.shape[1]
            self.dense_r = size <= MAX_DENSE_R and R.nnz >= DENSE_R_FILL * size
            if not self.dense_r:
                self.pairs = PairMap(R, k1, m, lower_only=self.rest_scalar)
        self._diag_z = np.arange(self.qr) * (m + 1)
        self.set_blocks(cp)

    def _stacked_off(self, cp: CrossProducts) -> sp.csr_matrix:
        """R = Z_r'Z_1, the other terms' blocks against the first, stacked (q_r, q_1). The
        blocks keep their pattern from one set of weights to the next, so R's is built
        once and its values are the blocks' values one after the other."""
        import scipy.sparse as sp

        blocks = [cp.off[(j, 0)] for j in range(1, len(cp.k))]
        if self._r_pattern is None:
            R = sp.vstack(blocks).tocsr()
            self._r_pattern = R.copy()
            return R
        data = blocks[0].data if len(blocks) == 1 else np.concatenate([b.data for b in blocks])
        return csr_with_data(self._r_pattern, data)

    def set_blocks(self, cp: CrossProducts, response_only: bool = False) -> None:
        """Take the values of ``cp`` (blocks of the same pattern): everything that depends on
        them but not on θ (with ``response_only``, only what depends on the response)."""
        self.cp = cp
        if not response_only:
            self.A11 = cp.diag[0]
            if self.qr:
                self.R = self._stacked_off(cp)
                if self.dense_r:
                    self.Rd = self.R.toarray()
                else:
                    self.Q = self.pairs.matrix(self.R)
                    self.Qrows = self.pairs.targets
        self.B1 = cp.zw[0].reshape(self.l1, self.k1, self.p + 1)
        self.first = first_block(self.A11, self.B1)
        self.Arr = self._static_rest()
        self.ld_xscale = 2.0 * cp.std.log_scale  # REML: log|X'V⁻¹X| of X, not of X_s

    def r_transpose_times(self, B: np.ndarray) -> np.ndarray:
        """R'B (q_1, c) for B (q_r, c), R = Z_r'Z_1 (dense where R is kept dense)."""
        return self.Rd.T @ B if self.dense_r else self.R.T @ B

    def with_crossproducts(self, cp: CrossProducts, reml: bool | None = None):
        """The same model for blocks that differ only in the response (see
        :meth:`multilevel.engine.blocks.BlockPattern.with_response`), or fitted by the other
        criterion. The θ-independent structure (pair map, layout) is shared, not rebuilt."""
        new = copy.copy(self)
        new.reml = self.reml if reml is None else reml
        new.set_blocks(cp, response_only=True)
        return new

    def reweighted(self, cp: CrossProducts) -> ProfiledDeviance:
        """The same model for blocks of the same design with other weights (PIRLS): the
        patterns are shared, every value is refilled."""
        new = copy.copy(self)
        new.set_blocks(cp)
        return new

    @property
    def nu(self) -> int:
        """The degrees of freedom of σ²: n - p (REML) or n (ML)."""
        return self.n - self.p if self.reml else self.n

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

    def factor(self, theta: np.ndarray) -> Factorization | None:
        """The factorization at θ (None where the matrix is not positive definite)."""
        return self._compute(np.asarray(theta, dtype=float), keep=True)

    def objective_from(self, ldL2: float, ldRX2: float, pwrss: float) -> float:
        """The profiled criterion from the log-determinants and the penalised RSS."""
        ldw = self.cp.log_weights
        if self.reml:
            nu = self.n - self.p
            return ldL2 + ldRX2 - ldw + nu * (1.0 + math.log(2.0 * math.pi * pwrss / nu))
        n = self.n
        return ldL2 - ldw + n * (1.0 + math.log(2.0 * math.pi * pwrss / n))

    def _compute(self, theta: np.ndarray, keep: bool):
        lams = self.layout.lambdas(theta)
        qr, m, p = self.qr, self.m, self.p
        logdet1, BGB, G, minv = self.first(lams[0], full=keep or qr > 0)
        S = self.Arr.copy()
        S[qr:, qr:] -= BGB
        if qr:
            GB = times_blocks(G, self.B1).reshape(self.l1 * self.k1, p + 1)
            flat = S.reshape(-1)
            if self.dense_r:  # R G R' and R G B as dense products
                Rd = self.Rd
                RG = times_blocks(G, Rd.T.reshape(self.l1, self.k1, qr)).reshape(-1, qr).T
                RGB = Rd @ GB
                S[:qr, :qr] -= RG @ Rd.T
            else:
                RGB = self.R @ GB
                flat[self.Qrows] -= self.Q @ G.reshape(-1)
            S[qr:, :qr] -= RGB.T
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
        # S is symmetric in its lower triangle, which the kernel of its size factors
        chol = cholesky(S, full=keep)
        if chol is None:
            return math.inf if not keep else None
        d, L = chol
        pwrss = d[-1] ** 2
        if not pwrss > 0:
            return math.inf if not keep else None
        ldL2 = logdet1 + 2.0 * float(np.log(d[:qr]).sum()) if qr else logdet1
        ldRX2 = 2.0 * float(np.log(d[qr : qr + p]).sum()) + self.ld_xscale
        obj = self.objective_from(ldL2, ldRX2, pwrss)
        if not keep:
            return obj
        return Factorization(
            deviance=self,
            theta=theta.copy(),
            lambdas=lams,
            objective=obj,
            M1inv=minv,
            L=L,
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
