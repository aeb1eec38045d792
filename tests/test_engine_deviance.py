"""The blocked deviance against a brute-force one built from dense n x n matrices.

For θ, V₀ = Z Λ Λ' Z' + I (so Var(y) = σ² V₀), β̂ is the GLS estimate and
r² = (y - Xβ̂)' V₀⁻¹ (y - Xβ̂). Then (Bates et al. 2015, eq. 34 and 41)

    ML:   log|V₀| + n (1 + log(2π r²/n))
    REML: log|V₀| + log|X'V₀⁻¹X| + (n-p)(1 + log(2π r²/(n-p)))

(log|V₀| = log|Λ'Z'ZΛ + I| by Sylvester's identity). The designs cover what the reference
models do not: random slopes on a crossed second factor, three terms, k = 3.
"""

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel.data import build_frame
from multilevel.fitting.lmm import prepare


def dense_Z(frame):
    """Full Z (n x q) and the block-diagonal Λ(θ) builder, terms in the engine's order."""
    blocks = []
    for rt in frame.reterms:
        Zi = np.zeros((frame.n, rt.nlevels * rt.k))
        for a in range(rt.k):
            Zi[np.arange(frame.n), rt.codes * rt.k + a] = rt.Z[:, a]
        blocks.append(Zi)
    return np.hstack(blocks)


def brute_deviance(frame, dev, theta, reml):
    Z = dense_Z(frame)
    lams = dev.layout.lambdas(theta)
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    o = 0
    for rt, lam in zip(frame.reterms, lams, strict=True):
        for lv in range(rt.nlevels):
            Lam[o + lv * rt.k : o + (lv + 1) * rt.k, o + lv * rt.k : o + (lv + 1) * rt.k] = lam
        o += rt.nlevels * rt.k
    X, y, n = frame.X, frame.y, frame.n
    p = X.shape[1]
    V0 = Z @ Lam @ Lam.T @ Z.T + np.eye(n)
    Vi = np.linalg.inv(V0)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    r2 = r @ Vi @ r
    ld = np.linalg.slogdet(V0)[1]
    if reml:
        return ld + np.linalg.slogdet(XtViX)[1] + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))
    return ld + n * (1 + np.log(2 * np.pi * r2 / n))


def simulate(seed, n=240, ng1=12, ng2=7, ng3=5):
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, ng1, n)
    g2 = rng.integers(0, ng2, n)
    g3 = rng.integers(0, ng3, n)
    x = rng.normal(size=n)
    z = rng.uniform(-1, 1, size=n)
    y = (
        1
        + 0.5 * x
        + rng.normal(size=ng1)[g1] * 0.8
        + rng.normal(size=ng1)[g1] * 0.4 * x
        + rng.normal(size=ng2)[g2] * 0.6
        + rng.normal(size=ng2)[g2] * 0.3 * z
        + rng.normal(size=ng3)[g3] * 0.5
        + rng.normal(size=n)
    )
    return pd.DataFrame({"y": y, "x": x, "z": z, "g1": g1, "g2": [f"b{v}" for v in g2], "g3": g3})


FORMULAS = [
    "y ~ x + (1 | g1)",
    "y ~ x + (1 + x | g1)",
    "y ~ x + z + (1 + x + z | g1)",
    "y ~ x + (1 | g1) + (1 | g2)",
    "y ~ x + (1 + x | g1) + (1 + z | g2)",
    "y ~ x + (1 | g1) + (0 + z | g2) + (1 | g3)",
    "y ~ x + (1 | g1) + (1 + x + z | g2)",
    "y ~ x + (x || g1) + (1 | g2)",
    "y ~ x + (1 | g2/g3)",
]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_blocked_deviance_equals_brute_force(formula, reml):
    df = simulate(1)
    frame = build_frame(formula, df)
    dev = prepare(frame, reml).deviance
    rng = np.random.default_rng(2)
    for _ in range(3):
        theta = dev.layout.start + rng.normal(scale=0.4, size=dev.layout.size)
        theta = np.where(dev.layout.lower == 0, np.abs(theta), theta)
        assert dev(theta) == pytest.approx(brute_deviance(frame, dev, theta, reml), rel=1e-10)


@pytest.mark.parametrize("formula", FORMULAS)
def test_modes_and_conditional_variances_against_dense_algebra(formula):
    df = simulate(3)
    m = multilevel.fit(formula, df)
    frame = m.frame
    Z = dense_Z(frame)
    lams = m.lambdas
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    o = 0
    for rt, lam in zip(frame.reterms, lams, strict=True):
        for lv in range(rt.nlevels):
            Lam[o + lv * rt.k : o + (lv + 1) * rt.k, o + lv * rt.k : o + (lv + 1) * rt.k] = lam
        o += rt.nlevels * rt.k
    M = Lam.T @ Z.T @ Z @ Lam + np.eye(Z.shape[1])
    Minv = np.linalg.inv(M)
    b = Lam @ Minv @ Lam.T @ Z.T @ (frame.y - frame.X @ m.fixef.to_numpy())
    cv = m.sigma**2 * Lam @ Minv @ Lam.T
    o = 0
    cond = m.conditional
    for t, modes, condvar in zip(m.schema.terms, cond.modes, cond.condvar, strict=True):
        k = len(t.names)
        q = len(t.levels) * k
        np.testing.assert_allclose(modes.reshape(-1), b[o : o + q], rtol=1e-6, atol=1e-9)
        for lv in range(len(t.levels)):
            blk = cv[o + lv * k : o + (lv + 1) * k, o + lv * k : o + (lv + 1) * k]
            np.testing.assert_allclose(condvar[lv], blk, rtol=1e-6, atol=1e-12)
        o += q
    # the fixed effects are GLS given θ, and their covariance is σ² (X'V₀⁻¹X)⁻¹
    V0 = Z @ Lam @ Lam.T @ Z.T + np.eye(frame.n)
    XtViX = frame.X.T @ np.linalg.solve(V0, frame.X)
    np.testing.assert_allclose(m.vcov.to_numpy(), m.sigma**2 * np.linalg.inv(XtViX), rtol=1e-6)
