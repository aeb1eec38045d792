"""PIRLS, the Laplace approximation and adaptive Gauss-Hermite quadrature
(multilevel.engine.pirls), checked against brute-force integration of the same likelihood.

The brute force: each group's integral ∫ Π_{i∈j} f(y_i | b) N(b; 0, ΛΛ') db, over the
spherical u (b = Λu) on a dense trapezoid grid centred at the group's mode (found by scipy,
not by PIRLS) — exponentially accurate for these smooth, light-tailed integrands.
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special

import multilevel
from multilevel.data import build_frame
from multilevel.engine.family import family
from multilevel.engine.pirls import MAX_AGQ_POINTS, gauss_hermite, product_rule
from multilevel.errors import MultilevelError
from multilevel.fitting.glmm import prepare_glmm


def binary_slopes(seed=2, groups=12, size=15):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), size)
    x = rng.normal(size=groups * size)
    b = rng.multivariate_normal([0, 0], [[2, 0.5], [0.5, 1]], size=groups)
    eta = -0.3 + 0.8 * x + b[g, 0] + b[g, 1] * x
    y = (rng.uniform(size=len(g)) < special.expit(eta)).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def counts(seed=5, groups=10, size=6):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), size)
    x = rng.normal(size=groups * size)
    eta = 0.5 + 0.3 * x + rng.normal(scale=0.8, size=groups)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": g})


def loglik_rows(fam, y, eta):
    if fam == "binomial":
        return y * eta - np.logaddexp(0.0, eta)
    return y * eta - np.exp(eta) - special.gammaln(y + 1.0)


def brute_force(df, fam, beta, lam, columns, half_width=12.0, points=401):
    """-2 log L by a dense grid per group (module docstring). ``columns``: the random-effects
    design's columns ("1" for the intercept)."""
    y = df["y"].to_numpy(float)
    X = np.column_stack([np.ones(len(df)), df["x"].to_numpy()])
    Z = np.column_stack([np.ones(len(df)) if c == "1" else df[c].to_numpy() for c in columns])
    k = Z.shape[1]
    total = 0.0
    for j in np.unique(df["g"]):
        rows = (df["g"] == j).to_numpy()
        base, ZL, yj = X[rows] @ beta, Z[rows] @ lam, y[rows]

        def h(u, base=base, ZL=ZL, yj=yj):  # log f(y_j | u) + log φ_k(u)
            eta = base[:, None] + ZL @ u.reshape(k, -1)
            ll = loglik_rows(fam, yj[:, None], eta).sum(0)
            return ll - 0.5 * (u.reshape(k, -1) ** 2).sum(0) - 0.5 * k * math.log(2 * math.pi)

        mode = optimize.minimize(lambda u: -h(u)[0], np.zeros(k), method="BFGS").x
        grid = np.linspace(-half_width, half_width, points)
        step = grid[1] - grid[0]
        mesh = np.meshgrid(*([grid] * k), indexing="ij")
        u = np.stack([m.ravel() for m in mesh]) + mode[:, None]
        vals = h(u)
        top = vals.max()
        total += top + math.log(np.exp(vals - top).sum() * step**k)
    return -2.0 * total


@pytest.fixture(scope="module")
def slopes_fits():
    df = binary_slopes()
    return df, {
        k: multilevel.fit("y ~ x + (1 + x | g)", df, family="binomial", nagq=k)
        for k in (1, 2, 5, 11, 21)
    }


def test_product_rule_integrates_gaussian_moments():
    points, weights = product_rule(5, 2)
    assert points.shape == (25, 2) and weights.shape == (25,)
    assert weights.sum() == pytest.approx(2 * math.pi, rel=1e-13)
    # E z1² z2⁴ = 1·3 under N(0, I): exact for a 5-node rule (degree ≤ 9)
    assert (weights * points[:, 0] ** 2 * points[:, 1] ** 4).sum() / (2 * math.pi) == (
        pytest.approx(3.0, rel=1e-12)
    )
    x, w = gauss_hermite(1)
    assert x.tolist() == [0.0] and w[0] == pytest.approx(math.sqrt(2 * math.pi))


def test_vector_agq_agrees_with_brute_force_integration(slopes_fits):
    df, fits = slopes_fits
    m = fits[21]
    assert m.converged and m.method == "AGQ(21)"
    truth = brute_force(df, "binomial", m.fixef.to_numpy(), m.lambdas[0], ["1", "x"])
    assert abs(m.objective - truth) < 1e-6 * truth


def test_vector_agq_converges_as_nodes_grow(slopes_fits):
    df, fits = slopes_fits
    objectives = [fits[k].objective for k in (1, 2, 5, 11, 21)]
    # Laplace is far off on 15 binary rows per group; the rule settles by 11 nodes
    assert objectives[0] - objectives[-1] > 0.1
    assert abs(objectives[3] - objectives[4]) < 1e-5
    assert abs(objectives[2] - objectives[4]) < abs(objectives[1] - objectives[4])


def test_one_node_is_the_laplace_approximation(slopes_fits):
    df, fits = slopes_fits
    lap = fits[1]
    frame = build_frame("y ~ x + (1 + x | g)", df, family="binomial")
    dev = prepare_glmm(frame, family("binomial"), nagq=1).deviance
    x = np.concatenate([lap.optim.theta, lap.fixef.to_numpy()])
    modes = dev.modes(x[: len(lap.optim.theta)], x[len(lap.optim.theta) :])
    assert modes.objective == pytest.approx(lap.objective, rel=1e-12)
    assert dev.quadrature(modes, product_rule(1, 2)) == pytest.approx(modes.objective, rel=1e-12)
    assert dev.quadrature(modes, product_rule(3, 2)) != pytest.approx(modes.objective, rel=1e-6)


def test_laplace_objective_by_dense_algebra():
    """-2 log L ≈ -2 Σ log f(y | û) + |û|² + log|Λ'Z'WZΛ + I| at the modes, built densely."""
    df = binary_slopes()
    m = multilevel.fit("y ~ x + (1 + x | g)", df, family="binomial")
    y, x = df["y"].to_numpy(float), df["x"].to_numpy()
    beta, lam = m.fixef.to_numpy(), m.lambdas[0]
    J = df["g"].nunique()
    Z = np.zeros((len(df), 2 * J))
    Z[np.arange(len(df)), 2 * df["g"]] = 1.0
    Z[np.arange(len(df)), 2 * df["g"] + 1] = x
    ZL = Z @ np.kron(np.eye(J), lam)
    base = beta[0] + beta[1] * x

    def penalised(u):
        eta = base + ZL @ u
        return -2 * loglik_rows("binomial", y, eta).sum() + u @ u

    u = optimize.minimize(penalised, np.zeros(2 * J), method="BFGS").x
    for _ in range(20):  # Newton's method to the mode: H δ = ∇ log f - u
        mu = special.expit(base + ZL @ u)
        H = ZL.T @ (ZL * (mu * (1 - mu))[:, None]) + np.eye(2 * J)
        u = u + np.linalg.solve(H, ZL.T @ (y - mu) - u)
    mu = special.expit(base + ZL @ u)
    H = ZL.T @ (ZL * (mu * (1 - mu))[:, None]) + np.eye(2 * J)
    laplace = penalised(u) + np.linalg.slogdet(H)[1]
    assert m.objective == pytest.approx(laplace, rel=1e-9)
    # and the modes are PIRLS's: b̂ = Λû per group
    b = (np.kron(np.eye(J), lam) @ u).reshape(J, 2)
    np.testing.assert_allclose(m.ranef["g"][["(Intercept)", "x"]].to_numpy(), b, atol=1e-5)


def test_scalar_agq_poisson_agrees_with_brute_force():
    df = counts()
    m = multilevel.fit("y ~ x + (1 | g)", df, family="poisson", nagq=15)
    truth = brute_force(df, "poisson", m.fixef.to_numpy(), m.lambdas[0], ["1"], points=4001)
    assert abs(m.objective - truth) < 1e-6 * truth
    lap = multilevel.fit("y ~ x + (1 | g)", df, family="poisson")
    assert lap.objective != pytest.approx(m.objective, rel=1e-7)


def test_agq_refuses_more_than_one_term_and_too_many_points():
    df = binary_slopes()
    df["h"] = np.arange(len(df)) % 7
    with pytest.raises(MultilevelError, match="single random-effects term.*2 terms"):
        multilevel.fit("y ~ x + (1 | g) + (1 | h)", df, family="binomial", nagq=3)
    df["x2"] = df["x"] ** 2
    df["x3"] = df["x"] ** 3
    big = math.ceil(MAX_AGQ_POINTS ** (1 / 4)) + 1
    with pytest.raises(MultilevelError, match=f"{big}\\^4 = .* quadrature points per group"):
        multilevel.fit("y ~ x + (1 + x + x2 + x3 | g)", df, family="binomial", nagq=big)
