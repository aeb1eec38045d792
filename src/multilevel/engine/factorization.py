"""The factorization at one θ: the one object that answers every quantity of the fit.

Given θ, :meth:`ProfiledDeviance.factor <multilevel.engine.deviance.ProfiledDeviance.factor>`
returns a :class:`Factorization`, and everything else asks it, never recomputes it: the
objective and its log-determinants, β̂, σ̂, vcov(β̂), the criterion at any σ, the
conditional modes, their conditional variances, their coupling to β and exact draws. With
``L_S`` = chol(S) over ``[Z_2..Z_m | X | y]`` (S the Schur complement of the first term,
see :mod:`multilevel.engine.deviance`) and P = Λ'Z'WZΛ + I:

* β̂_s = R_X⁻ᵀ r_Xy,  σ̂² = r²/ν (ν = n - p for REML, n for ML),
  vcov(β̂) = σ² T (R_X R_X')⁻¹ T' (T maps the standardised X back);
* the modes of every column v of V = [X y] (β = 0): u_r(v) = L_ZZ⁻ᵀ l_vZ for the other
  terms and, level by level, u_1(v) = M_c⁻¹ Λ_1'(Z_1'v - Z_1'Z_r Λ_r u_r(v)); so
  b̂(β) = b(y) - b(X) β: the conditional modes at β̂, and their coupling
  H = ∂(-b̂)/∂β to the fixed effects (b̂(β) = b̂ - H (β - β̂));
* Var(b | y, β) = σ² Λ P⁻¹ Λ' (lme4's condVar, β taken as known): its diagonal blocks from
  the block inverse of the factor; with β's uncertainty, Var(b - b̂) = that + H V H' and
  Cov(b - b̂, β - β̂) = -H V;
* exact draws of N(0, P⁻¹): x = L_P⁻ᵀ z with the blocked factor of P, i.e.
  x_r = L_ZZ⁻ᵀ z_r and x_1 = M_c^{-1/2} z_1 - M_c⁻¹ Λ_1' Z_1'Z_r Λ_r x_r.

Everything returned is on the data's scale (θ and b for Z, not for the scaled Z D⁻¹ of the
blocks; β for X, not for the standardised X_s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .layout import theta_for_data
from .linalg import solve_triangular


@dataclass
class Factorization:
    """The factor at θ (``theta`` of the scaled blocks) of ``deviance``, a
    :class:`~multilevel.engine.deviance.ProfiledDeviance`. ``lambdas``: Λ_s of each term;
    ``M1inv`` (l_1, k_1, k_1): (Λ_1'A_cΛ_1 + I)⁻¹; ``L``: lower Cholesky factor of S."""

    deviance: object
    theta: np.ndarray
    lambdas: list[np.ndarray]
    objective: float
    M1inv: np.ndarray
    L: np.ndarray
    pwrss: float
    ldL2: float
    ldRX2: float

    # -- structure ---------------------------------------------------------------------
    @property
    def qr(self) -> int:
        """Random effects outside the first term."""
        return self.deviance.qr

    @property
    def p(self) -> int:
        return self.deviance.p

    @property
    def nu(self) -> int:
        """Degrees of freedom of σ²: n - p (REML) or n (ML)."""
        return self.deviance.nu

    @property
    def _cp(self):
        return self.deviance.cp

    # -- scale and fixed effects ---------------------------------------------------------
    @cached_property
    def sigma(self) -> float:
        """σ̂ = sqrt(pwrss / ν), the profiled residual SD."""
        return math.sqrt(self.pwrss / self.nu)

    @property
    def log_determinants(self) -> float:
        """The part of the criterion free of σ and pwrss: log|L_θ|² (+ log|R_X|² for REML)
        - log|W|."""
        dev = self.deviance
        return self.ldL2 + (self.ldRX2 if dev.reml else 0.0) - dev.cp.log_weights

    def criterion(self, sigma: float) -> float:
        """The (RE)ML criterion at σ (not profiled out; β still is):

            REML: log|L_θ|² + log|R_X|² - log|W| + (n-p) log(2πσ²) + pwrss/σ²
            ML:   log|L_θ|² - log|W| + n log(2πσ²) + pwrss/σ²

        equal to :attr:`objective` at σ = :attr:`sigma`."""
        s2 = sigma**2
        return (
            self.log_determinants
            + self.deviance.nu * math.log(2.0 * math.pi * s2)
            + self.pwrss / s2
        )

    @cached_property
    def _Lx(self) -> np.ndarray:
        qr, p = self.qr, self.p
        return self.L[qr : qr + p, qr : qr + p]

    @cached_property
    def beta_s(self) -> np.ndarray:
        """β̂ for the standardised X_s of the blocks."""
        qr, p = self.qr, self.p
        if not p:
            return np.zeros(0)
        return solve_triangular(self._Lx.T, self.L[-1, qr : qr + p], lower=False)

    @cached_property
    def beta(self) -> np.ndarray:
        """β̂ (p,) on the data's scale."""
        return self._cp.std.beta(self.beta_s)

    @cached_property
    def vcov_unscaled(self) -> np.ndarray:
        """(p, p) vcov(β̂)/σ² = T (R_X R_X')⁻¹ T'."""
        p = self.p
        if not p:
            return np.zeros((0, 0))
        Lxinv = solve_triangular(self._Lx, np.eye(p), lower=True)
        T = self._cp.std.T
        return T @ Lxinv.T @ Lxinv @ T.T

    def vcov(self, sigma: float | None = None) -> np.ndarray:
        """(p, p) vcov(β̂) at σ (default σ̂)."""
        s = self.sigma if sigma is None else sigma
        return s**2 * self.vcov_unscaled

    # -- θ and Λ on the data's scale -------------------------------------------------------
    @cached_property
    def theta_data(self) -> np.ndarray:
        """θ for the unscaled Z (lme4's θ)."""
        return theta_for_data(self.deviance.layout, self.theta, self._cp.z_scale)

    @cached_property
    def lambdas_data(self) -> list[np.ndarray]:
        """Λ_i (k_i, k_i) of each term for the unscaled Z: Λ = D⁻¹Λ_s."""
        return [lam / d[:, None] for lam, d in zip(self.lambdas, self._cp.z_scale, strict=True)]

    # -- conditional modes -----------------------------------------------------------------
    @cached_property
    def _column_spherical(self) -> list[np.ndarray]:
        """Per term (l, k, p+1): the spherical effects u(v) for every column v of
        V = [X_s y_s] with β = 0, b(v) = Λ u(v) (the same for Z and the scaled Z D⁻¹)."""
        dev, cp, L, lams = self.deviance, self._cp, self.L, self.lambdas
        qr, p, l1, k1 = self.qr, self.p, dev.l1, dev.k1
        rest = []
        b_rest = np.zeros((qr, p + 1))
        if qr:
            U = solve_triangular(L[:qr, :qr].T, L[qr:, :qr].T, lower=False)  # (qr, p+1)
            for j in range(1, len(cp.k)):
                o, kj, lj = dev.offsets[j - 1], cp.k[j], cp.nlevels[j]
                u = U[o : o + lj * kj].reshape(lj, kj, p + 1)
                b_rest[o : o + lj * kj] = np.einsum("ab,lbc->lac", lams[j], u).reshape(-1, p + 1)
                rest.append(u)
        c = cp.zw[0] - (dev.r_transpose_times(b_rest) if qr else 0.0)
        c = np.einsum("ba,lbc->lac", lams[0], c.reshape(l1, k1, p + 1))  # Λ_1' c per level
        return [np.einsum("lab,lbc->lac", self.M1inv, c), *rest]

    @cached_property
    def _column_effects(self) -> list[np.ndarray]:
        """Per term (l, k, p+1): b(v) = Λ u(v) (scaled Z)."""
        return [
            np.einsum("ab,lbc->lac", lam, u)
            for lam, u in zip(self.lambdas, self._column_spherical, strict=True)
        ]

    @cached_property
    def spherical(self) -> list[np.ndarray]:
        """The spherical conditional modes u (l, k) of each term at β̂ (b = Λu); Σ ||u||² is
        the penalty of the penalised least squares."""
        p, beta_s = self.p, self.beta_s
        return [u[..., p] - u[..., :p] @ beta_s for u in self._column_spherical]

    @cached_property
    def _effects_data(self) -> list[np.ndarray]:
        return [
            b / d[None, :, None]
            for b, d in zip(self._column_effects, self._cp.z_scale, strict=True)
        ]

    @cached_property
    def modes(self) -> list[np.ndarray]:
        """Conditional modes b̂ (l, k) of each term, at β̂."""
        p, beta_s = self.p, self.beta_s
        return [b[..., p] - b[..., :p] @ beta_s for b in self._effects_data]

    @cached_property
    def fixef_coupling(self) -> list[np.ndarray]:
        """H (l, k, p) of each term: b̂(β) = b̂ - H (β - β̂), so Cov(b - b̂, β - β̂) = -H V."""
        p = self.p
        if not p:
            return [np.zeros(b.shape[:2] + (0,)) for b in self._effects_data]
        Tinv = np.linalg.inv(self._cp.std.T)
        return [b[..., :p] @ Tinv for b in self._effects_data]

    # -- conditional variances -------------------------------------------------------------
    @cached_property
    def _Lzz_inv(self) -> np.ndarray:
        qr = self.qr
        return solve_triangular(self.L[:qr, :qr], np.eye(qr), lower=True)

    @cached_property
    def condvar_unscaled(self) -> list[np.ndarray]:
        """Var(b | y, β)/σ² (l, k, k) of each term: the diagonal blocks of Λ P⁻¹ Λ'."""
        dev, cp, lams = self.deviance, self._cp, self.lambdas
        qr = self.qr
        out = []
        Minv1 = self.M1inv.copy()
        if qr:
            Linv = self._Lzz_inv
            Minv1 += self._first_term_correction(Linv)
        out.append(lams[0] @ Minv1 @ lams[0].T)
        for j in range(1, len(cp.k)):
            o, kj, lj = dev.offsets[j - 1], cp.k[j], cp.nlevels[j]
            C = Linv[:, o : o + lj * kj].reshape(qr, lj, kj)
            Minv = np.einsum("rla,rlb->lab", C, C)
            out.append(lams[j] @ Minv @ lams[j].T)
        return [cv / np.outer(d, d) for cv, d in zip(out, cp.z_scale, strict=True)]

    def condvar(self, sigma: float | None = None) -> list[np.ndarray]:
        """Var(b | y, β) (l, k, k) of each term at σ (default σ̂): lme4's condVar."""
        s2 = (self.sigma if sigma is None else sigma) ** 2
        return [s2 * cv for cv in self.condvar_unscaled]

    def _first_term_correction(self, Linv: np.ndarray) -> np.ndarray:
        """M_11⁻¹ M_1r S⁻¹ M_r1 M_11⁻¹ per level c, with H = M_r1 M_11⁻¹ and K = L_ZZ⁻¹ H."""
        dev, cp, lams = self.deviance, self._cp, self.lambdas
        k1, l1, qr = dev.k1, dev.l1, self.qr
        import scipy.sparse as sp

        left = sp.block_diag(
            [sp.kron(sp.identity(cp.nlevels[j]), lams[j].T) for j in range(1, len(cp.k))]
        ).tocsr()
        right_blocks = lams[0] @ self.M1inv  # (l1, k1, k1): Λ_1 M_c⁻¹
        right = sp.bsr_matrix(
            (right_blocks, np.arange(l1), np.arange(l1 + 1)), shape=(l1 * k1, l1 * k1)
        ).tocsc()
        Ht = (left @ dev.R @ right).T.tocsr()  # H' is sparse: K' = H' L_ZZ⁻ᵀ costs nnz(H) qr
        out = np.empty((l1, k1, k1))
        chunk = max(k1, (4_000_000 // max(qr, 1)) // k1 * k1)
        LinvT = np.ascontiguousarray(Linv.T)
        for s in range(0, l1 * k1, chunk):
            e = min(s + chunk, l1 * k1)
            Kt = np.asarray(Ht[s:e] @ LinvT)
            Kb = Kt.reshape((e - s) // k1, k1, qr)
            out[s // k1 : e // k1] = np.einsum("lar,lbr->lab", Kb, Kb)
        return out

    # -- exact draws -------------------------------------------------------------------------
    def effect_noise(self, rng: np.random.Generator, size: int) -> list[np.ndarray]:
        """``size`` joint draws of b - b̂(β) given y, θ and β at σ = 1: per term (size, l, k),
        exactly N(0, Λ P⁻¹ Λ') across all terms and levels (module docstring). Draw order:
        the first term's z (size, l_1, k_1), then the other terms' (size, q_r)."""
        dev, cp, lams = self.deviance, self._cp, self.lambdas
        l1, k1, qr = dev.l1, dev.k1, self.qr
        root = np.linalg.cholesky(self.M1inv)  # M_c⁻¹ = root root' (M_c ⪰ I)
        x1 = np.einsum("lab,slb->sla", root, rng.standard_normal((size, l1, k1)))
        out_rest = []
        if qr:
            zr = rng.standard_normal((size, qr))
            xr = solve_triangular(self.L[:qr, :qr].T, zr.T, lower=False)  # (qr, size)
            b_rest = np.empty_like(xr)
            for j in range(1, len(cp.k)):
                o, kj, lj = dev.offsets[j - 1], cp.k[j], cp.nlevels[j]
                u = xr[o : o + lj * kj].T.reshape(size, lj, kj)
                b = np.einsum("ab,slb->sla", lams[j], u)
                b_rest[o : o + lj * kj] = b.reshape(size, lj * kj).T
                out_rest.append(b)
            c = dev.r_transpose_times(b_rest).T.reshape(size, l1, k1)
            c = np.einsum("ba,slb->sla", lams[0], c)
            x1 -= np.einsum("lab,slb->sla", self.M1inv, c)
        b1 = np.einsum("ab,slb->sla", lams[0], x1)
        return [b / d for b, d in zip([b1, *out_rest], cp.z_scale, strict=True)]
