"""Complete / no / partial pooling, the draws of the fitted model, and Gelman & Pardoe's R²
and pooling factor λ against what their definitions give on data with known variances."""

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel import datasets
from multilevel.twolevel.pooling import (
    complete_pooling,
    no_pooling,
    pooling_factor,
    r_squared,
    simulate_parameters,
)


@pytest.fixture(scope="module")
def radon():
    return datasets.load("radon")


def _dummies(codes, J):
    D = np.zeros((len(codes), J))
    D[np.arange(len(codes)), codes] = 1.0
    return D


# -- complete and no pooling ---------------------------------------------------------------


def test_complete_pooling_is_one_regression(radon):
    m = multilevel.fit("log_radon ~ floor", radon, group="county", varying="1")
    cp = complete_pooling(m)
    x, y = radon.floor.to_numpy(float), radon.log_radon.to_numpy()
    slope = np.cov(x, y)[0, 1] / x.var(ddof=1)
    assert cp.loc["floor", "estimate"] == pytest.approx(slope, rel=1e-10)
    assert cp.loc["(Intercept)", "estimate"] == pytest.approx(y.mean() - slope * x.mean())
    resid = y - cp.loc["(Intercept)", "estimate"] - slope * x
    s2 = resid @ resid / (len(y) - 2)
    assert cp.loc["floor", "se"] == pytest.approx(np.sqrt(s2 / ((x - x.mean()) ** 2).sum()))
    # Gelman & Hill, section 12.2: 1.33 and -0.61
    assert round(cp.loc["(Intercept)", "estimate"], 2) == 1.33
    assert round(slope, 2) == -0.61


def test_no_pooling_varying_intercept_is_lm_with_group_indicators(radon):
    """G&H's lm(y ~ x + factor(county) - 1): a common slope, one intercept per county."""
    m = multilevel.fit("log_radon ~ floor", radon, group="county", varying="1")
    est, se, note = no_pooling(m)
    d = m.design
    X = np.column_stack([radon.floor.to_numpy(float), _dummies(d.codes, len(d.levels))])
    y = radon.log_radon.to_numpy()
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    s2 = resid @ resid / (len(y) - X.shape[1])
    cov = s2 * np.linalg.inv(X.T @ X)
    np.testing.assert_allclose(est["floor"], coef[0], rtol=1e-9)
    np.testing.assert_allclose(est["(Intercept)"], coef[1:], rtol=1e-9)
    np.testing.assert_allclose(se["floor"], np.sqrt(cov[0, 0]), rtol=1e-9)
    np.testing.assert_allclose(se["(Intercept)"], np.sqrt(np.diag(cov)[1:]), rtol=1e-9)
    assert round(coef[0], 2) == -0.72  # Gelman & Hill, section 12.2
    assert (note == "").all()


def test_no_pooling_all_varying_is_one_regression_per_group(radon):
    m = multilevel.fit("log_radon ~ floor", radon, group="county", group_formula="~ log_uranium")
    est, se, note = no_pooling(m)
    sizes = radon.groupby("county").size()
    floors = radon.groupby("county").floor.nunique()
    assert note["MAHNOMEN"] == "1 observation for 2 coefficients"
    assert (note[(sizes == 1).to_numpy()] == "1 observation for 2 coefficients").all()
    constant = (floors == 1) & (sizes > 1)
    assert (note[constant.to_numpy()] == "'floor' is constant in this group").all()
    bad = note != ""
    assert est[bad.to_numpy()].isna().all().all() and se[bad.to_numpy()].isna().all().all()
    rss, dof = 0.0, 0
    for county, g in radon.groupby("county"):
        if note[county]:
            continue
        X = np.column_stack([np.ones(len(g)), g.floor])
        coef, *_ = np.linalg.lstsq(X, g.log_radon.to_numpy(), rcond=None)
        np.testing.assert_allclose(est.loc[county].to_numpy(), coef, rtol=1e-8, atol=1e-10)
        rss += ((g.log_radon.to_numpy() - X @ coef) ** 2).sum()
        dof += len(g) - 2
    # the SEs use the residual variance pooled over the groups' own regressions
    g = radon[radon.county == "ANOKA"]
    X = np.column_stack([np.ones(len(g)), g.floor])
    np.testing.assert_allclose(
        se.loc["ANOKA"].to_numpy(), np.sqrt(np.diag(rss / dof * np.linalg.inv(X.T @ X))), rtol=1e-8
    )


def test_compare_pooling_side_by_side(radon):
    m = multilevel.fit("log_radon ~ floor", radon, group="county", group_formula="~ log_uranium")
    cmp = m.compare_pooling()
    assert len(cmp) == 85
    for c in ["(Intercept)", "floor"]:
        for kind in ["complete", "no pooling", "partial"]:
            assert f"{c}: {kind}" in cmp.columns and f"{c}: {kind} se" in cmp.columns
    ct = m.coef_table()
    np.testing.assert_allclose(cmp["floor: partial"], ct["floor"])
    assert cmp["floor: complete"].nunique() == 1
    # partial pooling lies between no pooling and the group-level prediction for intercepts
    # in the varying-intercept model without predictors
    m1 = multilevel.fit("log_radon ~ floor", radon, group="county", varying="1")
    c1 = m1.compare_pooling()
    mu = m1.fixef["(Intercept)"]
    nop, part = c1["(Intercept): no pooling"], c1["(Intercept): partial"]
    assert ((part - mu) * (nop - mu) >= 0).mean() > 0.95
    assert (np.abs(part - mu) <= np.abs(nop - mu) + 1e-12).mean() > 0.95


# -- draws -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_fit(radon):
    return multilevel.fit("log_radon ~ floor", radon, group="county", group_formula="~ log_uranium")


def test_draws_follow_the_fitted_model(seed_fit):
    """σ from σ̂ sqrt(df/χ²_df); β ~ N(β̂, V σ²/σ̂²); with joint draws the group coefficients
    D_j β + b_j have the prediction-error covariance of coef_cov() (times E σ²/σ̂²)."""
    m = seed_fit
    S = 20000
    sig, beta, b = simulate_parameters(m, S, np.random.default_rng(3))
    df = m.nobs - len(m.fixef)
    ratio = df / (df - 2)  # E(σ²/σ̂²) = E(df/χ²_df)
    assert np.mean(sig**2) / m.sigma**2 == pytest.approx(ratio, rel=0.01)
    V = m.vcov.to_numpy()
    se = np.sqrt(np.diag(V))
    assert np.all(np.abs(beta.mean(0) - m.fixef.to_numpy()) < 4 * se / np.sqrt(S))
    np.testing.assert_allclose(np.cov(beta.T), V * ratio, rtol=0.05, atol=0.05 * se.max() ** 2)
    d = m.design
    coefs = np.einsum("jcp,sp->sjc", d.D, beta) + b @ d.E.T  # (S, J, p1)
    cov = m.coef_cov() * ratio
    for j in [0, 1, 40, 84]:
        emp = np.cov(coefs[:, j, :].T)
        np.testing.assert_allclose(emp, cov[j], rtol=0.06, atol=0.03 * cov[j].max())
        np.testing.assert_allclose(coefs[:, j, :].mean(0), m.coef_estimates()[j], atol=0.01)
    # arm's independent draws: the covariance without the cross term
    _, beta2, b2 = simulate_parameters(m, S, np.random.default_rng(4), joint=False)
    coefs2 = np.einsum("jcp,sp->sjc", d.D, beta2) + b2 @ d.E.T
    arm = m.coef_cov(covariance=False) * ratio
    np.testing.assert_allclose(
        np.cov(coefs2[:, 1, :].T), arm[1], rtol=0.06, atol=0.03 * arm[1].max()
    )


# -- λ and R² ----------------------------------------------------------------------------


def test_pooling_factor_and_r2_definitions():
    rng = np.random.default_rng(0)
    fixed = np.tile(rng.normal(size=50), (400, 1))  # errors known exactly: no pooling
    assert pooling_factor(fixed) == pytest.approx(0.0, abs=1e-12)
    noise = rng.normal(size=(4000, 50))  # errors all shrunk to mean 0: complete pooling
    assert pooling_factor(noise) == pytest.approx(1.0, abs=0.02)
    assert pooling_factor(np.zeros((10, 5))) == 1.0
    half = fixed + rng.normal(size=fixed.shape) * fixed.std()
    assert pooling_factor(half) == pytest.approx(0.5, abs=0.05)
    theta = fixed + 3 * rng.normal(size=fixed.shape)
    expect = 1 - fixed.var(axis=1, ddof=1).mean() / theta.var(axis=1, ddof=1).mean()
    assert r_squared(fixed, theta) == pytest.approx(expect)


def _one_way(tau, J=100, n=10, sigma=1.0, seed=0, b0=0.0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=J)
    alpha = 1.0 + b0 * u + tau * rng.normal(size=J)
    g = np.repeat(np.arange(J), n)
    y = alpha[g] + sigma * rng.normal(size=J * n)
    return pd.DataFrame(
        {"g": [f"g{j:03d}" for j in g], "u": u[g], "x": rng.normal(size=J * n), "y": y}
    )


@pytest.mark.parametrize(
    "tau, J, n, where", [(3.0, 100, 10, "low"), (0.3, 100, 10, "mid"), (0.01, 400, 5, "high")]
)
def test_lambda_where_the_definition_puts_it(tau, J, n, where):
    """Balanced one-way model, σ_y = 1: the level-2 λ is 1 - ω, ω = τ²/(τ² + σ²/n) the
    shrinkage weight (Gelman & Pardoe 2006, section 3), here with the fitted τ̂ and σ̂: near
    0 when τ is large against σ_y/√n, near 1 when it is tiny. (For τ = 0.01 the estimate τ̂
    is sampling noise of order (2/J)^¼ σ/√n, hence the many groups.)"""
    df = _one_way(tau, J=J, n=n)
    m = multilevel.fit("y ~ 1", df, group="g")
    pm = m.pooling(ndraws=2000, seed=1)
    lam = pm.loc[pm.level == 2, "lambda"].item()
    tau_hat = m.eta_sd["(Intercept)"]
    omega = tau_hat**2 / (tau_hat**2 + m.sigma**2 / n)
    if where == "low":
        assert lam < 0.05
    elif where == "mid":
        assert 0.3 < lam < 0.7
    else:
        assert lam > 0.9
    assert lam == pytest.approx(1 - omega, abs=0.02)
    # level 1: the data-level errors are well estimated (little pooling)
    lam1 = pm.loc[pm.level == 1, "lambda"].item()
    assert lam1 < 0.15
    # R² at level 1: 1 - E V(ε)/V(y), with E V(ε) ≈ σ̂²
    r2 = pm.loc[pm.level == 1, "R2"].item()
    assert r2 == pytest.approx(1 - m.sigma**2 / df.y.var(), abs=0.03)


def test_r2_at_the_group_level():
    """α_j = 1 + u_j + η_j with V(u) ≈ 1 and τ = 1: R² of the county level ≈ b0² V(u) /
    (b0² V(u) + τ²) ≈ 0.5; without the predictor it is 0."""
    df = _one_way(1.0, J=300, n=8, b0=1.0, seed=2)
    m = multilevel.fit("y ~ x", df, group="g", group_formula="~ u", varying="1")
    pm = m.pooling(ndraws=1000, seed=1)
    r2 = pm.loc[pm.level == 2, "R2"].item()
    u = df.groupby("g").u.first()
    b0 = m.group_level.set_index("symbol").loc["b0", "estimate"]
    sd2 = m.eta_sd["(Intercept)"] ** 2
    assert r2 == pytest.approx(b0**2 * u.var() / (b0**2 * u.var() + sd2), abs=0.05)
    assert 0.35 < r2 < 0.65
    m0 = multilevel.fit("y ~ x", df, group="g", varying="1")
    r2_0 = m0.pooling(ndraws=500, seed=1).loc[1, "R2"]
    assert abs(r2_0) < 1e-10


def test_pooling_table_radon(seed_fit):
    pm = seed_fit.pooling(ndraws=500, seed=7)
    assert list(pm.level) == [1, 2, 2]
    assert list(pm.units) == [919, 85, 85]
    assert pm.attrs["ndraws"] == 500
    again = seed_fit.pooling(ndraws=500, seed=7)
    pd.testing.assert_frame_equal(pm, again)
    # radon: counties explain a little of y; uranium explains most of the intercepts; the
    # county-level errors are pooled strongly (small variance against σ_y²/n_j)
    assert 0.15 < pm.loc[0, "R2"] < 0.3 and pm.loc[0, "lambda"] < 0.1
    assert pm.loc[1, "R2"] > 0.7 and pm.loc[1, "lambda"] > 0.6
