"""Inference for GLMMs (multilevel.inference.glmm_intervals, compare) against lme4 on cbpp
(tests/data/reference/glmm/cbpp_lme4_inference.json, by make_glmm_references.R)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel import datasets
from multilevel.errors import MultilevelError
from multilevel.inference.glmm_intervals import GlmmProfile

REF = json.loads(
    (Path(__file__).parent / "data" / "reference" / "glmm" / "cbpp_lme4_inference.json").read_text()
)
FORM = "cbind(incidence, size - incidence) ~ {} + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp():
    return datasets.load("cbpp")


@pytest.fixture(scope="module")
def fits(cbpp):
    return {
        "laplace": multilevel.fit(FORM.format("period"), cbpp, family="binomial"),
        "agq25": multilevel.fit(FORM.format("period"), cbpp, family="binomial", nagq=25),
        "null": multilevel.fit(FORM.format("1"), cbpp, family="binomial"),
    }


@pytest.mark.parametrize("method", ["laplace", "agq25"])
def test_profile_intervals_agree_with_lme4(fits, method):
    m = fits[method]
    ci = m.confint("profile")
    ref = REF[f"profile_{method}"]
    assert list(ci.index) == list(ref)
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    for name, (lo, hi) in ref.items():
        # lme4 interpolates its profile with splines, and its Laplace objective is a little
        # off the exact one: 1e-4 apart
        assert ci.loc[name, "2.5 %"] == pytest.approx(lo, abs=1e-4), name
        assert ci.loc[name, "97.5 %"] == pytest.approx(hi, abs=1e-4), name


def test_profile_limits_are_roots_of_zeta(fits):
    m = fits["laplace"]
    prof = GlmmProfile(m)
    for name in ("sd_(Intercept)|herd", "period"):
        lo, hi = prof.interval(name, 0.9)
        assert prof.zeta(name, lo) == pytest.approx(-1.6448536, abs=1e-6)
        assert prof.zeta(name, hi) == pytest.approx(1.6448536, abs=1e-6)
    # ζ is 0 at the estimate and the profile is wider than Wald's for the SD's lower side
    assert prof.zeta("period", m.fixef["period"]) == pytest.approx(0.0, abs=1e-4)


def test_wald_intervals_and_parm(fits):
    m = fits["laplace"]
    ci = m.confint("wald", level=0.9, parm="period")
    z = 1.6448536269514722
    se = m.fixef_se["period"]
    assert ci.loc["period"].tolist() == pytest.approx(
        [m.fixef["period"] - z * se, m.fixef["period"] + z * se], rel=1e-12
    )
    full = m.confint()
    assert np.isnan(full.loc["sd_(Intercept)|herd"]).all()
    with pytest.raises(MultilevelError, match="no parameter 'sigma'"):
        m.confint("profile", parm="sigma")
    with pytest.raises(MultilevelError, match="'wald', 'profile' or 'boot'"):
        m.confint("kenward-roger")


def test_likelihood_ratio_test_agrees_with_lme4(fits):
    table = multilevel.anova(fits["null"], fits["laplace"])
    ref = REF["anova"]
    assert table["Df"].iloc[1] == ref["df"]
    # ours are the exact Laplace deviances (lme4's are ~5e-4 higher)
    assert table["deviance"].tolist() == pytest.approx(ref["deviance"], abs=1e-3)
    assert table["Chisq"].iloc[1] == pytest.approx(ref["chisq"], abs=1e-3)
    assert table["Chisq"].iloc[1] == pytest.approx(
        fits["null"].objective - fits["laplace"].objective, rel=1e-12
    )
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"], rel=1e-3)


def test_anova_refuses_mixed_kinds(fits, cbpp):
    poisson = multilevel.fit("incidence ~ period + (1 | herd)", cbpp, family="poisson")
    with pytest.raises(MultilevelError, match="poisson\\(log\\) model and model 1 a binomial"):
        multilevel.anova(fits["laplace"], poisson)
    linear = multilevel.fit("incidence ~ period + (1 | herd)", cbpp)
    with pytest.raises(MultilevelError, match="linear model and model 1 a binomial"):
        multilevel.anova(fits["laplace"], linear)


def test_residuals_fitted_and_predictions_agree_with_lme4(fits):
    m = fits["laplace"]
    for kind in ("deviance", "pearson", "response"):
        np.testing.assert_allclose(m.residuals_of(kind), REF["residuals"][kind], atol=2e-3)
    np.testing.assert_allclose(m.fitted, REF["fitted"], atol=1e-4)
    new = pd.DataFrame(REF["newdata"])
    np.testing.assert_allclose(m.predict(new), REF["predict_link"], atol=1e-3)
    np.testing.assert_allclose(m.predict(new, type="response"), REF["predict_response"],
                               atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(m.predict(new.assign(herd=[98, 99, 100])),
                               REF["predict_population"], atol=1e-3)  # fmt: skip
    with pytest.raises(MultilevelError, match="99"):
        m.predict(new, new_groups="error")


def test_parametric_bootstrap_is_seeded_and_centred_on_the_fit(fits):
    m = fits["laplace"]
    boot = m.bootstrap(40, seed=3)
    again = m.bootstrap(10, seed=3, workers=2)
    np.testing.assert_allclose(again.estimates.to_numpy(), boot.estimates.iloc[:10].to_numpy())
    assert list(boot.estimates.columns) == ["sd_(Intercept)|herd", "(Intercept)", "period"]
    assert boot.failed == 0
    # the replicates scatter around the estimates by about the fit's standard errors
    assert abs(boot.bias["period"]) < 0.1
    assert 0.5 < boot.se["period"] / m.fixef_se["period"] < 1.5
    assert (boot.estimates["sd_(Intercept)|herd"] >= 0).all()
    ci = m.confint("boot", n=40, seed=3, parm="period")
    assert ci.loc["period"].tolist() == pytest.approx(
        boot.estimates["period"].quantile([0.025, 0.975]).tolist(), rel=1e-12
    )
    with pytest.raises(MultilevelError, match="unknown argument"):
        m.confint("profile", n=10)
