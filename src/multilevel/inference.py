"""Fixed-effect t and F tests with Satterthwaite or Kenward-Roger denominator df.

Both methods test ``H0: L β = 0`` for a contrast matrix L (q, p) with the Wald statistic
``F = (Lβ̂)'(L V L')⁻¹(Lβ̂) / q`` (q = 1: ``t = Lβ̂ / sqrt(L V L')``) and differ in V and in
the denominator degrees of freedom.

**Satterthwaite** (as lmerTest 3.1 computes it; Kuznetsova et al. 2017). The variance
parameters are ``φ = (θ, σ)``; the (RE)ML criterion as a function of φ, β profiled out but σ
not, is

    REML: d(θ, σ) = log|L_θ|² + log|R_X|² + (n-p) log(2πσ²) + pwrss(θ)/σ²
    ML:   d(θ, σ) = log|L_θ|² + n log(2πσ²) + pwrss(θ)/σ²

(equal to the profiled criterion at σ̂). With H its Hessian at φ̂ (θ-derivatives by
Richardson-extrapolated central differences, numDeriv's ``genD`` scheme; σ-derivatives in
closed form), ``A = 2 H⁺`` (the asymptotic covariance of φ̂) and
``V(φ) = σ² T (R_X R_X')⁻¹ T'`` (T maps the standardised X of the blocks back) with Jacobian
``J_k = ∂V/∂φ_k``, a one-row contrast l has

    df = 2 (l V l')² / (g' A g),   g_k = l J_k l'.

A q-row contrast is rotated to the eigenvectors of L V L' (``P'L``, q independent t tests
with df ν_m) and ``DenDF = 2E/(E - q)``, ``E = Σ ν_m/(ν_m - 2)`` (2 if any ν_m ≤ 2).

**Kenward-Roger** (Kenward & Roger 1997, as pbkrtest 0.5.2 computes it; Halekoh &
Højsgaard 2014). ``Σ = Var(y) = Σ_r γ_r G_r`` is linear in the covariance parameters γ: per
random-effects term its free covariances (the lower triangle of Var(b_level), k(k+1)/2 of
them, or the k variances of a diagonal term), then σ². With ``P_r = -X'Σ⁻¹G_rΣ⁻¹X``,
``Q_rs = X'Σ⁻¹G_rΣ⁻¹G_sΣ⁻¹X``, Φ = vcov(β̂), the expected information ``I_rs = ½ tr(𝒫 G_r 𝒫
G_s)`` (𝒫 the REML projection) and ``W = I⁻¹``:

    Φ_A = Φ + 2 Φ (Σ_rs W_rs (Q_rs - P_r Φ P_s)) Φ,

and for L of rank q, with ``Θ = L'(LΦL')⁻¹L`` and ``u_r = Θ Φ P_r Φ``,
``A1 = Σ_rs W_rs tr(u_r) tr(u_s)``, ``A2 = Σ_rs W_rs tr(u_r u_s)``; from them the scaling λ and
the denominator df m of ``F = λ (Lβ̂)'(LΦ_A L')⁻¹(Lβ̂)/q ~ F(q, m)`` (see :func:`_kr_ddf`).
This needs the dense n x n Σ⁻¹: time O(n³), memory O(n²); above :data:`KR_MAX_N`
observations it raises rather than run for minutes.

t tests: ``p = 2 P(T_df > |t|)``; F tests: ``P(F(q, DenDF) > F)``. Type III contrasts
(:func:`type3_contrasts`) follow lmerTest's ``anova`` (SAS Type III); they need each factor of
an interaction that contains a lower-order term to appear as a main effect too.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp
from scipy import stats

from .errors import MultilevelError

#: Largest number of observations for Kenward-Roger (dense n x n covariance, O(n³)).
KR_MAX_N = 5000

_METHODS = {
    "satterthwaite": "satterthwaite",
    "kenward-roger": "kenward-roger",
    "kenward_roger": "kenward-roger",
    "kr": "kenward-roger",
}

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------------------------
# public entry points
# ----------------------------------------------------------------------------------------
def fixef_tests(fit, ddf: str = "satterthwaite") -> pd.DataFrame:
    """t tests of each fixed effect: a DataFrame indexed by coefficient name with columns
    Estimate, Std. Error, df, t value, Pr(>|t|).

    ``ddf="satterthwaite"``: Std. Error from vcov(β̂), Satterthwaite df (lmerTest's
    ``summary``). ``ddf="kenward-roger"``: Std. Error from the adjusted Φ_A, KR df of the
    one-row contrast (lmerTest's ``summary(m, ddf="Kenward-Roger")``)."""
    method = _method(ddf)
    _check_fit(fit, method)
    names = list(fit.fixef.index)
    beta = fit.fixef.to_numpy()
    p = len(beta)
    cols = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    if p == 0:
        return pd.DataFrame(columns=cols, dtype=float)
    se = np.empty(p)
    df = np.empty(p)
    if method == "satterthwaite":
        sat = _satterthwaite(fit)
        for j in range(p):
            var, df[j] = sat.t_df(np.eye(p)[j])
            se[j] = math.sqrt(var)
    else:
        kr = _kenward_roger(fit)
        for j in range(p):
            e = np.eye(p)[j]
            se[j] = math.sqrt(float(e @ kr.phi_adj @ e))
            df[j] = kr.ddf(e[None, :])
    tval = beta / se
    pval = 2.0 * stats.t.sf(np.abs(tval), df)
    out = pd.DataFrame(
        {"Estimate": beta, "Std. Error": se, "df": df, "t value": tval, "Pr(>|t|)": pval},
        index=pd.Index(names),
    )
    return out[cols]


def anova_type3(fit, ddf: str = "satterthwaite") -> pd.DataFrame:
    """Type III F tests, one row per fixed-effects term (the intercept is not a term), as
    lmerTest's ``anova(m)``: columns Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F).

    Mean Sq = F σ̂², Sum Sq = Mean Sq x NumDF. With Kenward-Roger, Mean Sq uses the unscaled
    F (Wald statistic with Φ_A over q) and F value is the scaled one, as pbkrtest's
    ``KRmodcomp``."""
    method = _method(ddf)
    _check_fit(fit, method)
    contrasts = type3_contrasts(fit)
    cols = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    rows = {}
    for term, L in contrasts.items():
        rows[term] = contrast_test(fit, L, ddf=method)
    if not rows:
        return pd.DataFrame(columns=cols, dtype=float)
    out = pd.DataFrame.from_dict(rows, orient="index")
    return out[cols]


def contrast_test(fit, L, ddf: str = "satterthwaite") -> dict:
    """F test of ``L β = 0`` for a contrast matrix L (q, p) (a vector is one row): a dict
    with Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F) (lmerTest's ``contestMD``)."""
    method = _method(ddf)
    _check_fit(fit, method)
    beta = fit.fixef.to_numpy()
    p = len(beta)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if L.shape[1] != p:
        raise MultilevelError(
            f"the contrast has {L.shape[1]} columns; the model has {p} fixed effects"
        )
    if not np.isfinite(L).all():
        raise MultilevelError("the contrast has missing or infinite entries")
    sigma2 = fit.sigma**2
    if method == "kenward-roger":
        kr = _kenward_roger(fit)
        Lr = _row_basis(L, fit.vcov.to_numpy())
        if Lr.shape[0] == 0:
            raise MultilevelError("the contrast is zero: there is nothing to test")
        F_unscaled, scaling, q, den = kr.ftest(Lr, beta)
        Fval = F_unscaled * scaling
        ms = F_unscaled * sigma2
    else:
        sat = _satterthwaite(fit)
        Fval, q, den = sat.ftest(L, beta)
        ms = Fval * sigma2
    return {
        "Sum Sq": ms * q,
        "Mean Sq": ms,
        "NumDF": float(q),
        "DenDF": den,
        "F value": Fval,
        "Pr(>F)": float(stats.f.sf(Fval, q, den)),
    }


def _method(ddf) -> str:
    key = str(ddf).strip().lower() if isinstance(ddf, str) else None
    if key not in _METHODS:
        raise MultilevelError(f"unknown ddf method {ddf!r}; use 'satterthwaite' or 'kenward-roger'")
    return _METHODS[key]


def _check_fit(fit, method: str) -> None:
    if getattr(fit, "family", None) != "gaussian" or not hasattr(fit, "_deviance"):
        raise MultilevelError(
            f"denominator-df tests need a linear mixed model fit, not {type(fit).__name__}"
        )
    if method == "kenward-roger":
        if not fit.reml:
            raise MultilevelError(
                "Kenward-Roger's method is defined for REML fits only; refit with "
                "fit.refit(reml=True) or use ddf='satterthwaite'"
            )
        if fit.nobs > KR_MAX_N:
            raise MultilevelError(
                f"Kenward-Roger needs the dense {fit.nobs} x {fit.nobs} covariance of y "
                f"(time O(n³)); it is limited to {KR_MAX_N} observations: use "
                "ddf='satterthwaite'"
            )


def _cached(fit, key, build):
    try:
        store = _CACHE.setdefault(fit, {})
    except TypeError:  # not weak-referenceable: compute every time
        return build()
    if key not in store:
        store[key] = build()
    return store[key]


def _blas(fit):
    from .api import blas_threads_for

    return blas_threads_for(fit._deviance)


# ----------------------------------------------------------------------------------------
# Satterthwaite
# ----------------------------------------------------------------------------------------
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
    ``devfun_vp``); θ as ``fit._deviance`` takes it (see :func:`_deviance_theta`). Equals
    ``fit.objective`` at the optimum."""
    dev = fit._deviance
    varpar = np.asarray(varpar, dtype=float)
    fac = dev.factor(varpar[:-1])
    if fac is None:
        return math.inf
    s2 = varpar[-1] ** 2
    n, p = dev.n, dev.p
    if fit.reml:
        return fac.ldL2 + fac.ldRX2 + (n - p) * math.log(2 * math.pi * s2) + fac.pwrss / s2
    return fac.ldL2 + n * math.log(2 * math.pi * s2) + fac.pwrss / s2


def _deviance_theta(fit) -> np.ndarray:
    """θ̂ as ``fit._deviance`` takes it: for the scaled columns Z D⁻¹ (``blocks.z_scales``),
    element (row, col) of Λ_t times d_row; ``fit.theta`` is on the data's scale."""
    layout, scales = fit._layout, fit._cp.z_scale
    d = np.array([scales[t][r] for t, r in zip(layout.term, layout.row, strict=True)])
    return np.asarray(fit.theta, dtype=float) * d


def _satterthwaite(fit) -> Satterthwaite:
    return _cached(fit, "satterthwaite", lambda: _build_satterthwaite(fit))


def _theta_parts(dev, reml: bool, theta) -> np.ndarray:
    """(a(θ), pwrss(θ), vec C(θ)) from one factorisation, where d(θ, σ) = a + ν log(2πσ²) +
    pwrss/σ² (a = log|L_θ|² [+ log|R_X|² for REML]) and C = vcov(β̂)/σ² = T (R_X R_X')⁻¹ T'
    (the blocks hold the standardised X_s of ``blocks.Standardization``, β = T β_s)."""
    fac = dev.factor(np.asarray(theta, dtype=float))
    if fac is None:
        raise MultilevelError("the model's covariance is not positive definite near the optimum")
    qr, p = fac.qr, dev.p
    Lx = fac.L[qr : qr + p, qr : qr + p]
    Li = scipy.linalg.solve_triangular(Lx, np.eye(p), lower=True) @ dev.cp.std.T.T
    a = fac.ldL2 + (fac.ldRX2 if reml else 0.0)
    return np.concatenate([[a, fac.pwrss], (Li.T @ Li).ravel()])


def _build_satterthwaite(fit) -> Satterthwaite:
    """Hessian of d(θ, σ) and Jacobian of vcov(β̂): the θ-derivatives of a, pwrss and C
    numerically (one factorisation per point), the σ-derivatives in closed form:
    ∂²d/∂θ∂θ' = a'' + pwrss''/σ², ∂²d/∂θ∂σ = -2 pwrss'/σ³, ∂²d/∂σ² = -2ν/σ² + 6 pwrss/σ⁴,
    ∂V/∂θ = σ² C', ∂V/∂σ = 2σ C."""
    dev = fit._deviance
    theta = _deviance_theta(fit)  # df are invariant to this rescaling of θ at the optimum
    sigma = float(fit.sigma)
    nu = dev.n - dev.p if fit.reml else dev.n
    with _blas(fit):
        f0, grad, hess = gen_d(lambda t: _theta_parts(dev, fit.reml, t), theta)
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


# -- Richardson-extrapolated derivatives (numDeriv's genD) --------------------------------
_ZERO_TOL = math.sqrt(np.finfo(float).eps / 7e-7)


def _richardson(a: list) -> np.ndarray:
    """Extrapolate estimates at steps h, h/2, h/4, ... (errors in h², h⁴, ...)."""
    a = [np.asarray(v, dtype=float) for v in a]
    for m in range(1, len(a)):
        a = [(a[k + 1] * 4**m - a[k]) / (4**m - 1) for k in range(len(a) - 1)]
    return a[0]


def gen_d(F, x, d: float = 0.1, eps: float = 1e-4, r: int = 4):
    """F(x) (m,), its Jacobian (m, k) and second derivatives (m, k, k) as numDeriv's ``genD``:
    central differences at steps h = d|x_i| (eps where x_i ≈ 0), h/2, ..., h/2^(r-1),
    Richardson-extrapolated; the mixed ones from F(x ± (h_i e_i + h_j e_j)) and the pure."""
    x = np.asarray(x, dtype=float)
    k = len(x)
    f0 = np.atleast_1d(np.asarray(F(x), dtype=float))
    h0 = np.abs(d * x) + eps * (np.abs(x) < _ZERO_TOL)
    grad = np.empty((len(f0), k))
    hess = np.empty((len(f0), k, k))
    for i in range(k):
        g, s = [], []
        for lev in range(r):
            h = h0[i] / 2**lev
            e = np.zeros(k)
            e[i] = h
            f1, f2 = np.atleast_1d(F(x + e)), np.atleast_1d(F(x - e))
            g.append((f1 - f2) / (2 * h))
            s.append((f1 - 2 * f0 + f2) / h**2)
        grad[:, i] = _richardson(g)
        hess[:, i, i] = _richardson(s)
    for i in range(k):
        for j in range(i):
            s = []
            for lev in range(r):
                hi, hj = h0[i] / 2**lev, h0[j] / 2**lev
                e = np.zeros(k)
                e[i], e[j] = hi, hj
                f1, f2 = np.atleast_1d(F(x + e)), np.atleast_1d(F(x - e))
                num = f1 - 2 * f0 + f2 - hess[:, i, i] * hi**2 - hess[:, j, j] * hj**2
                s.append(num / (2 * hi * hj))
            hess[:, i, j] = hess[:, j, i] = _richardson(s)
    return f0, grad, hess


def hessian(f, x, d: float = 0.1, eps: float = 1e-4, r: int = 4) -> np.ndarray:
    """Hessian (k, k) of a scalar function (see :func:`gen_d`)."""
    return gen_d(lambda v: [f(v)], x, d, eps, r)[2][0]


# ----------------------------------------------------------------------------------------
# Kenward-Roger
# ----------------------------------------------------------------------------------------
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
        return _kr_ddf(A1, A2, L.shape[0])[0]

    def ftest(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, float, int, float]:
        """(unscaled F with Φ_A, scaling λ, q, ddf) for L (q, p) of full row rank."""
        q = L.shape[0]
        A1, A2 = self._a1a2(L)
        df2, scaling = _kr_ddf(A1, A2, q)
        Lb = L @ beta
        wald = float(Lb @ np.linalg.solve(L @ self.phi_adj @ L.T, Lb))
        return wald / q, scaling, q, df2


def _kr_ddf(A1: float, A2: float, q: int) -> tuple[float, float]:
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


def _kenward_roger(fit) -> KenwardRoger:
    return _cached(fit, "kenward-roger", lambda: _build_kenward_roger(fit))


def _random_design(fit):
    """Z (n, q) sparse, columns ordered term, component, level; per-term column offsets and
    the covariance matrices Var(b_level) = σ² Λ_t Λ_t'."""
    frame = fit._frame
    n = frame.n
    blocks, offsets, covs = [], [], []
    off = 0
    lams = fit._layout.lambdas(np.asarray(fit.theta, dtype=float))
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


def _build_kenward_roger(fit) -> KenwardRoger:
    frame, layout = fit._frame, fit._layout
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
    with _blas(fit):
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
        Sigma[np.diag_indices(n)] += sigma2
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

        def ux(r):  # (U_r'Σ⁻¹X, V_r'Σ⁻¹X)
            if params[r] is None:
                return SX, SX
            C, Dd = params[r]
            return ZX[C], ZX[Dd]

        def mid(r, s):  # V_r'Σ⁻¹U_s
            pr, ps = params[r], params[s]
            if pr is not None and ps is not None:
                return K[np.ix_(pr[1], ps[0])]
            if pr is not None:
                return SZ[:, pr[1]].T
            if ps is not None:
                return SZ[:, ps[0]]
            return Si

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


def _row_basis(L: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Rows spanning the row space of L, as contestMD ranks it (eigenvalues of L V L')."""
    d, P = np.linalg.eigh(L @ V @ L.T)
    d, P = d[::-1], P[:, ::-1]
    tol = max(np.sqrt(np.finfo(float).eps) * d[0], 0.0)
    q = int((d > tol).sum())
    if q == L.shape[0]:
        return L
    return (P.T @ L)[:q]


# ----------------------------------------------------------------------------------------
# Type III contrasts
# ----------------------------------------------------------------------------------------
@dataclass
class _Term:
    name: str
    factors: list[str]  # factor expressions
    cols: list[int]  # columns of the fit's X


@dataclass
class _Factor:
    expr: str
    numeric: bool  # a single numeric column (R's "numeric" data class)
    categorical: bool
    coding: np.ndarray | None = None  # full coding (n, c): indicators or values


def _fixed_terms(fit) -> tuple[list[_Term], bool, dict]:
    """Terms of the fixed part (intercept apart) with their columns in X; whether there is an
    intercept; the encoder kind of each factor."""
    frame = fit._frame
    spec = frame.fixed_spec
    if spec is None:
        raise MultilevelError("the fit has no fixed-effects specification to build tests from")
    index = {name: j for j, name in enumerate(frame.xnames)}
    terms, intercept = [], False
    kinds = {}
    for st in spec.structure:
        cols = ["(Intercept)" if c == "Intercept" else str(c) for c in st.columns]
        factors = [f.expr for f in st.term.factors]
        if str(st.term) == "1" or factors == ["1"]:
            intercept = "(Intercept)" in index
            continue
        keep = [index[c] for c in cols if c in index]
        terms.append(_Term(str(st.term), factors, keep))
    for expr, state in spec.encoder_state.items():
        kinds[expr] = state
    return terms, intercept, kinds


def _is_categorical(state) -> bool:
    kind = state[0] if isinstance(state, tuple) else None
    return getattr(kind, "value", str(kind)) == "categorical"


def _containment(terms: list[_Term], factors: dict[str, _Factor]) -> dict[str, list[str]]:
    """For each term, the terms containing it (SAS; lmerTest's ``containment``): F1 is
    contained in F2 if all variables of F1 are in F2, F2 has more, and both involve the same
    numeric variables."""
    out = {}
    for t1 in terms:
        v1 = set(t1.factors)
        n1 = {f for f in v1 if factors[f].numeric}
        out[t1.name] = [
            t2.name
            for t2 in terms
            if v1 <= set(t2.factors)
            and set(t2.factors) - v1
            and n1 == {f for f in t2.factors if factors[f].numeric}
        ]
    return out


def _level_codes(block: np.ndarray, state) -> np.ndarray:
    """Full indicator coding (n, levels) of a categorical factor from its main-effect columns
    (n, c) of X, levels in formulaic's order when its coding matrix identifies them."""
    uniq, inv = np.unique(np.round(block, 12), axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    order = None
    contrasts = state[1].get("contrasts") if isinstance(state, tuple) and state[1] else None
    if contrasts is not None:
        for reduced in (True, False):
            try:
                cm = np.asarray(contrasts.get_coding_matrix(reduced_rank=reduced), dtype=float)
            except Exception:  # noqa: BLE001 - formulaic contrasts vary
                continue
            if cm.shape[1] != block.shape[1]:
                continue
            pos = []
            for row in uniq:
                hit = np.flatnonzero(np.all(np.abs(cm - row) < 1e-9, axis=1))
                pos.append(int(hit[0]) if len(hit) == 1 else -1)
            if -1 not in pos:
                order = np.argsort(pos, kind="stable")
                break
    if order is None:  # the all-zero row (treatment reference) first, then the others
        zero = np.all(np.abs(uniq) < 1e-12, axis=1)
        order = np.concatenate([np.flatnonzero(zero), np.flatnonzero(~zero)])
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    codes = rank[inv]
    return np.eye(len(uniq))[codes]


def _factor_codings(fit, terms: list[_Term], kinds: dict) -> dict[str, _Factor]:
    """Each factor's full coding, read from its main-effect term in X (None if it has none)."""
    X = np.asarray(fit._frame.X, dtype=float)
    main = {t.factors[0]: t for t in terms if len(t.factors) == 1}
    out = {}
    for t in terms:
        for f in t.factors:
            if f in out:
                continue
            state = kinds.get(f)
            categorical = state is not None and _is_categorical(state)
            coding = None
            if f in main and main[f].cols:
                block = X[:, main[f].cols]
                coding = _level_codes(block, state) if categorical else block
            ncol = coding.shape[1] if coding is not None else None
            numeric = not categorical and ncol in (1, None)
            out[f] = _Factor(f, numeric, categorical, coding)
    return out


def _khatri_rao(mats: list[np.ndarray]) -> tuple[np.ndarray, list[tuple]]:
    """Row-wise products of the columns of each matrix, the first varying fastest (R's
    column order); with the index tuple of each column."""
    out = np.ones((mats[0].shape[0], 1))
    idx: list[tuple] = [()]
    for M in mats:
        out = (M[:, None, :] * out[:, :, None]).reshape(out.shape[0], -1, order="F")
        idx = [ix + (j,) for j in range(M.shape[1]) for ix in idx]
    return out, idx


def _independent(M: np.ndarray, cand: list[int], tol: float = 1e-7) -> list[int]:
    """Greedy: the columns of ``cand`` (in order) that raise the rank (R's ensure_full_rank)."""
    keep: list[int] = []
    Q = np.zeros((M.shape[0], 0))
    for c in cand:
        v = M[:, c]
        nv = np.linalg.norm(v)
        if nv == 0:
            continue
        res = v - Q @ (Q.T @ v)
        res = res - Q @ (Q.T @ res)
        if np.linalg.norm(res) > tol * nv:
            keep.append(c)
            Q = np.column_stack([Q, res / np.linalg.norm(res)])
    return keep


def _doolittle_rows(X: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """t(L) of lmerTest's ``doolittle(X'X)``: unit upper-triangular Type I contrasts (p, p)."""
    x = X.T @ X
    n = x.shape[0]
    L = np.eye(n)
    U = np.zeros((n, n))
    for i in range(n):
        U[i, :] = x[i, :] - L[i, :i] @ U[:i, :]
        for j in range(i + 1, n):
            v = x[j, i] - L[j, :i] @ U[:i, i]
            L[j, i] = 0.0 if abs(U[i, i]) < eps else v / U[i, i]
    L[np.abs(L) < eps] = 0.0
    return L.T


def type3_contrasts(fit) -> dict[str, np.ndarray]:
    """Type III contrast matrix (rows, p) of each fixed-effects term, as lmerTest's
    ``anova(type=3)`` (SAS): with rdX the over-parameterised design (intercept and every term
    in full indicator coding) and X_trt the treatment-coded design, ``L = (X_trt⁺ rdX)'`` has
    the columns of each term residualised on those of the terms containing it (higher order
    first); a term's contrasts are its columns of L on the rows of X_trt's coefficients,
    mapped to the fit's coding by ``X_trt⁺ X``. With one term, Type I (Doolittle) contrasts."""
    terms, intercept, kinds = _fixed_terms(fit)
    X = np.asarray(fit._frame.X, dtype=float)
    p = X.shape[1]
    terms = [t for t in terms if t.cols]
    if not terms:
        return {}
    if len(terms) == 1 or p <= 1:
        Lt = np.ones((1, 1)) if p == 1 else _doolittle_rows(X)
        return {t.name: Lt[t.cols] for t in terms}
    factors = _factor_codings(fit, terms, kinds)
    contains = _containment(terms, factors)
    if not any(contains.values()):
        eye = np.eye(p)
        return {t.name: eye[t.cols] for t in terms}
    missing = sorted({f.expr for f in factors.values() if f.coding is None})
    if missing:
        raise MultilevelError(
            "Type III tests need every variable of an interaction as a main effect too; "
            f"{', '.join(repr(m) for m in missing)} appear(s) only inside interactions"
        )
    # rdX and the treatment-coded columns S (R's coding rule: a factor of a term is coded by
    # contrasts when the term without it is in the model, the empty term being the intercept).
    names = {tuple(sorted(t.factors)) for t in terms}
    blocks, term_of, s_cols = [], [], []
    ncol = 0
    if intercept:
        blocks.append(np.ones((X.shape[0], 1)))
        term_of.append(None)
        s_cols.append(0)
        ncol = 1
    for ti, t in enumerate(terms):
        mats = [factors[f].coding for f in t.factors]
        block, idx = _khatri_rao(mats)
        reduced = []
        for f in t.factors:
            rest = tuple(sorted(g for g in t.factors if g != f))
            margin = rest in names if rest else intercept
            reduced.append(factors[f].categorical and margin)
        for c, ix in enumerate(idx):
            if all(not red or j != 0 for red, j in zip(reduced, ix, strict=True)):
                s_cols.append(ncol + c)
        blocks.append(block)
        term_of.extend([ti] * block.shape[1])
        ncol += block.shape[1]
    rdX = np.column_stack(blocks)
    S = _independent(rdX, s_cols)
    Xt = rdX[:, S]
    if len(S) != p or np.linalg.matrix_rank(np.column_stack([Xt, X])) != p:
        raise MultilevelError(
            "cannot rebuild the treatment-coded design for Type III contrasts of this "
            "fixed-effects structure"
        )
    C = np.linalg.lstsq(Xt, rdX, rcond=None)[0]  # (p, p_rd)
    L = C.T.copy()
    L[np.abs(L) < 1e-10 * max(np.abs(L).max(), 1.0)] = 0.0
    tmap = {t.name: [j for j, s in enumerate(S) if term_of[s] == ti] for ti, t in enumerate(terms)}
    order = sorted(range(len(terms)), key=lambda i: -len(terms[i].factors))
    for i in order:
        t = terms[i]
        if not contains[t.name]:
            continue
        other = [j for name in contains[t.name] for j in tmap[name]]
        cols = tmap[t.name]
        if not other or not cols:
            continue
        B = L[:, other]
        coef = np.linalg.lstsq(B, L[:, cols], rcond=None)[0]
        R = L[:, cols] - B @ coef
        R[np.abs(R) < 1e-10 * max(np.abs(R).max(), 1.0)] = 0.0
        L[:, cols] = R
    Lk = L[S]  # rows of X_trt's coefficients: (p, p)
    A = np.linalg.lstsq(Xt, X, rcond=None)[0]  # X = X_trt A
    out = {}
    for t in terms:
        K = Lk[:, tmap[t.name]].T
        K = K[np.abs(K).sum(axis=1) > 1e-8]
        K = K @ A
        K[np.abs(K) < 1e-10 * np.abs(K).max(initial=0.0)] = 0.0  # lstsq round-off
        out[t.name] = K
    return out
