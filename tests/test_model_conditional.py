"""The conditional distribution of (σ, β, b) given θ̂: its moments and its draws."""

import numpy as np
import pytest

import multilevel
from multilevel import datasets


@pytest.fixture(scope="module")
def crossed():
    return multilevel.fit("diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load("penicillin"))


@pytest.fixture(scope="module")
def sleep():
    return multilevel.fit("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))


def test_moments_are_the_fits(sleep):
    cond = sleep.conditional
    re = sleep.ranef["Subject"]
    np.testing.assert_allclose(cond.modes[0], re[["(Intercept)", "Days"]].to_numpy())
    se = np.sqrt(np.diagonal(cond.condvar[0], axis1=1, axis2=2))
    np.testing.assert_allclose(se, re[["se((Intercept))", "se(Days)"]].to_numpy())
    # with β's uncertainty the variance is larger: + H V H'
    total = cond.total_var(0)
    assert np.all(np.diagonal(total - cond.condvar[0], axis1=1, axis2=2) > 0)


def test_sigma_draws_follow_the_scaled_inverse_chi_square(sleep):
    """pwrss/σ² ~ χ²_{n-p}: mean n - p, variance 2(n - p)."""
    S = 40_000
    d = sleep.conditional.draw(np.random.default_rng(1), S)
    fac = sleep.factorization
    chi = fac.pwrss / d.sigma**2
    nu = sleep.nobs - len(sleep.fixef)
    assert chi.mean() == pytest.approx(nu, abs=4 * np.sqrt(2 * nu / S))
    assert chi.var() == pytest.approx(2 * nu, rel=0.05)


@pytest.mark.parametrize("joint", [True, False])
def test_joint_draws_couple_b_to_beta(sleep, joint):
    """Cov(b - b̂, β - β̂) = -H V E(σ²)/σ̂² with the joint draws, 0 with arm's."""
    S = 40_000
    d = sleep.conditional.draw(np.random.default_rng(2), S, joint=joint)
    db = d.b[0][:, 3, :] - sleep.conditional.modes[0][3]  # subject 4: (S, 2)
    dbeta = d.beta - sleep.fixef.to_numpy()
    cov = (db[:, :, None] * dbeta[:, None, :]).mean(axis=0)
    nu = sleep.nobs - 2
    scale = (nu / (nu - 2)) * (sleep.factorization.pwrss / nu) / sleep.sigma**2
    H = sleep.conditional.coupling[0][3]
    want = -H @ sleep.vcov.to_numpy() * scale if joint else np.zeros((2, 2))
    sd = np.sqrt(np.outer(db.var(axis=0), dbeta.var(axis=0)) / S)
    assert np.all(np.abs(cov - want) < 5 * sd)
    assert np.all(np.abs(dbeta.mean(axis=0)) < 5 * np.sqrt(dbeta.var(axis=0) / S))


def test_crossed_draws_are_correlated_across_terms(crossed):
    """With crossed terms the conditional distribution couples the effects of plates and
    samples; the draws reproduce the exact covariance between a plate's and a sample's
    effect (from the dense inverse), not zero."""
    S = 60_000
    d = crossed.conditional.draw(np.random.default_rng(3), S, joint=False)
    fac = crossed.factorization
    fr = crossed.frame
    n = fr.n
    Zs = []
    for rt in fr.reterms:
        Z = np.zeros((n, rt.nlevels))
        Z[np.arange(n), rt.codes] = rt.Z[:, 0]
        Zs.append(Z)
    Z = np.column_stack(Zs)
    lam = np.concatenate(
        [np.full(rt.nlevels, L[0, 0]) for rt, L in zip(fr.reterms, fac.lambdas_data, strict=True)]
    )
    ZL = Z * lam
    Pinv = np.linalg.inv(ZL.T @ ZL + np.eye(Z.shape[1]))
    C = lam[:, None] * Pinv * lam[None, :]
    q1 = fr.reterms[0].nlevels
    want = C[0, q1]  # plate 1 with sample 1
    assert abs(want) > 0.01 * np.sqrt(C[0, 0] * C[q1, q1])
    x = (d.b[0][:, 0, 0] - fac.modes[0][0, 0]) / d.sigma
    z = (d.b[1][:, 0, 0] - fac.modes[1][0, 0]) / d.sigma
    got = (x * z).mean()
    assert got == pytest.approx(want, abs=5 * np.sqrt(C[0, 0] * C[q1, q1] / S))
