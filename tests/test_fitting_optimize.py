"""The optimiser reaches the optimum: no other optimiser, from other starts, finds better."""

import numpy as np
import pytest
from scipy.optimize import minimize
from test_engine_deviance import FORMULAS, simulate

import multilevel
from multilevel.data import build_frame
from multilevel.engine.layout import theta_for_deviance
from multilevel.fitting.lmm import prepare
from multilevel.fitting.optimize import minimize_theta, on_boundary


def best_of_other_starts(dev, seeds=4):
    lo = dev.layout.lower
    bounds = [(0 if b == 0 else None, None) for b in lo]
    best = np.inf
    rng = np.random.default_rng(0)
    for _ in range(seeds):
        x0 = np.abs(rng.normal(size=dev.layout.size)) + 0.05
        r = minimize(dev, x0, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-14})
        r = minimize(dev, r.x, method="Powell", bounds=bounds, options={"ftol": 1e-12})
        best = min(best, r.fun)
    return best


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("seed", [11, 12])
def test_no_other_start_finds_better(formula, seed):
    df = simulate(seed, n=200)
    frame = build_frame(formula, df)
    dev = prepare(frame).deviance
    ours = minimize_theta(dev, dev.layout)
    other = best_of_other_starts(dev)
    assert ours.objective <= other + 1e-7 * abs(other)
    assert ours.converged


@pytest.mark.parametrize("expensive", [False, True])
def test_false_boundary_optimum_of_radon_is_left(expensive):
    data = multilevel.datasets.load("radon")
    frame = build_frame("log_radon ~ floor * log_uranium + (1 + floor | county)", data)
    problem = prepare(frame)
    cp, dev = problem.blocks, problem.deviance
    # lme4's default stops on the boundary at 2132.235 (θ in lme4's parametrisation); the
    # optimum is 2126.579
    lme4_stop = theta_for_deviance(dev.layout, [0.0, -0.44088525, 0.21990435], cp.z_scale)
    assert dev(lme4_stop) == pytest.approx(2132.2352, abs=1e-3)
    r = minimize_theta(dev, dev.layout, expensive)
    assert r.objective == pytest.approx(2126.57944041944, abs=1e-6)
    assert len(on_boundary(r.theta, dev.layout)) == 0


def test_true_boundary_optimum_is_kept():
    data = multilevel.datasets.load("dyestuff2")
    m = multilevel.fit("Yield ~ 1 + (1 | Batch)", data)
    assert m.theta[0] == 0.0
    assert m.singular and m.converged


def test_gradient_and_newton_decrement_on_a_quadratic():
    from multilevel.fitting.optimize import newton_decrement, projected_gradient

    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    xstar = np.array([1.0, -0.5])

    def f(x):
        d = x - xstar
        return float(d @ A @ d)

    x = xstar + np.array([0.01, -0.02])
    lower = np.array([0.0, -np.inf])
    g = projected_gradient(f, x, lower)
    np.testing.assert_allclose(g, 2 * A @ (x - xstar), rtol=1e-6)
    # f is quadratic: a Newton step reaches the minimum, so the decrement is f(x) - f(x*)
    assert newton_decrement(f, x, g, lower) == pytest.approx(f(x), rel=1e-5)
    # at a bound, a derivative pointing out of the feasible set does not count
    xb = np.array([0.0, -0.5])
    gb = projected_gradient(lambda x: f(x) - 10 * x[0], xb, lower)
    assert gb[0] <= 0.0


def test_a_fit_stopped_early_is_reported_as_not_converged(monkeypatch):
    import multilevel.fitting.optimize as opt

    monkeypatch.setattr(opt, "MAXEVAL", 4)
    m = multilevel.fit("Reaction ~ Days + (Days | Subject)", multilevel.datasets.load("sleepstudy"))
    assert not m.converged
    assert "converge" in m.summary()


def test_better_optimum_close_in_sigma_but_far_in_theta_is_found():
    # a radon bootstrap replicate: from Λ = I and the zero-column restarts the optimiser
    # stopped at 2065.7995 (intercept variance 0); the optimum, 2065.7652, has the same
    # rank-one covariance turned slightly (correlation -1) — reached from chol(ΛΛ' + δI)
    from multilevel.model.simulate import SimModel

    m = multilevel.fit(
        "log_radon ~ floor * log_uranium + (1 + floor | county)",
        multilevel.datasets.load("radon"),
    )
    rng = np.random.default_rng(np.random.SeedSequence(5).spawn(200)[36])
    y = SimModel.from_fit(m).draw(rng)[:, 0]
    r = m.refit(y)
    lower = theta_for_deviance(
        r.deviance.layout, [0.0095, -0.519, 0.0], r.problem.blocks.z_scale
    )  # lme4's θ
    assert r.deviance(lower) < 2065.7653
    assert r.objective < 2065.76521


def test_newton_decrement_is_infinite_where_the_hessian_is_not_finite():
    from multilevel.fitting.optimize import newton_decrement

    def f(x):
        return np.inf if x[0] > 1.0 else float(x @ x)

    x = np.array([1.0, 0.5])
    assert newton_decrement(f, x, np.array([2.0, 1.0]), np.array([-np.inf, -np.inf])) == np.inf
