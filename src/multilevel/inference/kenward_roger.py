"""Kenward-Roger's adjusted covariance and denominator degrees of freedom (Kenward & Roger
1997), as pbkrtest 0.5.2 computes them (Halekoh & Højsgaard 2014).

``Σ = Var(y) = Σ_r γ_r G_r`` is linear in the covariance parameters γ: per random-effects
term its free covariances (the lower triangle of Var(b_level), k(k+1)/2 of them, or the k
variances of a diagonal term), then σ² (with G = W⁻¹, the inverse prior weights). With
``P_r = -X'Σ⁻¹G_rΣ⁻¹X``, ``Q_rs = X'Σ⁻¹G_rΣ⁻¹G_sΣ⁻¹X``, Φ = vcov(β̂), the expected
information ``I_rs = ½ tr(𝒫 G_r 𝒫 G_s)`` (𝒫 the REML projection) and ``W = I⁻¹``:

    Φ_A = Φ + 2 Φ (Σ_rs W_rs (Q_rs - P_r Φ P_s)) Φ,

and for L of rank q, with ``Θ = L'(LΦL')⁻¹L`` and ``u_r = Θ Φ P_r Φ``,
``A1 = Σ_rs W_rs tr(u_r) tr(u_s)``, ``A2 = Σ_rs W_rs tr(u_r u_s)``; from them the scaling λ and
the denominator df m of ``F = λ (Lβ̂)'(LΦ_A L')⁻¹(Lβ̂)/q ~ F(q, m)`` (see :func:`kr_ddf`).
This needs the dense n x n Σ⁻¹: time O(n³), memory O(n²); above :data:`KR_MAX_N`
observations it is refused rather than run for minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..engine import one_blas_thread
from ..errors import MultilevelError

#: Largest number of observations for Kenward-Roger (dense n x n covariance, O(n³)).
KR_MAX_N = 5000


@dataclass
class KenwardRoger:
    """Φ = vcov(β̂) (p, p), the adjusted Φ_A (p, p), P_r (m, p, p) and W = I⁻¹ (m, m)."""

    phi: np.ndarray
    phi_adj: np.ndarray
    P: np.ndarray
    W: np.ndarray

    def _a1a2(self, L: np.ndarray) -> tuple[float, float]:
        phi = self.phi
        Theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
        TP = Theta @ phi
        u = np.einsum("ab,rbc,cd->rad", TP, self.P, phi)  # u_r = Θ Φ P_r Φ
        tr = np.einsum("raa->r", u)
        A1 = float(tr @ self.W @ tr)
        uu = np.einsum("rab,sba->rs", u, u)  # tr(u_r u_s)
        A2 = float(np.sum(self.W * uu))
        return A1, A2

    def ddf(self, L: np.ndarray) -> float:
        """KR denominator df for L (q, p) of full row rank."""
        A1, A2 = self._a1a2(L)
        return kr_ddf(A1, A2, L.shape[0])[0]

    def ftest(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, float, int, float]:
        """(unscaled F with Φ_A, scaling λ, q, ddf) for L (q, p) of full row rank."""
        q = L.shape[0]
        A1, A2 = self._a1a2(L)
        df2, scaling = kr_ddf(A1, A2, q)
        Lb = L @ beta
        wald = float(Lb @ np.linalg.solve(L @ self.phi_adj @ L.T, Lb))
        return wald / q, scaling, q, df2


def kr_ddf(A1: float, A2: float, q: int) -> tuple[float, float]:
    """(m, λ) from A1, A2 (Kenward & Roger 1997, eqs. as pbkrtest's ``.KR_adjust``)."""
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    den = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    V0 = 1 + c1 * B
    V1 = 1 - c2 * B
    V2 = 1 - c3 * B
    if abs(V0) < 1e-10:
        V0 = 0.0
    x = 1 - A2 / q
    ratio = 1.0 if abs(x) < 1e-14 and abs(V1) < 1e-14 else x / V1
    rho = ratio**2 * V0 / V2 / q
    df2 = 4 + (q + 2) / (q * rho - 1) if q * rho != 1 else math.inf
    scaling = 1.0 if abs(df2 - 2) < 1e-2 else df2 * (1 - A2 / q) / (df2 - 2)
    return float(df2), float(scaling)


def _random_design(fit):
    """Z (n, q) sparse, columns ordered term, component, level; per-term column offsets and
    the covariance matrices Var(b_level) = σ² Λ_t Λ_t'."""
    import scipy.sparse as sp

    frame = fit.frame
    n = frame.n
    blocks, offsets, covs = [], [], []
    off = 0
    lams = fit.lambdas
    rows = np.arange(n)
    for rt, lam in zip(frame.reterms, lams, strict=True):
        nlev, k = rt.nlevels, rt.k
        for a in range(k):
            blocks.append(sp.csc_matrix((rt.Z[:, a], (rows, rt.codes)), shape=(n, nlev)))
        offsets.append(off)
        off += nlev * k
        covs.append(fit.sigma**2 * lam @ lam.T)
    Z = sp.hstack(blocks).tocsc() if blocks else sp.csc_matrix((n, 0))
    return Z, offsets, covs


def kenward_roger(fit) -> KenwardRoger:
    """Φ, Φ_A, P_r and W of a REML fit (module docstring)."""
    import scipy.linalg
    import scipy.sparse as sp

    frame, layout = fit.frame, fit.deviance.layout
    X = np.asarray(frame.X, dtype=float)
    n, p = X.shape
    sigma2 = fit.sigma**2
    Z, offsets, covs = _random_design(fit)
    # Parameters: (C, D) column-index arrays with G_r = Σ_c z_{C[c]} z_{D[c]}'; None = σ².
    params: list = []
    for t, rt in enumerate(frame.reterms):
        nlev = rt.nlevels
        cols = [offsets[t] + a * nlev + np.arange(nlev) for a in range(rt.k)]
        sel = layout.term == t
        for a, b in zip(layout.row[sel], layout.col[sel], strict=True):
            if a == b:
                params.append((cols[a], cols[a]))
            else:
                params.append(
                    (np.concatenate([cols[a], cols[b]]), np.concatenate([cols[b], cols[a]]))
                )
    params.append(None)
    m = len(params)
    # σ²'s G is W⁻¹ = U U' with U = diag(1/sqrt(w)) (the identity without weights)
    sw = np.ones(n) if frame.weights is None else 1.0 / np.sqrt(frame.weights)
    with one_blas_thread():
        # Σ = Z (⊕_t C_t ⊗ I_l) Z' + σ² I, dense.
        D = (
            sp.block_diag(
                [
                    sp.kron(sp.csr_matrix(cov), sp.identity(rt.nlevels))
                    for rt, cov in zip(frame.reterms, covs, strict=True)
                ]
            )
            if covs
            else sp.csr_matrix((0, 0))
        )
        Sigma = np.asarray((Z @ D @ Z.T).todense())
        Sigma[np.diag_indices(n)] += sigma2 * sw**2
        c, info = scipy.linalg.lapack.dpotrf(Sigma, lower=1, overwrite_a=1)
        if info == 0:
            c, info = scipy.linalg.lapack.dpotri(c, lower=1, overwrite_c=1)
        if info != 0:
            raise MultilevelError("the fitted covariance of y is not positive definite")
        Si = np.tril(c)
        Si += np.tril(Si, -1).T  # Σ⁻¹ from its lower triangle
        del Sigma, c
        SZ = np.asarray((Z.T @ Si).T)  # Σ⁻¹Z (n, q)
        K = np.asarray(Z.T @ SZ)  # Z'Σ⁻¹Z (q, q)
        SX = Si @ X  # Σ⁻¹X (n, p)
        ZX = np.asarray(Z.T @ SX)  # Z'Σ⁻¹X (q, p)

        SXw = sw[:, None] * SX

        def ux(r):  # (U_r'Σ⁻¹X, V_r'Σ⁻¹X)
            if params[r] is None:
                return SXw, SXw
            C, Dd = params[r]
            return ZX[C], ZX[Dd]

        def mid(r, s):  # V_r'Σ⁻¹U_s
            pr, ps = params[r], params[s]
            if pr is not None and ps is not None:
                return K[np.ix_(pr[1], ps[0])]
            if pr is not None:
                return SZ[:, pr[1]].T * sw[None, :]
            if ps is not None:
                return sw[:, None] * SZ[:, ps[0]]
            return sw[:, None] * Si * sw[None, :]

        P = np.empty((m, p, p))
        UX = [ux(r) for r in range(m)]
        for r in range(m):
            Pr = -UX[r][0].T @ UX[r][1]
            P[r] = (Pr + Pr.T) / 2
        Q = np.empty((m, m, p, p))
        Kt = np.empty((m, m))
        for r in range(m):
            for s in range(r, m):
                Mrs = mid(r, s)
                Q[r, s] = UX[r][0].T @ Mrs @ UX[s][1]
                Q[s, r] = Q[r, s].T
                Kt[r, s] = Kt[s, r] = float(np.sum(Mrs * mid(s, r).T))
        phi = fit.vcov.to_numpy()
        IE2 = np.empty((m, m))
        for r in range(m):
            PhiPr = phi @ P[r]
            for s in range(r, m):
                IE2[r, s] = IE2[s, r] = (
                    Kt[r, s] - 2 * np.sum(phi * Q[r, s]) + np.sum(PhiPr * (P[s] @ phi))
                )
        # W = 2 IE2⁻¹, inverted after equilibration: the parameters' scales follow the
        # data's (a slope on a predictor at 1e4 has a variance at 1e-8), and the raw IE2 can
        # be too ill-conditioned to invert although the problem is not.
        dsc = np.sqrt(np.abs(np.diag(IE2)))
        dsc[dsc == 0] = 1.0
        E = IE2 / np.outer(dsc, dsc)
        cond = np.min(np.abs(np.linalg.eigvalsh(E)))
        W = 2 * (np.linalg.inv(E) if cond > 1e-10 else np.linalg.pinv(E)) / np.outer(dsc, dsc)
        W = (W + W.T) / 2
        U = np.zeros((p, p))
        for r in range(m):
            for s in range(m):
                U += W[r, s] * (Q[r, s] - P[r] @ phi @ P[s])
        phi_adj = phi + 2 * phi @ U @ phi
    return KenwardRoger(phi, (phi_adj + phi_adj.T) / 2, P, W)
