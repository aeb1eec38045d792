"""Prediction intervals by simulation: coverage on data simulated from a known model, and
agreement with the closed forms they approximate."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import multilevel
from multilevel import datasets
from multilevel.errors import DataError, MultilevelError
from multilevel.model.predict import predict_interval

BETA = (2.0, 1.0)
SD, RHO, SIGMA = (1.0, 0.5), 0.3, 1.0
COV = np.array([[SD[0] ** 2, RHO * SD[0] * SD[1]], [RHO * SD[0] * SD[1], SD[1] ** 2]])


def outcome(rng, b, g, x):
    return BETA[0] + BETA[1] * x + b[g, 0] + b[g, 1] * x + SIGMA * rng.normal(size=len(x))


def simulated(rng, groups=60, per=8):
    b = rng.multivariate_normal([0, 0], COV, size=groups)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=len(g))
    df = pd.DataFrame({"y": outcome(rng, b, g, x), "x": x, "g": [f"g{i}" for i in g]})
    return df, b


@pytest.fixture(scope="module")
def coverage():
    """10 data sets of 60 groups x 8; per data set 600 new observations in the known groups
    (their true effects) and 600 in 60 new groups (new effects from the true distribution)."""
    rng = np.random.default_rng(2024)
    hits = {k: [] for k in ("known", "new", "new_population", "known_confidence")}
    for r in range(10):
        df, b = simulated(rng)
        m = multilevel.fit("y ~ x + (x | g)", df)
        g = np.repeat(np.arange(60), 10)
        x = rng.normal(size=len(g))
        y_known = outcome(rng, b, g, x)
        b_new = rng.multivariate_normal([0, 0], COV, size=60)
        y_new = outcome(rng, b_new, g, x)
        known = pd.DataFrame({"x": x, "g": [f"g{i}" for i in g]})
        new = pd.DataFrame({"x": x, "g": [f"new{i}" for i in g]})

        def inside(y, tab):
            return ((y >= tab["lower"]) & (y <= tab["upper"])).to_numpy()

        kw = dict(ndraws=2000, seed=r)
        hits["known"].append(inside(y_known, m.predict(known, interval="prediction", **kw)))
        hits["new"].append(
            inside(y_new, m.predict(new, interval="prediction", new_groups="draw", **kw))
        )
        hits["new_population"].append(inside(y_new, m.predict(new, interval="prediction", **kw)))
        hits["known_confidence"].append(
            inside(y_known, m.predict(known, interval="confidence", **kw))
        )
    return {k: float(np.mean(v)) for k, v in hits.items()}


def test_prediction_intervals_cover_95_percent(coverage):
    """6,000 observations each, clustered in 10 fits: the Monte Carlo SD of the rate is
    about 0.005 (measured across data sets); 0.95 ± 0.015 is three of them."""
    assert coverage["known"] == pytest.approx(0.95, abs=0.015)
    assert coverage["new"] == pytest.approx(0.95, abs=0.015)


def test_other_intervals_do_not_cover_new_observations(coverage):
    """Leaving out the new groups' variation, or the residual noise, undercovers clearly."""
    assert coverage["new_population"] < 0.88
    assert coverage["known_confidence"] < 0.75


@pytest.fixture(scope="module")
def sleep():
    return multilevel.fit("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))


def test_against_closed_forms(sleep):
    """Confidence intervals: population level ≈ x'β̂ ± z sqrt(x'Vx) (t-ish: σ varies a
    little), known subject with arm's independent draws (``joint=False``) ≈ x'β̂ + z'b̃ ±
    z sqrt(x'Vx + z'C z) (C: conditional variance)."""
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0], "Subject": ["new", "new", "new"]})
    tab = predict_interval(sleep, new, ndraws=20_000, seed=3)
    X = np.column_stack([np.ones(3), new["Days"]])
    V = sleep.vcov.to_numpy()
    half = norm.ppf(0.975) * np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
    np.testing.assert_allclose(tab["fit"], X @ sleep.fixef.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose((tab["upper"] - tab["lower"]) / 2, half, rtol=0.05)
    assert np.all(np.abs((tab["upper"] + tab["lower"]) / 2 - tab["fit"]) < 0.05 * half)

    known = new.assign(Subject="308")
    tab = predict_interval(sleep, known, ndraws=20_000, seed=3, joint=False)
    term = sleep.schema.terms[0]
    c = list(term.levels).index("308")
    C = sleep.conditional.condvar[0][c]
    var = np.einsum("ij,jk,ik->i", X, V, X) + np.einsum("ij,jk,ik->i", X, C, X)
    np.testing.assert_allclose(tab["fit"], sleep.predict(known), rtol=1e-12)
    np.testing.assert_allclose(
        (tab["upper"] - tab["lower"]) / 2, norm.ppf(0.975) * np.sqrt(var), rtol=0.05
    )
    # a prediction interval adds σ²: wider by about sqrt(var + σ²)/sqrt(var)
    pred = predict_interval(sleep, known, interval="prediction", ndraws=20_000, seed=3, joint=False)
    np.testing.assert_allclose(
        (pred["upper"] - pred["lower"]) / 2,
        norm.ppf(0.975) * np.sqrt(var + sleep.sigma**2),
        rtol=0.05,
    )


def test_new_groups_draw_widens_by_the_group_variance(sleep):
    new = pd.DataFrame({"Days": [0.0], "Subject": ["new"]})
    pop = predict_interval(sleep, new, ndraws=20_000, seed=1)
    drawn = predict_interval(sleep, new, ndraws=20_000, seed=1, new_groups="draw")
    sd_int = sleep.varcorr["sdcor"].iloc[0]
    var_pop = ((pop["upper"] - pop["lower"]) / (2 * norm.ppf(0.975))) ** 2
    var_drawn = ((drawn["upper"] - drawn["lower"]) / (2 * norm.ppf(0.975))) ** 2
    assert float(var_drawn.iloc[0] - var_pop.iloc[0]) == pytest.approx(sd_int**2, rel=0.1)


def test_reproducible_and_delegated(sleep):
    a = sleep.predict(interval="prediction", seed=5, ndraws=200)
    b = predict_interval(sleep, None, interval="prediction", seed=5, ndraws=200)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["fit", "lower", "upper"]
    assert len(a) == sleep.nobs
    np.testing.assert_allclose(a["fit"], sleep.fitted)
    assert (a["lower"] < a["fit"]).all() and (a["fit"] < a["upper"]).all()
    c = sleep.predict(interval="prediction", seed=6, ndraws=200)
    assert not np.allclose(a["lower"], c["lower"])
    nd = pd.DataFrame({"Days": [1.0, 2.0]}, index=["a", "b"]).assign(Subject="309")
    assert list(sleep.predict(nd, interval="confidence", ndraws=50).index) == ["a", "b"]


def test_errors(sleep):
    nd = pd.DataFrame({"Days": [1.0], "Subject": ["nobody"]})
    with pytest.raises(DataError, match="not in the fitted data"):
        sleep.predict(nd, interval="confidence", new_groups="error")
    with pytest.raises(MultilevelError, match="interval"):
        sleep.predict(nd, interval="credible")
    with pytest.raises(MultilevelError, match="new_groups"):
        sleep.predict(nd, interval="confidence", new_groups="drop")
    with pytest.raises(MultilevelError, match="level"):
        sleep.predict(nd, interval="confidence", level=95)
    with pytest.raises(MultilevelError, match="ndraws"):
        sleep.predict(nd, interval="confidence", ndraws=1)


def test_joint_draws_against_the_exact_conditional_variance(sleep):
    """The default draws (σ, β, b) jointly given θ̂: for a known subject the mean
    x'β + z'b has Var = (x - z H)' V (x - z H) + z'C z (H: the coupling of b̂ to β̂),
    smaller than arm's x'Vx + z'Cz when b̂ and β̂ are negatively correlated."""
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0], "Subject": ["308"] * 3})
    X = np.column_stack([np.ones(3), new["Days"]])
    V = sleep.vcov.to_numpy()
    c = list(sleep.schema.terms[0].levels).index("308")
    C = sleep.conditional.condvar[0][c]
    H = sleep.conditional.coupling[0][c]  # (k, p)
    A = X - X @ H  # Z = X here: the random effects are (1 + Days | Subject)
    var = np.einsum("ij,jk,ik->i", A, V, A) + np.einsum("ij,jk,ik->i", X, C, X)
    tab = predict_interval(sleep, new, ndraws=40_000, seed=4)
    np.testing.assert_allclose(
        (tab["upper"] - tab["lower"]) / 2, norm.ppf(0.975) * np.sqrt(var), rtol=0.05
    )
    arm = np.einsum("ij,jk,ik->i", X, V, X) + np.einsum("ij,jk,ik->i", X, C, X)
    assert np.all(var < arm)
