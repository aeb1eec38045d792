"""Satterthwaite's denominator degrees of freedom, as lmerTest 3.1 computes them
(Kuznetsova et al. 2017).

The variance parameters are ``φ = (θ, σ)``; the (RE)ML criterion as a function of φ, β
profiled out but σ not, is (``Factorization.criterion``)

    REML: d(θ, σ) = log|L_θ|² + log|R_X|² - log|W| + (n-p) log(2πσ²) + pwrss(θ)/σ²
    ML:   d(θ, σ) = log|L_θ|² - log|W| + n log(2πσ²) + pwrss(θ)/σ²

(equal to the profiled criterion at σ̂). With H its Hessian at φ̂ (θ-derivatives by
Richardson-extrapolated central differences, numDeriv's ``genD`` scheme; σ-derivatives in
closed form), ``A = 2 H⁺`` (the asymptotic covariance of φ̂) and
``V(φ) = σ² T (R_X R_X')⁻¹ T'`` with Jacobian ``J_k = ∂V/∂φ_k``, a one-row contrast l has

    df = 2 (l V l')² / (g' A g),   g_k = l J_k l'.

A q-row contrast is rotated to the eigenvectors of L V L' (``P'L``, q independent t tests
with df ν_m) and ``DenDF = 2E/(E - q)``, ``E = Σ ν_m/(ν_m - 2)`` (2 if any ν_m ≤ 2).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..engine import one_blas_thread
from ..errors import MultilevelError
from ..fitting.derivatives import gen_d


@dataclass
class Satterthwaite:
    """vcov(β̂) (p, p); A = 2 H⁺ (k, k) over φ = (θ, σ); J (k, p, p) = ∂vcov(β̂)/∂φ_k."""

    vcov_beta: np.ndarray
    vcov_varpar: np.ndarray
    jac: np.ndarray

    def t_df(self, c: np.ndarray) -> tuple[float, float]:
        """Variance c V c' and Satterthwaite df of the one-row contrast c (p,)."""
        var = float(c @ self.vcov_beta @ c)
        g = np.einsum("i,kij,j->k", c, self.jac, c)
        denom = float(g @ self.vcov_varpar @ g)
        return var, (2.0 * var**2 / denom if denom > 0 else math.inf)

    def ftest(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, int, float]:
        """(F, q, DenDF) for L (r, p) as lmerTest's contestMD: q = rank(L V L')."""
        if L.shape[0] == 1:
            var, df = self.t_df(L[0])
            return float((L[0] @ beta) ** 2 / var), 1, df
        VL = L @ self.vcov_beta @ L.T
        d, P = np.linalg.eigh(VL)
        d, P = d[::-1], P[:, ::-1]  # decreasing, as R's eigen
        tol = max(np.sqrt(np.finfo(float).eps) * d[0], 0.0)
        q = int((d > tol).sum())
        if q == 0:
            raise MultilevelError("the contrast is zero: there is nothing to test")
        PtL = (P.T @ L)[:q]
        if q == 1:
            var, df = self.t_df(PtL[0])
            return float((PtL[0] @ beta) ** 2 / var), 1, df
        t2 = (PtL @ beta) ** 2 / d[:q]
        nu = np.array([self.t_df(PtL[m])[1] for m in range(q)])
        return float(t2.sum() / q), q, _fstat_ddf(nu)


def _fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """DenDF of an F built from q independent t statistics with df ν (lmerTest)."""
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2)))
    return 2.0 * E / (E - len(nu))


def varpar_deviance(fit, varpar) -> float:
    """The (RE)ML criterion of ``fit`` at φ = (θ, σ), β profiled out, σ not (lmerTest's
    ``devfun_vp``); θ as ``fit.deviance`` takes it (``fit.factorization.theta`` at the
    optimum). Equals ``fit.objective`` at the optimum."""
    varpar = np.asarray(varpar, dtype=float)
    fac = fit.deviance.factor(varpar[:-1])
    return math.inf if fac is None else fac.criterion(varpar[-1])


def _theta_parts(dev, theta) -> np.ndarray:
    """(a(θ), pwrss(θ), vec C(θ)) from one factorisation, where d(θ, σ) = a + ν log(2πσ²) +
    pwrss/σ² (a = log|L_θ|² [+ log|R_X|² for REML], less log|W|) and C = vcov(β̂)/σ²."""
    fac = dev.factor(np.asarray(theta, dtype=float))
    if fac is None:
        raise MultilevelError("the model's covariance is not positive definite near the optimum")
    return np.concatenate([[fac.log_determinants, fac.pwrss], fac.vcov_unscaled.ravel()])


def satterthwaite(fit) -> Satterthwaite:
    """Hessian of d(θ, σ) and Jacobian of vcov(β̂): the θ-derivatives of a, pwrss and C
    numerically (one factorisation per point), the σ-derivatives in closed form:
    ∂²d/∂θ∂θ' = a'' + pwrss''/σ², ∂²d/∂θ∂σ = -2 pwrss'/σ³, ∂²d/∂σ² = -2ν/σ² + 6 pwrss/σ⁴,
    ∂V/∂θ = σ² C', ∂V/∂σ = 2σ C."""
    dev = fit.deviance
    theta = fit.factorization.theta  # df are invariant to the Z scaling of θ at the optimum
    sigma = float(fit.sigma)
    nu = dev.nu
    with one_blas_thread():
        f0, grad, hess = gen_d(lambda t: _theta_parts(dev, t), theta)
    k = len(theta)
    p = dev.p
    w, dw, d2w = f0[1], grad[1], hess[1]
    H = np.empty((k + 1, k + 1))
    H[:k, :k] = hess[0] + d2w / sigma**2
    H[:k, k] = H[k, :k] = -2.0 * dw / sigma**3
    H[k, k] = -2.0 * nu / sigma**2 + 6.0 * w / sigma**4
    if not np.isfinite(H).all():
        raise MultilevelError(
            "the Hessian of the criterion in (theta, sigma) is not finite; "
            "Satterthwaite df are not available for this fit"
        )
    ev, U = np.linalg.eigh((H + H.T) / 2)
    tol = 1e-8
    if (ev < -tol).any():
        warnings.warn(
            f"the Hessian of the criterion has {(ev < -tol).sum()} negative eigenvalue(s) "
            f"({', '.join(f'{v:.1e}' for v in ev[ev < -tol])}): the fit may not have "
            "converged; Satterthwaite df use its positive part",
            stacklevel=3,
        )
    elif (np.abs(ev) <= tol).any():
        warnings.warn(
            "the Hessian of the criterion has eigenvalue(s) close to zero: the variance "
            "parameters are poorly determined (singular fit?)",
            stacklevel=3,
        )
    pos = ev > tol
    A = 2.0 * (U[:, pos] / ev[pos]) @ U[:, pos].T
    C0 = f0[2:].reshape(p, p)
    J = np.empty((k + 1, p, p))
    for i in range(k):
        Ji = sigma**2 * grad[2:, i].reshape(p, p)
        J[i] = (Ji + Ji.T) / 2
    J[k] = 2.0 * sigma * C0
    return Satterthwaite(sigma**2 * C0, A, J)
