"""The factorization at θ answers every quantity of the fit: each checked against the dense
mixed-model equations written out from Z, X, W and Λ (weighted, crossed, vector-valued)."""

import numpy as np
import pytest
from test_engine_blocks import simulate

from multilevel.data import build_frame
from multilevel.fitting.lmm import prepare

FORMULAS = [
    "y ~ x + (1 + x | g1)",
    "y ~ x + (1 + x | g1) + (1 | g2)",
    "y ~ x + (1 | g1) + (1 + x | g2) + (1 | g3)",
]


def dense(frame, fac):
    """Z (n, q) level-major per term, blockdiag Λ (q, q) on the data's scale, W (n,)."""
    n = frame.n
    Zs, lams = [], []
    for rt, lam in zip(frame.reterms, fac.lambdas_data, strict=True):
        Z = np.zeros((n, rt.nlevels * rt.k))
        for a in range(rt.k):
            Z[np.arange(n), rt.codes * rt.k + a] = rt.Z[:, a]
        Zs.append(Z)
        lams.append(np.kron(np.eye(rt.nlevels), lam))
    q = sum(Z.shape[1] for Z in Zs)
    Lam = np.zeros((q, q))
    o = 0
    for L in lams:
        Lam[o : o + L.shape[0], o : o + L.shape[0]] = L
        o += L.shape[0]
    w = np.ones(n) if frame.weights is None else frame.weights
    return np.column_stack(Zs), Lam, w


def split(vec_or_mat, frame):
    """Per term, the rows of a (q, ...) array reshaped to (l, k, ...)."""
    out, o = [], 0
    for rt in frame.reterms:
        q = rt.nlevels * rt.k
        part = vec_or_mat[o : o + q]
        out.append(part.reshape(rt.nlevels, rt.k, *part.shape[1:]))
        o += q
    return out


def case(formula, weighted, seed=1, reml=True):
    frame = build_frame(formula, simulate(seed), weights="w" if weighted else None)
    problem = prepare(frame, reml=reml)
    dev = problem.deviance
    rng = np.random.default_rng(seed + 10)
    theta = np.abs(dev.layout.start + rng.normal(scale=0.4, size=dev.layout.size))
    return frame, dev.factor(theta)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("weighted", [False, True])
def test_estimates_modes_and_variances_against_dense_equations(formula, weighted):
    frame, fac = case(formula, weighted)
    Z, Lam, w = dense(frame, fac)
    X, y = frame.X, frame.y
    ZL = Z @ Lam
    P = ZL.T @ (w[:, None] * ZL) + np.eye(Z.shape[1])
    Pinv = np.linalg.inv(P)
    V0 = ZL @ ZL.T + np.diag(1.0 / w)  # Var(y)/σ²
    V0i = np.linalg.inv(V0)
    XtViX = X.T @ V0i @ X
    beta = np.linalg.solve(XtViX, X.T @ V0i @ y)
    np.testing.assert_allclose(fac.beta, beta, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(fac.vcov_unscaled, np.linalg.inv(XtViX), rtol=1e-8)
    r = y - X @ beta
    u = Pinv @ ZL.T @ (w * r)
    pwrss = (w * (r - ZL @ u)) @ (r - ZL @ u) + u @ u
    assert fac.pwrss == pytest.approx(pwrss, rel=1e-9)
    # modes b = Λu, their variance given β, and their coupling to β
    b = split(Lam @ u, frame)
    H = Lam @ Pinv @ ZL.T @ (w[:, None] * X)  # b̂(β) = b̂ - H (β - β̂)
    Hs = split(H, frame)
    o = 0
    for t, rt in enumerate(frame.reterms):
        np.testing.assert_allclose(fac.modes[t], b[t], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(fac.fixef_coupling[t], Hs[t], rtol=1e-8, atol=1e-10)
        k = rt.k
        for lv in range(rt.nlevels):
            blk = (Lam @ Pinv @ Lam.T)[o + lv * k : o + (lv + 1) * k, o + lv * k : o + (lv + 1) * k]
            np.testing.assert_allclose(fac.condvar_unscaled[t][lv], blk, rtol=1e-8, atol=1e-12)
        o += rt.nlevels * k


@pytest.mark.parametrize("formula", FORMULAS)
def test_draws_have_exactly_the_conditional_covariance(formula):
    """effect_noise is x = L_P⁻ᵀ z mapped by Λ: feed it the unit vectors as its normals and the
    draws' outer products sum to Λ P⁻¹ Λ' exactly, across terms and levels."""
    frame, fac = case(formula, weighted=True, seed=3)
    Z, Lam, w = dense(frame, fac)
    ZL = Z @ Lam
    P = ZL.T @ (w[:, None] * ZL) + np.eye(Z.shape[1])
    want = Lam @ np.linalg.inv(P) @ Lam.T
    q = Z.shape[1]
    q1 = frame.reterms[0].nlevels * frame.reterms[0].k

    class Unit:
        """A generator whose normals are the rows of the q x q identity, in draw order."""

        def __init__(self):
            self.eye = np.eye(q)

        def standard_normal(self, shape):
            size = shape[0]
            assert size == q
            if len(shape) == 3:  # the first term's (size, l1, k1)
                return self.eye[:, :q1].reshape(shape)
            return self.eye[:, q1:]

    noise = fac.effect_noise(Unit(), q)
    X = np.column_stack([n.reshape(q, -1) for n in noise])  # (q draws, q effects)
    np.testing.assert_allclose(X.T @ X, want, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("reml", [True, False])
def test_criterion_at_sigma_is_the_objective_at_its_minimum(reml):
    frame, fac = case("y ~ x + (1 + x | g1) + (1 | g2)", weighted=True, reml=reml)
    assert fac.criterion(fac.sigma) == pytest.approx(fac.objective, rel=1e-13)
    h = 1e-4 * fac.sigma
    lo, hi = fac.criterion(fac.sigma - h), fac.criterion(fac.sigma + h)
    assert lo > fac.objective and hi > fac.objective
    assert abs(hi - lo) / (2 * h) < 1e-5 * abs(fac.objective)
    assert fac.sigma**2 == pytest.approx(fac.pwrss / fac.nu, rel=1e-14)
