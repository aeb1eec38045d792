"""The GLMM optimiser (multilevel.fitting.glmm): stage 2 by Newton's method from stage 1's
point where every θ is off its bound, BOBYQA where one is not, and either way an optimum
that BOBYQA run to a tight tolerance does not improve on, with the Hessian of the optimum."""

import numpy as np
import pandas as pd
import pytest
from conftest import load_data

import multilevel
from multilevel.data import build_frame
from multilevel.engine.family import family
from multilevel.fitting.derivatives import hessian
from multilevel.fitting.glmm import _newton_stage2, optimize_glmm, prepare_glmm
from multilevel.fitting.optimize import minimize_from


def binary(seed: int, sd: float, groups: int = 20, size: int = 12, slope_sd: float = 0.0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), size)
    x = rng.normal(size=g.size)
    eta = -0.3 + 0.8 * x + sd * rng.normal(size=groups)[g]
    if slope_sd:
        eta = eta + slope_sd * rng.normal(size=groups)[g] * x
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "g": g})


CASES = {
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", "binomial"),
    "slopes": ("y ~ x + (1 + x | g)", 3, "binomial"),
    "near the bound": ("y ~ x + (1 | g)", 1, "binomial"),  # θ̂ = 0.09 without group variation
    "owls": (
        "SiblingNegotiation ~ FoodTreatment * SexParent + offset(logBroodSize) + (1 | Nest)",
        "owls",
        "poisson",
    ),
}


def problem(name):
    formula, data, fam = CASES[name]
    if isinstance(data, int):
        slopes = "+ x |" in formula
        df = binary(data, 1.0 if slopes else 0.0, groups=40 if slopes else 30, size=10,
                    slope_sd=0.7 if slopes else 0.0)  # fmt: skip
    else:
        df = load_data(data)
    return prepare_glmm(build_frame(formula, df, family=fam), family(fam))


@pytest.mark.parametrize("name", sorted(CASES))
def test_newton_reaches_what_a_tight_bobyqa_reaches(name):
    res = optimize_glmm(problem(name))
    assert res.optim.converged, res.optim.message
    assert any("Newton's method" in run[0] for run in res.optim.runs), res.optim.runs
    dev = problem(name).deviance
    lower = np.concatenate([dev.layout.lower, np.full(dev.p, -np.inf)])
    x, fx, _ = minimize_from(dev, res.x, lower, step=0.05, ftol_rel=1e-15)
    assert res.optim.objective <= fx + 1e-10 * abs(fx)
    np.testing.assert_allclose(res.x, x, atol=2e-5 * max(1.0, np.abs(x).max()))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_hessian_is_the_objectives_at_the_optimum(name):
    # central differences without extrapolation against Richardson's extrapolation (r = 4)
    res = optimize_glmm(problem(name))
    dev = problem(name).deviance
    H = hessian(dev, res.x)
    np.testing.assert_allclose(res.hessian, H, rtol=1e-4, atol=1e-4 * np.abs(H).max())


def test_newton_gives_way_at_the_bound():
    dev = problem("cbpp").deviance
    lower = np.concatenate([dev.layout.lower, np.full(dev.p, -np.inf)])
    x = np.concatenate([[0.0], np.zeros(dev.p)])
    assert _newton_stage2(dev, x, lower, [0]) is None


def test_a_fit_on_the_bound_goes_through_bobyqa_and_is_the_glms():
    # no group variation at all: θ̂ = 0 and β̂ is the GLM's (a logistic regression)
    df = binary(0, 0.0, groups=30, size=10)
    m = multilevel.fit("y ~ x + (1 | g)", df, family="binomial")
    assert m.theta[0] < 1e-4 and m.singular
    assert not any("Newton's method" in run[0] for run in m.optim.runs)
    X = np.column_stack([np.ones(len(df)), df.x])

    def nll(b):
        eta = X @ b
        return -2.0 * float(np.sum(df.y * eta - np.logaddexp(0.0, eta)))

    from scipy.optimize import minimize

    glm = minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-10})
    assert m.objective <= glm.fun + 1e-8 * glm.fun
    np.testing.assert_allclose(m.fixef.values, glm.x, atol=1e-4)
