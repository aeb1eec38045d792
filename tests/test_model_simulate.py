"""Responses simulated from a fit have the fit's mean and covariance."""

import numpy as np
import pytest

import multilevel
from multilevel import datasets
from multilevel.errors import MultilevelError
from multilevel.model.simulate import simulate_responses


@pytest.fixture(scope="module")
def sleep():
    return multilevel.fit("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))


def test_shape_and_reproducibility(sleep):
    a = simulate_responses(sleep, n=3, seed=11)
    assert a.shape == (sleep.nobs, 3)
    np.testing.assert_array_equal(a, simulate_responses(sleep, n=3, seed=11))
    np.testing.assert_array_equal(a, sleep.simulate(3, seed=11))
    assert not np.allclose(a, simulate_responses(sleep, n=3, seed=12))
    rng = np.random.default_rng(11)
    np.testing.assert_array_equal(a, simulate_responses(sleep, n=3, seed=rng))
    assert simulate_responses(sleep).shape == (sleep.nobs, 1)


def test_mean_and_covariance_within_a_subject(sleep):
    """Within subject j: y* ~ N(X_j β̂, σ̂²(Z_j Λ̂ Λ̂' Z_j' + I)); across subjects independent."""
    S = 20_000
    Y = simulate_responses(sleep, n=S, seed=5)
    fr = sleep.frame
    mu = fr.X @ sleep.fixef.to_numpy()
    se_mean = np.sqrt(Y.var(axis=1) / S)
    assert np.all(np.abs(Y.mean(axis=1) - mu) < 5 * se_mean)
    lam = sleep.lambdas[0]
    codes = fr.reterms[0].codes
    Z = fr.reterms[0].Z
    rows = np.flatnonzero(codes == 0)
    Zj = Z[rows]
    V = sleep.sigma**2 * (Zj @ lam @ lam.T @ Zj.T + np.eye(len(rows)))
    C = np.cov(Y[rows])
    # the sampling SD of a covariance is about sqrt((V_ii V_jj + V_ij²) / S)
    tol = 5 * np.sqrt((np.outer(np.diag(V), np.diag(V)) + V**2) / S)
    assert np.all(np.abs(C - V) < tol)
    other = np.flatnonzero(codes == 1)
    cross = np.cov(Y[rows[0]], Y[other[0]])[0, 1]
    assert abs(cross) < 5 * np.sqrt(V[0, 0] ** 2 / S)


def test_crossed_model_variance():
    """Crossed (1|plate) + (1|sample): Var(y*) = σ̂²(θ_1² + θ_2² + 1) for every row."""
    m = multilevel.fit("diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load("penicillin"))
    Y = simulate_responses(m, n=20_000, seed=1)
    want = m.sigma**2 * (m.theta[0] ** 2 + m.theta[1] ** 2 + 1.0)
    assert Y.var(axis=1).mean() == pytest.approx(want, rel=0.03)
    assert Y.mean() == pytest.approx(m.fixef["(Intercept)"], abs=0.05 * np.sqrt(want))


def test_bad_counts(sleep):
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(MultilevelError, match="positive whole number"):
            simulate_responses(sleep, n=bad)
