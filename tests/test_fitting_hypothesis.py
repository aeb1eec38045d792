"""Property-based tests of the fit on random data sets: any number of groups, groups of one,
unbalanced groups, missing values, predictors and responses at scales from 1e-6 to 1e6,
random slopes, crossed factors, zero variances. Every data set either fits or fails with a
MultilevelError. A fit's criterion, coefficients and σ equal the dense textbook formulas at
its θ, and its optimum is one that scipy from three other starts does not improve on by
more than 1e-6 (relative), unless the miss is of a kind known in the engine's optimiser
(E3 in ``strategies``: a fit that says it did not converge)."""

import warnings

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from scipy.optimize import minimize
from strategies import assert_close, dense_reference, designs, fit_or_error, known_miss

from multilevel.errors import MultilevelError


def best_of_other_starts(fit, seed: int, starts: int = 3) -> tuple[float, np.ndarray]:
    """The lowest deviance scipy finds from ``starts`` random points (Λ's diagonal positive,
    at scales 0.03 to 30), and where: L-BFGS-B (finite differences) from each, then Powell
    (derivative-free) from the best, all within the bounds of θ. ``fit.deviance`` takes θ
    in its own parametrisation, that of ``fit.optim.theta``."""
    dev, lower = fit.deviance, fit.deviance.layout.lower
    bounds = [(0.0 if lo == 0 else None, None) for lo in lower]

    def f(theta):
        v = dev(np.asarray(theta, dtype=float))
        return v if np.isfinite(v) else 1e300

    rng = np.random.default_rng(seed)
    best = None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # overflow far out in θ, where scipy may look
        for _ in range(starts):
            scale = 10.0 ** rng.uniform(-1.5, 1.5)
            x0 = np.where(
                lower == 0, np.abs(rng.normal(size=lower.size)) + 0.05, rng.normal(size=lower.size)
            )
            r = minimize(f, x0 * scale, method="L-BFGS-B", bounds=bounds)
            if best is None or r.fun < best.fun:
                best = r
        r = minimize(
            f, best.x, method="Powell", bounds=bounds, options={"xtol": 1e-6, "ftol": 1e-12}
        )
    best = r if r.fun < best.fun else best
    return float(best.fun), np.asarray(best.x, dtype=float)


@given(designs(), st.booleans(), st.integers(0, 2**32 - 1))
def test_random_data_fit_at_the_optimum_or_fail_with_our_error(design, reml, seed):
    fit = fit_or_error(design.formula, design.data, reml=reml)
    if isinstance(fit, MultilevelError):
        return
    event("fitted" + (" (singular)" if fit.singular else ""))
    assert np.isfinite(fit.objective)
    assert fit.objective == fit.optim.objective
    assert fit.nobs + fit.n_dropped == len(design.data)
    assert np.all(np.isfinite(fit.fixef.to_numpy()))
    assert np.all(np.isfinite(fit.fixef_se.to_numpy()))
    assert np.isfinite(fit.sigma) and fit.sigma > 0
    # the criterion, β and σ at the fitted θ, against dense textbook formulas
    objective, beta, sigma = dense_reference(fit)
    assert fit.objective == pytest.approx(objective, rel=1e-9, abs=1e-9)
    assert_close(fit.fixef, beta, 1e-7, 1e-7 * fit.fixef_se.to_numpy())
    assert fit.sigma == pytest.approx(sigma, rel=1e-7)
    # the optimum: what the deviance gives at θ, and nothing lower from other starts
    assert fit.deviance(fit.optim.theta) == fit.optim.objective
    other, where = best_of_other_starts(fit, seed)
    if fit.optim.objective <= other + 1e-6 * max(1.0, abs(other)):
        event("optimum confirmed")
        return
    why = known_miss(fit, where)
    assert why, f"ours {fit.optim.objective!r} at θ={fit.optim.theta}, scipy {other!r} at θ={where}"
    event(f"optimum missed, a known limit ({why})")
