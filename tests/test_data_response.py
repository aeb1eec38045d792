"""The responses of binomial and Poisson models (multilevel.data.response): every form R
accepts gives the same model, and every bad response is refused naming the column and a row."""

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel import datasets
from multilevel.errors import DataError, MultilevelError

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp():
    return datasets.load("cbpp")


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    return multilevel.fit(CBPP, cbpp, family="binomial")


def bad_frame():
    return pd.DataFrame({
        "y": [0, 1, 2, 1, 0, 1] * 3, "x": np.arange(18.0), "g": np.repeat([1, 2, 3], 6),
        "s": [1, 2, 3] * 6, "f": [2, -1, 0] * 6, "c": [0.5, 1.5, 2] * 6,
        "t": ["a", "b", "c"] * 6,
    })  # fmt: skip


def test_proportions_with_trials_as_weights_are_cbind(cbpp, cbpp_fit):
    df = cbpp.assign(p=cbpp.incidence / cbpp["size"])
    m = multilevel.fit("p ~ period + (1 | herd)", df, family="binomial", weights="size")
    assert m.objective == pytest.approx(cbpp_fit.objective, rel=1e-10)
    np.testing.assert_allclose(m.fixef, cbpp_fit.fixef, rtol=1e-6)


def test_bernoulli_rows_give_the_binomial_estimates(cbpp, cbpp_fit):
    """One 0/1 row per animal: the same likelihood in β and θ, less the binomial
    coefficients log C(m, s) of the grouped form."""
    rows = []
    for r in cbpp.itertuples():
        rows += [(r.herd, r.period, 1)] * r.incidence
        rows += [(r.herd, r.period, 0)] * (r.size - r.incidence)
    long = pd.DataFrame(rows, columns=["herd", "period", "sick"])
    m = multilevel.fit("sick ~ period + (1 | herd)", long, family="binomial")
    np.testing.assert_allclose(m.fixef, cbpp_fit.fixef, rtol=1e-5)
    np.testing.assert_allclose(m.theta, cbpp_fit.theta, rtol=1e-5)
    from scipy.special import gammaln

    s, n = cbpp.incidence.to_numpy(), cbpp["size"].to_numpy()
    log_choose = (gammaln(n + 1) - gammaln(s + 1) - gammaln(n - s + 1)).sum()
    assert cbpp_fit.objective == pytest.approx(m.objective - 2 * log_choose, rel=1e-9)


def test_a_two_level_factor_has_its_second_level_as_the_success():
    va = datasets.load("verbagg").iloc[:1500]
    form = "{} ~ Anger + Gender + (1 | id)"
    m_text = multilevel.fit(form.format("r2"), va, family="binomial")
    m_01 = multilevel.fit(form.format("y"), va.assign(y=(va.r2 == "Y").astype(int)),
                          family="binomial")  # fmt: skip
    m_bool = multilevel.fit(form.format("y"), va.assign(y=va.r2 == "Y"), family="binomial")
    assert m_text.objective == pytest.approx(m_01.objective, rel=1e-12)
    assert m_bool.objective == pytest.approx(m_01.objective, rel=1e-12)
    cat = va.assign(r2=pd.Categorical(va.r2, categories=["N", "Y"]))
    assert multilevel.fit(form.format("r2"), cat, family="binomial").objective == (
        pytest.approx(m_01.objective, rel=1e-12)
    )


@pytest.mark.parametrize(
    ("formula", "family", "kwargs", "message"),
    [
        (
            "y ~ x + (1|g)",
            "binomial",
            {},
            r"'y' of a binomial model must be 0 or 1, not 2 in row 2",
        ),
        (
            "c ~ x + (1|g)",
            "binomial",
            {"weights": "s"},
            r"'c' of a binomial model must be a proportion between 0 and 1, not 1.5 in row 1",
        ),
        (
            "c ~ x + (1|g)",
            "poisson",
            {},
            r"'c' of a Poisson model must be whole counts .* 0.5 in row 0",
        ),
        (
            "f ~ x + (1|g)",
            "poisson",
            {},
            r"'f' of a Poisson model .* not -1 in row 1 \(6 such rows\)",
        ),
        (
            "cbind(s, f) ~ x + (1|g)",
            "binomial",
            {},
            r"failures 'f' of 'cbind\(s, f\)' .* -1 \(row 1",
        ),
        ("cbind(s, s - s) ~ x + (1|g)", "binomial", {}, r"only successes in all 18 rows"),
        (
            "cbind(s, f) ~ x + (1|g)",
            "poisson",
            {},
            r"is for a binomial model; use family='binomial'",
        ),
        ("cbind(s, f) ~ x + (1|g)", "gaussian", {}, r"is for a binomial model"),
        (
            "t ~ x + (1|g)",
            "binomial",
            {},
            r"'t' of a binomial model must have two levels .* 3: 'a'",
        ),
        ("t ~ x + (1|g)", "poisson", {}, r"'t' of a poisson model must be numeric counts"),
    ],
)
def test_bad_responses_name_the_column_and_a_row(formula, family, kwargs, message):
    with pytest.raises(DataError, match=message):
        multilevel.fit(formula, bad_frame(), family=family, **kwargs)


def test_zero_trials_are_refused_in_either_form():
    df = bad_frame().assign(f=[2, 1, 0] * 6)
    df.loc[5, ["s", "f"]] = 0
    message = r"'cbind\(s, f\)' has 0 trials .* in 1 row, the first row 5"
    with pytest.raises(DataError, match=message):
        multilevel.fit("cbind(s, f) ~ x + (1|g)", df, family="binomial")
    df["n"] = df.s + df.f
    df["p"] = df.s / df.n.where(df.n > 0, 1)
    with pytest.raises(DataError, match=r"weights column 'n' .* is 0 in 1 row, the first row 5"):
        multilevel.fit("p ~ x + (1|g)", df, family="binomial", weights="n")


def test_missing_responses_are_dropped_and_counted(cbpp, cbpp_fit):
    df = cbpp.astype({"incidence": float})
    df.loc[[3, 10], "incidence"] = np.nan
    m = multilevel.fit(CBPP, df, family="binomial")
    assert (m.nobs, m.n_dropped) == (54, 2)
    assert m.objective < cbpp_fit.objective


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": "gamma"}, "unknown family 'gamma'"),
        ({"family": multilevel.family("poisson"), "nagq": 0}, "nagq must be a whole number"),
        ({"family": "binomial", "nagq": 2.5}, "nagq must be a whole number"),
        ({"nagq": 3}, "nagq= is for binomial and Poisson models"),
    ],
)
def test_bad_family_arguments(kwargs, message):
    with pytest.raises(MultilevelError, match=message):
        multilevel.fit("y ~ x + (1|g)", bad_frame().assign(y=[0, 1] * 9), **kwargs)


def test_links_available_per_family():
    assert str(multilevel.family("binomial", "probit")) == "binomial(probit)"
    assert str(multilevel.family("Poisson")) == "poisson(log)"
    with pytest.raises(MultilevelError, match="'probit' is not available for the poisson"):
        multilevel.family("poisson", "probit")
