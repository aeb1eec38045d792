"""The simulated school study, and the calibration of the two-level fit on it: the 95% Wald
intervals of a0, b0, a1, b1 cover the truth at 95% within Monte Carlo error."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import multilevel
from multilevel.errors import DataError
from multilevel.simulate_schools import simulate_schools

SIGMA = [[0.25, 0.045], [0.045, 0.09]]  # SDs 0.5 and 0.3, correlation 0.3


def test_shape_and_truth():
    sizes = np.arange(1, 21)
    df = simulate_schools(20, sizes, a0=1, b0=2, a1=3, b1=4, Sigma=SIGMA, sigma_y=0.5, seed=1)
    assert list(df.columns) == ["school", "x", "u", "y"]
    assert len(df) == sizes.sum()
    t = df.attrs["truth"]
    assert (t["a0"], t["b0"], t["a1"], t["b1"], t["sigma_y"]) == (1, 2, 3, 4, 0.5)
    assert t["Sigma"] == SIGMA
    assert df.groupby("school").size().loc[t["school"]].tolist() == sizes.tolist()
    assert (df.groupby("school").u.nunique() == 1).all()
    # y is the level-1 equation with the true α_j, β_j plus noise of SD σ_y
    alpha = pd.Series(t["alpha"], index=t["school"])
    beta = pd.Series(t["beta"], index=t["school"])
    eps = df.y - alpha[df.school].to_numpy() - beta[df.school].to_numpy() * df.x
    assert eps.std() == pytest.approx(0.5, rel=0.1)
    # α_j, β_j follow the level-2 equations
    u = pd.Series(t["u"], index=t["school"])
    eta = np.column_stack([alpha - 1 - 2 * u, beta - 3 - 4 * u])
    assert np.abs(eta).max() < 5 * 0.5


def test_reproducible_and_level2_moments():
    a = simulate_schools(2000, 2, Sigma=SIGMA, seed=42)
    b = simulate_schools(2000, 2, Sigma=SIGMA, seed=42)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(simulate_schools(2000, 2, Sigma=SIGMA, seed=43))
    t = a.attrs["truth"]
    u = np.array(t["u"])
    eta = np.column_stack(
        [np.array(t["alpha"]) - t["a0"] - t["b0"] * u, np.array(t["beta"]) - t["a1"] - t["b1"] * u]
    )
    np.testing.assert_allclose(np.cov(eta.T), SIGMA, atol=0.02)
    assert u.std() == pytest.approx(1, abs=0.05)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_schools=0), "n_schools"),
        (dict(students_per_school=[3, 4]), "students_per_school"),
        (dict(students_per_school=0), "students_per_school"),
        (dict(Sigma=[[1, 2], [2, 1]]), "semi-definite"),
        (dict(Sigma=[[1, 0], [0.5, 1]]), "symmetric"),
        (dict(sigma_y=0), "sigma_y"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(n_schools=5, students_per_school=3)
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        simulate_schools(**args)


def test_fit_recovers_the_truth():
    df = simulate_schools(300, 20, a0=1, b0=0.5, a1=-0.5, b1=0.3, Sigma=SIGMA, seed=3)
    m = multilevel.fit("y ~ x", df, group="school", group_formula="~ u")
    gl = m.group_level.set_index("symbol")
    for sym, v in dict(a0=1, b0=0.5, a1=-0.5, b1=0.3).items():
        assert abs(gl.loc[sym, "estimate"] - v) < 4 * gl.loc[sym, "se"]
    np.testing.assert_allclose(m.eta_sd, [0.5, 0.3], rtol=0.15)
    assert m.sigma_y == pytest.approx(1.0, rel=0.05)


N_STUDIES = 300
J, N_PER = 40, 12
TRUTH = dict(a0=1.0, b0=0.5, a1=-0.5, b1=0.3)


def test_calibration_of_group_level_intervals():
    """N_STUDIES studies of 40 schools x 12 students: the intervals estimate ± t_{J-2, .975}
    SE (J - 2 degrees of freedom: J groups, two coefficients per level-2 regression) cover
    a0, b0, a1, b1 at a rate within 3 binomial SEs of 0.95. The group coefficients' intervals
    (α_j ± 1.96 SE, over all schools) are checked loosely: with θ estimated they are known
    to undercover a little."""
    q = stats.t.ppf(0.975, J - 2)
    hits = dict.fromkeys(TRUTH, 0)
    alpha_cover = []
    for s in range(N_STUDIES):
        df = simulate_schools(J, N_PER, **TRUTH, Sigma=SIGMA, sigma_y=1.0, seed=10_000 + s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = multilevel.fit("y ~ x", df, group="school", group_formula="~ u")
        gl = m.group_level.set_index("symbol")
        for sym, v in TRUTH.items():
            hits[sym] += abs(gl.loc[sym, "estimate"] - v) <= q * gl.loc[sym, "se"]
        ct = m.coef_table()
        alpha = np.array(df.attrs["truth"]["alpha"])
        alpha_cover.append(
            np.mean(np.abs(ct["(Intercept)"].to_numpy() - alpha) <= 1.96 * ct["se((Intercept))"])
        )
    mc_se = math.sqrt(0.95 * 0.05 / N_STUDIES)
    rates = {k: v / N_STUDIES for k, v in hits.items()}
    for sym, rate in rates.items():
        assert abs(rate - 0.95) <= 3 * mc_se, (sym, rates)
    assert 0.91 < np.mean(alpha_cover) < 0.97, np.mean(alpha_cover)
