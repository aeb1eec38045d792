"""The profiled deviance of many responses at once, for a model with one random-effects
term: the bootstrap's replicates refitted together, each at its own θ, by the same formulas
as :class:`~multilevel.engine.deviance.ProfiledDeviance` (tests compare the two), vectorised
over the replicates."""

from __future__ import annotations

import numpy as np

from .blocks import CrossProducts
from .linalg import solve_triangular


def _chol_logdet_inv(M: np.ndarray):
    """log det and inverse of a stack (..., k, k) of small positive definite matrices, by a
    Cholesky factorisation written out over k (vectorised over the stack: LAPACK called per
    3 x 3 matrix costs more than the arithmetic)."""
    k = M.shape[-1]
    L = np.zeros_like(M)
    for j in range(k):
        L[..., j, j] = np.sqrt(M[..., j, j] - (L[..., j, :j] ** 2).sum(axis=-1))
        for i in range(j + 1, k):
            dot = (L[..., i, :j] * L[..., j, :j]).sum(axis=-1)
            L[..., i, j] = (M[..., i, j] - dot) / L[..., j, j]
    Li = np.zeros_like(M)  # L⁻¹, lower triangular
    for j in range(k):
        Li[..., j, j] = 1.0 / L[..., j, j]
        for i in range(j + 1, k):
            Li[..., i, j] = -(L[..., i, j:i] * Li[..., j:i, j]).sum(axis=-1) / L[..., i, i]
    logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
    return logdet, np.swapaxes(Li, -1, -2) @ Li


class BatchDeviance:
    """The profiled (RE)ML deviance of R responses at once, each at its own θ, for a model
    with one random-effects term (k effects per level, l levels), from the same blocks and
    by the same formulas as :class:`ProfiledDeviance` (tests compare the two):

        M_rc = Λ_r'A_cΛ_r + I,  G_rc = Λ_r M_rc⁻¹ Λ_r'                (R, l, k, k)
        S_r = W_r'W_r - Σ_c B_rc' G_rc B_rc = L_r L_r'                  (R, p+1, p+1)

    with B_rc = [Z_c'X | Z_c'y_r]; only the y column and row differ between replicates.
    ``blocks``: one :class:`CrossProducts` per response (from ``with_response``)."""

    def __init__(self, dev, blocks: list[CrossProducts]):
        cp = dev.cp
        p, k, l1 = dev.p, dev.k1, dev.l1
        self.lay, self.n, self.p, self.k, self.reml = dev.layout, dev.n, p, k, dev.reml
        self.A = cp.diag[0]
        self.BX = cp.zw[0][:, :p].reshape(l1, k, p)
        self.XX = cp.ww[:p, :p]
        zy = np.stack([b.zw[0][:, p] for b in blocks]).reshape(len(blocks), l1, k)
        self.zy = zy
        self.xy = np.stack([b.ww[:p, p] for b in blocks])
        self.yy = np.array([b.ww[p, p] for b in blocks])
        self.ld_x = 2.0 * cp.std.log_scale
        self.std = cp.std
        self.ldw = np.array([b.log_weights for b in blocks])
        # Σ_c B_c'G_c B_c as products with vec(G) (R, l k k): the X'X part through
        # P[(c,a,b), (i,j)] = BX[c,a,i] BX[c,b,j], the X'y part through BX, the y'y part
        # through zy zy'
        BX = self.BX
        self.P = np.einsum("cai,cbj->cabij", BX, BX).reshape(l1 * k * k, p * p)
        self.BXab = np.broadcast_to(BX[:, :, None, :], (l1, k, k, p)).reshape(l1 * k * k, p)
        self.zz = np.einsum("rca,rcb->rcab", zy, zy).reshape(len(blocks), l1 * k * k)
        self.evaluations = 0

    def _first(self, theta: np.ndarray):
        """log det M (R,) and G (R, l, k, k) for θ (R, len θ)."""
        R, k, A = theta.shape[0], self.k, self.A
        lam = np.zeros((R, k, k))
        lam[:, self.lay.row, self.lay.col] = theta
        if k == 1:
            t2 = lam[:, 0, 0, None] ** 2
            m = t2 * A[None, :, 0, 0] + 1.0
            return np.log(m).sum(axis=1), (t2 / m)[:, :, None, None]
        if k == 2:
            l11, l21, l22 = (lam[:, 0, 0, None], lam[:, 1, 0, None], lam[:, 1, 1, None])
            a, b, c = A[None, :, 0, 0], A[None, :, 1, 0], A[None, :, 1, 1]
            u = b * l11 + c * l21
            m00 = a * l11 * l11 + 2.0 * b * l11 * l21 + c * l21 * l21 + 1.0
            m01 = l22 * u
            m11 = c * l22 * l22 + 1.0
            det = m00 * m11 - m01 * m01
            pp, qq, rr = m11 / det, -m01 / det, m00 / det
            G = np.empty((R, A.shape[0], 2, 2))
            G[..., 0, 0] = l11 * l11 * pp
            G[..., 0, 1] = G[..., 1, 0] = l11 * (pp * l21 + qq * l22)
            G[..., 1, 1] = l21 * l21 * pp + 2.0 * l21 * l22 * qq + l22 * l22 * rr
            return np.log(det).sum(axis=1), G
        lamT = np.swapaxes(lam, 1, 2)[:, None]
        M = lamT @ A[None] @ lam[:, None]
        M[..., np.arange(k), np.arange(k)] += 1.0
        logdet, Minv = _chol_logdet_inv(M)
        G = lam[:, None] @ Minv @ lamT
        return logdet.sum(axis=1), G

    def factor(self, theta: np.ndarray, rows: np.ndarray):
        """(objective (R,), chol(S) (R, p+1, p+1), pwrss (R,)) for replicates ``rows`` at θ
        (len(rows), len θ); objective inf where S is not positive definite."""
        self.evaluations += 1
        with np.errstate(all="ignore"):
            return self._factor(theta, rows)

    def _factor(self, theta: np.ndarray, rows: np.ndarray):
        p = self.p
        logdet, G = self._first(theta)
        R = len(rows)
        g = G.reshape(R, -1)  # vec(G_c) level by level, (a, b) within
        gz = (G * self.zy[rows][:, :, None, :]).reshape(R, -1)  # G_c[a, b] zy_c[b]
        S = np.empty((R, p + 1, p + 1))
        # einsum, not BLAS: each replicate's numbers must not depend on the batch it is in
        S[:, :p, :p] = self.XX - np.einsum("ri,ij->rj", g, self.P).reshape(R, p, p)
        S[:, p, :p] = S[:, :p, p] = self.xy[rows] - np.einsum("ri,ij->rj", gz, self.BXab)
        S[:, p, p] = self.yy[rows] - np.einsum("ri,ri->r", g, self.zz[rows])
        obj = np.full(len(rows), np.inf)
        L = np.zeros_like(S)
        ok = np.isfinite(S).all(axis=(1, 2)) & np.isfinite(logdet)
        try:
            L[ok] = np.linalg.cholesky(S[ok])
        except np.linalg.LinAlgError:  # one at a time to find the failures
            for i in np.flatnonzero(ok):
                try:
                    L[i] = np.linalg.cholesky(S[i])
                except np.linalg.LinAlgError:
                    ok[i] = False
        d = np.diagonal(L, axis1=1, axis2=2)
        pwrss = d[:, -1] ** 2
        ok &= pwrss > 0
        n = self.n
        if self.reml:
            nu = n - p
            ldrx = 2.0 * np.log(d[:, :p]).sum(axis=1) + self.ld_x
            val = logdet + ldrx - self.ldw[rows] + nu * (1.0 + np.log(2.0 * np.pi * pwrss / nu))
        else:
            val = logdet - self.ldw[rows] + n * (1.0 + np.log(2.0 * np.pi * pwrss / n))
        ok &= np.isfinite(val)
        obj[ok] = val[ok]
        return obj, L, pwrss

    def __call__(self, theta: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.factor(theta, rows)[0]

    def estimates(self, theta: np.ndarray, rows: np.ndarray):
        """(objective (R,), β (R, p) on the data's scale, σ (R,)) of replicates ``rows`` at θ
        (len(rows), len θ)."""
        obj, L, pwrss = self.factor(theta, rows)
        p = self.p
        beta_s = np.zeros((len(rows), p))
        for j in range(len(rows)):
            if p and np.isfinite(obj[j]):
                beta_s[j] = solve_triangular(L[j, :p, :p].T, L[j, p, :p], lower=False)
        beta = self.std.beta(beta_s)
        nu = self.n - p if self.reml else self.n
        return obj, beta, np.sqrt(pwrss / nu)
