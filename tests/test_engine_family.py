"""Families and links (multilevel.engine.family) against scipy's distributions and numerical
derivatives."""

import numpy as np
import pytest
from scipy import stats

from multilevel.engine.family import LINKS, family


@pytest.mark.parametrize("name", ["logit", "probit", "cloglog", "log", "identity"])
def test_links_invert_and_differentiate(name):
    link = LINKS[name]
    eta = np.linspace(-3, 1.5, 31)
    mu = link.inverse(eta)
    np.testing.assert_allclose(link.fun(mu), eta, rtol=1e-10, atol=1e-10)
    h = 1e-6
    numeric = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta(eta), numeric, rtol=1e-6)


def test_inverse_links_stay_inside_the_range_far_out():
    for name in ("logit", "probit", "cloglog"):
        mu = LINKS[name].inverse(np.array([-800.0, 800.0]))
        assert mu[0] > 0 and mu[1] <= 1  # never 0: log μ stays finite
        assert np.isfinite(np.log(mu[0]))
        assert np.all(LINKS[name].mu_eta(np.array([-800.0, 800.0])) > 0)


def test_binomial_loglik_is_scipys():
    fam = family("binomial")
    trials = np.array([1.0, 5.0, 12.0, 3.0])
    succ = np.array([1.0, 2.0, 0.0, 3.0])
    mu = np.array([0.3, 0.45, 0.1, 0.8])
    ours = fam.loglik_rows(succ / trials, mu, trials)
    np.testing.assert_allclose(ours, stats.binom.logpmf(succ, trials, mu), rtol=1e-12)
    # the unit deviances: 2 (log f(y | y) - log f(y | μ))
    sat = stats.binom.logpmf(succ, trials, succ / trials)
    np.testing.assert_allclose(fam.dev_resid(succ / trials, mu, trials), 2 * (sat - ours),
                               rtol=1e-10, atol=1e-12)  # fmt: skip


def test_poisson_loglik_is_scipys():
    fam = family("poisson")
    y = np.array([0.0, 1.0, 4.0, 17.0])
    mu = np.array([0.5, 2.0, 3.5, 20.0])
    np.testing.assert_allclose(fam.loglik_rows(y, mu, None), stats.poisson.logpmf(y, mu),
                               rtol=1e-12)  # fmt: skip
    sat = stats.poisson.logpmf(y, np.maximum(y, 1e-300))
    expected = 2 * (sat - stats.poisson.logpmf(y, mu))
    np.testing.assert_allclose(fam.dev_resid(y, mu, None), expected, rtol=1e-10, atol=1e-12)


def test_variance_functions_and_starting_means():
    b, p = family("binomial"), family("poisson")
    np.testing.assert_allclose(b.variance(np.array([0.2, 0.5])), [0.16, 0.25])
    np.testing.assert_allclose(p.variance(np.array([3.0])), [3.0])
    np.testing.assert_allclose(b.mustart(np.array([0.0, 1.0]), np.array([1.0, 3.0])),
                               [0.25, 0.875])  # fmt: skip
    np.testing.assert_allclose(p.mustart(np.array([0.0, 2.0]), None), [0.1, 2.1])


def test_simulated_responses_have_the_family_moments():
    rng = np.random.default_rng(1)
    mu = np.full(40_000, 0.3)
    trials = np.full(40_000, 4.0)
    y = family("binomial").simulate(rng, mu, trials)
    assert set(np.unique(y * 4)) <= {0, 1, 2, 3, 4}
    assert y.mean() == pytest.approx(0.3, abs=0.01)
    assert (y * 4).var() == pytest.approx(4 * 0.3 * 0.7, rel=0.05)
    counts = family("poisson").simulate(rng, np.full(40_000, 2.5), None)
    assert counts.mean() == pytest.approx(2.5, rel=0.02)
    assert counts.var() == pytest.approx(2.5, rel=0.05)
