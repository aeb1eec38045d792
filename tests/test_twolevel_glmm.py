"""The two-level form of binomial and Poisson models (multilevel.fit(..., group=,
family=)): the fit is the GLMM of the translated lme4 formula, presented in the seed's
notation with the link on the left and no ε_i; the group coefficients (fixed part plus
modes) and their SEs against a dense computation; predictions on both scales; tests and
intervals named a0, b0, ...; lme4's cbpp and owls figures; what has no meaning for a GLMM
(σ_y, REML, the least-squares pooling) refused; JSON, save/load, anova and the CLI."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import load_data, reference

import multilevel
from multilevel import TwoLevelModel
from multilevel.cli import main
from multilevel.errors import DataError, MultilevelError
from multilevel.simulate_schools import simulate_schools


def expit(v):
    return 1.0 / (1.0 + np.exp(-v))


@pytest.fixture(scope="module")
def schools():
    """40 schools of unequal size; y01 is Bernoulli with logit(p_i) = α_j[i] + β_j[i] x_i,
    α_j = -0.3 + 0.6 u_j + η_j1, β_j = 0.8 + 0.4 u_j + η_j2; cnt is Poisson with exposure t
    on the same linear predictor; succ out of trials a binomial count."""
    sizes = np.random.default_rng(5).integers(4, 40, size=40)
    sigma = ((0.5, 0.1), (0.1, 0.3))
    df = simulate_schools(40, sizes, a0=-0.3, b0=0.6, a1=0.8, b1=0.4, Sigma=sigma, seed=11)
    truth = df.attrs["truth"]
    j = pd.factorize(df.school, sort=True)[0]
    eta = np.asarray(truth["alpha"])[j] + np.asarray(truth["beta"])[j] * df.x.to_numpy()
    rng = np.random.default_rng(7)
    df["y01"] = (rng.random(len(df)) < expit(eta)).astype(int)
    df["t"] = rng.uniform(0.5, 3.0, size=len(df))
    df["logt"] = np.log(df.t)
    df["cnt"] = rng.poisson(df.t * np.exp(0.5 * eta))
    df["trials"] = rng.integers(1, 8, size=len(df))
    df["succ"] = rng.binomial(df.trials, expit(eta))
    df["prop"] = df.succ / df.trials
    df["z"] = rng.normal(size=len(df))
    return df


@pytest.fixture(scope="module")
def logit(schools):
    return multilevel.fit(
        "y01 ~ x", schools, group="school", group_formula="~ u", family="binomial",
        data_name="schools",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pois(schools):
    return multilevel.fit(
        "cnt ~ x + offset(log(t))", schools, group="school", group_formula="~ u",
        family="poisson",
    )  # fmt: skip


# -- the fit is the formula's GLMM -------------------------------------------------------


@pytest.mark.parametrize(
    "formula, kwargs, lme4, link",
    [
        ("y01 ~ x", dict(group_formula="~ u"), "y01 ~ x * u + (1 + x | school)", "logit"),
        ("y01 ~ x", dict(group_formula="~ u"), "y01 ~ x * u + (1 + x | school)", "probit"),
        ("y01 ~ x", dict(group_formula="~ u"), "y01 ~ x * u + (1 + x | school)", "cloglog"),
        ("y01 ~ x", dict(group_formula="~ u", varying="1"), "y01 ~ x + u + (1 | school)",
         "logit"),
        ("y01 ~ x", dict(), "y01 ~ x + (x | school)", "logit"),
        ("y01 ~ x + z", dict(group_formula="~ u", varying="1 + x"),
         "y01 ~ x * u + z + (x | school)", "logit"),
    ],
)  # fmt: skip
def test_binomial_two_level_fit_equals_formula_fit(schools, formula, kwargs, lme4, link):
    fam = multilevel.family("binomial", link)
    m = multilevel.fit(formula, schools, group="school", family=fam, **kwargs)
    assert isinstance(m, TwoLevelModel) and m.generalized
    assert isinstance(m.fit, multilevel.GeneralizedLinearMixedModel)
    assert (m.family, m.link, m.method) == ("binomial", link, "Laplace")
    assert m.fit.converged
    # the spec's own lme4 formula: the same fit
    same = multilevel.fit(m.lme4_formula, schools, family=fam)
    assert math.isclose(m.objective, same.objective, rel_tol=1e-12)
    np.testing.assert_allclose(m.theta, same.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.fixef, same.fixef, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.fixef_se, same.fixef_se, rtol=1e-8)
    # the same model written by hand (the columns in another order: the optimiser's path
    # differs, the optimum does not)
    ref = multilevel.fit(lme4, schools, family=fam)
    assert math.isclose(m.objective, ref.objective, rel_tol=1e-10)
    assert set(m.fixef.index) == set(ref.fixef.index)
    for k in ref.fixef.index:
        assert m.fixef[k] == pytest.approx(ref.fixef[k], rel=1e-5, abs=1e-7), k
        assert m.fixef_se[k] == pytest.approx(ref.fixef_se[k], rel=1e-4), k


def test_poisson_with_offset_equals_formula_fit(schools, pois):
    ref = multilevel.fit("cnt ~ x * u + offset(log(t)) + (1 + x | school)", schools,
                         family="poisson")  # fmt: skip
    assert pois.lme4_formula == "cnt ~ x + u + x:u + offset(log(t)) + (1 + x | school)"
    assert math.isclose(pois.objective, ref.objective, rel_tol=1e-12)
    np.testing.assert_allclose(pois.fixef, ref.fixef[pois.fixef.index], rtol=1e-6)
    np.testing.assert_allclose(pois.theta, ref.theta, rtol=1e-6)
    # offset= a column is the same model
    col = multilevel.fit("cnt ~ x", schools, group="school", group_formula="~ u",
                         family="poisson", offset="logt")  # fmt: skip
    assert math.isclose(col.objective, pois.objective, rel_tol=1e-9)
    # without the offset it is another model
    none = multilevel.fit("cnt ~ x", schools, group="school", group_formula="~ u",
                          family="poisson")  # fmt: skip
    assert not math.isclose(none.objective, pois.objective, rel_tol=1e-3)


def test_agq_two_level_fit_equals_formula_fit(schools):
    m = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u", varying="1",
                       family="binomial", nagq=7)  # fmt: skip
    ref = multilevel.fit("y01 ~ x + u + (1 | school)", schools, family="binomial", nagq=7)
    assert m.method == "AGQ(7)" and m.fit.nagq == 7
    assert math.isclose(m.objective, ref.objective, rel_tol=1e-12)
    laplace = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u",
                             varying="1", family="binomial")  # fmt: skip
    assert m.objective != laplace.objective
    assert "adaptive Gauss-Hermite quadrature, nAGQ = 7" in m.summary()


def test_binomial_responses_cbind_and_weighted_proportions(schools):
    cb = multilevel.fit("cbind(succ, trials - succ) ~ x", schools, group="school",
                        group_formula="~ u", family="binomial")  # fmt: skip
    prop = multilevel.fit("prop ~ x", schools, group="school", group_formula="~ u",
                          family="binomial", weights="trials")  # fmt: skip
    ref = multilevel.fit("cbind(succ, trials - succ) ~ x * u + (1 + x | school)", schools,
                         family="binomial")  # fmt: skip
    assert math.isclose(cb.objective, ref.objective, rel_tol=1e-12)
    np.testing.assert_allclose(prop.fixef, cb.fixef, rtol=1e-6)
    assert cb.equations()[0] == (
        "logit(p_i) = α_j[i] + β_j[i]·x_i,   succ_i ~ Binomial(n_i, p_i), "
        "n_i = succ_i + (trials - succ)_i"
    )
    assert prop.equations()[0].endswith("trials_i·prop_i ~ Binomial(trials_i, p_i)")
    assert "Weights: trials" in prop.summary()


def test_cbpp_as_a_two_level_model_matches_lme4():
    """lme4's cbpp model, cbind(incidence, size - incidence) ~ period + (1 | herd), as the
    two-level model α_j = a0 + η_j, β = a1: the estimates and α_j = a0 + lme4's modes."""
    ref = reference("cbpp_binomial")
    cbpp = load_data("cbpp")
    m = multilevel.fit("cbind(incidence, size - incidence) ~ period", cbpp, group="herd",
                       varying="1", family="binomial")  # fmt: skip
    assert m.lme4_formula == ref["formula"]
    assert m.objective <= ref["objective"] * (1 + 1e-6)
    gl = m.group_level.set_index("symbol")
    assert gl.loc["a0", "estimate"] == pytest.approx(ref["fixef"]["(Intercept)"], rel=2e-3)
    assert gl.loc["a1", "estimate"] == pytest.approx(ref["fixef"]["period"], rel=2e-3)
    assert m.eta_sd["(Intercept)"] == pytest.approx(ref["theta"], rel=2e-3)
    ct = m.coef_table()
    for r in ref["ranef"]:
        alpha = ref["fixef"]["(Intercept)"] + r["condval"]
        assert ct.loc[r["grp"], "(Intercept)"] == pytest.approx(alpha, abs=2e-3)
    # the conditional SD of the mode is lme4's condsd
    se = m.ranef["herd"]["se((Intercept))"]
    for r in ref["ranef"]:
        assert se[r["grp"]] == pytest.approx(r["condsd"], rel=5e-3)
    assert "logit(p_i) = α_j[i] + β·period_i,   incidence_i ~ Binomial(n_i, p_i)" in m.summary()


def test_owls_offset_as_a_two_level_model_matches_lme4():
    ref = reference("owls_offset_poisson")
    owls = load_data("owls")
    m = multilevel.fit("SiblingNegotiation ~ FoodTreatment * SexParent + offset(logBroodSize)",
                       owls, group="Nest", varying="1", family="poisson")  # fmt: skip
    assert m.objective <= ref["objective"] * (1 + 1e-6)
    assert m.objective == pytest.approx(ref["objective"], rel=1e-6)
    for k, v in ref["fixef"].items():
        name = k.replace("Satiated", "[T.Satiated]").replace("Male", "[T.Male]")
        assert m.fixef[name] == pytest.approx(v, rel=2e-3, abs=2e-4), k
    eq = m.equations()[0]
    assert eq.startswith("log(λ_i) = α_j[i] + β1·FoodTreatment[T.Satiated]_i")
    assert eq.endswith("+ offset(logBroodSize)_i,   SiblingNegotiation_i ~ Poisson(λ_i)")


# -- what the two-level object exposes -------------------------------------------------


def test_no_sigma_y_and_no_reml(logit):
    assert not hasattr(logit, "sigma_y")
    with pytest.raises(AttributeError, match="no σ_y.*dispersion is fixed at 1"):
        logit.sigma_y  # noqa: B018
    assert logit.sigma is None and logit.fit.sigma is None
    assert logit.reml is False
    assert logit.lmm is logit.fit  # the old name still reaches the inner fit
    assert "σ_y" not in logit.parameter_names().values()
    assert "sigma" not in logit.parameter_names()
    # Σ is ΛΛ' (σ = 1), the varcorr of the inner fit
    vc = logit.varcorr
    sd = {r.term1: r.sdcor for r in vc[vc.term2.isna()].itertuples()}
    assert logit.eta_sd["x"] == pytest.approx(sd["x"], rel=1e-12)
    lam = logit.fit.lambdas[0]
    np.testing.assert_allclose(logit.Sigma.to_numpy(), lam @ lam.T, rtol=1e-12)


def test_group_coefficients_are_fixed_part_plus_modes(logit, pois):
    for m in (logit, pois):
        ct = m.coef_table()
        fix, re, u = m.fixef, m.ranef["school"], m.group_predictors["u"]
        np.testing.assert_allclose(
            ct["(Intercept)"], fix["(Intercept)"] + fix["u"] * u + re["(Intercept)"], rtol=1e-10
        )
        np.testing.assert_allclose(ct["x"], fix["x"] + fix["x:u"] * u + re["x"], rtol=1e-10)
        pd.testing.assert_frame_equal(m.coef, ct[["(Intercept)", "x"]])
        # level 1 with the group coefficients is the inner fit's linear predictor
        d = m.design
        eta = (d.X1 * m.coef_estimates()[d.codes]).sum(axis=1)
        off = m.fit.frame.offset
        np.testing.assert_allclose(eta + (0 if off is None else off),
                                   m.fit.linear_predictor, rtol=1e-10)  # fmt: skip


def _dense_coef_cov(m, weights):
    """Var of the group coefficients from Z, X and the working weights built densely:
    P = Λ'Z'WZΛ + I, C = Λ P⁻¹ Λ', H = C Z'WX, Var = (D_j - E H_j) V (D_j - E H_j)' + E C_j E'."""
    fr = m.fit.frame
    rt = fr.reterms[0]
    J, k, n = rt.nlevels, rt.k, fr.n
    Z = np.zeros((n, J * k))
    for a in range(k):
        Z[np.arange(n), rt.codes * k + a] = rt.Z[:, a]
    L = np.kron(np.eye(J), m.fit.lambdas[0])
    ZL = Z @ L
    P = ZL.T @ (weights[:, None] * ZL) + np.eye(J * k)
    C = L @ np.linalg.inv(P) @ L.T
    H = C @ Z.T @ (weights[:, None] * fr.X)
    V = m.vcov.to_numpy()
    d = m.design
    out = []
    for j in range(J):
        s = slice(j * k, (j + 1) * k)
        A = d.D[j] - d.E @ H[s]
        out.append(A @ V @ A.T + d.E @ C[s, s] @ d.E.T)
    return np.array(out), C, H


def test_coef_se_against_dense_local_model(logit, pois):
    # the working weights of the canonical links: p(1 - p) (Bernoulli) and λ (Poisson)
    p = logit.fitted
    cov, C, H = _dense_coef_cov(logit, p * (1 - p))
    np.testing.assert_allclose(logit.coef_cov(), cov, rtol=1e-7, atol=1e-12)
    k = len(logit.varying)
    cv = logit.fit.condvar[0]
    for j in range(logit.ngroups):
        np.testing.assert_allclose(cv[j], C[j * k : (j + 1) * k, j * k : (j + 1) * k],
                                   rtol=1e-8, atol=1e-14)  # fmt: skip
    np.testing.assert_allclose(
        logit.fit.conditional.coupling[0], H.reshape(logit.ngroups, k, -1), rtol=1e-8,
        atol=1e-13,
    )  # fmt: skip
    cov, _, _ = _dense_coef_cov(pois, pois.fitted)
    np.testing.assert_allclose(pois.coef_cov(), cov, rtol=1e-7, atol=1e-12)
    ct = pois.coef_table()
    np.testing.assert_allclose(ct["se(x)"], np.sqrt(cov[:, 1, 1]), rtol=1e-7)
    # arm's version leaves out the covariance of the modes with β̂ and is different
    assert not np.allclose(logit.coef_cov(covariance=False), logit.coef_cov(), rtol=1e-3)


def test_coupling_is_the_derivative_of_the_modes(schools):
    """H = ∂(-b̂)/∂β: central differences of PIRLS's modes given β (exact at the logit)."""
    m = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u",
                       family="binomial")  # fmt: skip
    H = m.fit.conditional.coupling[0]
    dev = m.fit.problem.deviance
    beta = m.fixef.to_numpy()
    theta = m.fit.result.x[: len(m.fit.result.x) - len(beta)]
    h = 1e-5
    for a in range(len(beta)):
        up, down = beta.copy(), beta.copy()
        up[a] += h
        down[a] -= h
        deriv = (dev.modes(theta, up).b[0] - dev.modes(theta, down).b[0]) / (2 * h)
        np.testing.assert_allclose(-deriv, H[:, :, a], rtol=1e-5, atol=1e-8)


def test_predict_on_both_scales(logit, pois, schools):
    new = pd.DataFrame({"school": ["S01", "S07", "NEW"], "x": [0.5, -1.0, 0.2],
                        "u": [schools.u[schools.school == "S01"].iloc[0],
                              schools.u[schools.school == "S07"].iloc[0], 0.3]})  # fmt: skip
    link = logit.predict(new)
    np.testing.assert_array_equal(link, logit.predict(new, type="link"))
    np.testing.assert_allclose(logit.predict(new, type="response"), expit(link), rtol=1e-14)
    ct = logit.coef_table()
    assert link[0] == pytest.approx(ct.loc["S01", "(Intercept)"] + 0.5 * ct.loc["S01", "x"])
    g = logit.fixef
    assert link[2] == pytest.approx(
        g["(Intercept)"] + 0.3 * g["u"] + 0.2 * (g["x"] + 0.3 * g["x:u"])
    )
    np.testing.assert_allclose(logit.predict(type="response"), logit.fitted, rtol=1e-12)
    np.testing.assert_array_equal(logit.predict(new), logit.fit.predict(new))
    with pytest.raises(MultilevelError):
        logit.predict(new, new_groups="error")
    with pytest.raises(MultilevelError, match="type must be 'link' or 'response'"):
        logit.predict(new, type="probability")
    # Poisson: the response scale is exp of the link, offset included
    newp = new.assign(t=[1.0, 2.0, 0.5])
    lp = pois.predict(newp)
    np.testing.assert_allclose(pois.predict(newp, type="response"), np.exp(lp), rtol=1e-14)
    ctp = pois.coef_table()
    want = ctp.loc["S07", "(Intercept)"] - 1.0 * ctp.loc["S07", "x"] + math.log(2.0)
    assert lp[1] == pytest.approx(want, rel=1e-10)


# -- tests, intervals, bootstrap ----------------------------------------------------------


def test_test_gives_z_tests(logit):
    from multilevel.inference.distributions import t_sf2

    t = logit.test()
    assert "df" not in t.columns and "t" not in t.columns
    assert list(t["symbol"]) == ["a0", "b0", "a1", "b1"]
    for r in t.itertuples():
        assert r.estimate == logit.fixef[r.parameter]
        assert r.z == pytest.approx(logit.fixef[r.parameter] / logit.fixef_se[r.parameter])
        assert r.p == pytest.approx(float(t_sf2(r.z, math.inf)), rel=1e-12)
        assert r.p == pytest.approx(math.erfc(abs(r.z) / math.sqrt(2)), rel=1e-9)
    with pytest.raises(MultilevelError, match="z tests.*no ddf"):
        logit.test(ddf="kenward-roger")


def test_wald_confint_is_the_inner_fits_renamed(logit):
    ci = logit.confint("wald")
    inner = logit.fit.confint("wald")
    assert list(ci["parameter"]) == list(inner.index)
    assert list(ci.index) == [logit.parameter_names()[p] for p in inner.index]
    assert list(ci.index) == ["sd(η_j1)", "cor(η_j1,η_j2)", "sd(η_j2)", "a0", "a1", "b0", "b1"]
    np.testing.assert_array_equal(ci[["2.5 %", "97.5 %"]].to_numpy(), inner.to_numpy())
    with pytest.raises(MultilevelError, match="no parameter 'σ_y'"):
        logit.confint("wald", parm="σ_y")


def test_profile_confint_is_the_inner_fits(schools):
    m = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u", varying="1",
                       family="binomial")  # fmt: skip
    ci = m.confint("profile", parm=["b0", "sd(η_j1)"])
    inner = m.fit.confint("profile", parm=["u", "sd_(Intercept)|school"])
    assert list(ci.index) == ["sd(η_j1)", "b0"]
    np.testing.assert_allclose(ci[["2.5 %", "97.5 %"]].to_numpy(), inner.to_numpy(), rtol=1e-6)
    assert ci.loc["b0", "2.5 %"] < m.fixef["u"] < ci.loc["b0", "97.5 %"]


def test_bootstrap_is_the_inner_glmm_bootstrap_renamed(schools):
    m = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u", varying="1",
                       family="binomial")  # fmt: skip
    b = m.bootstrap(4, seed=3)
    inner = m.fit.bootstrap(4, seed=3)
    names = m.parameter_names()
    assert list(b.estimates.columns) == [names[c] for c in inner.estimates.columns]
    np.testing.assert_array_equal(b.estimates.to_numpy(), inner.estimates.to_numpy())
    assert b.original["b0"] == m.fixef["u"]


def test_anova_of_two_level_glmms(schools, logit):
    small = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u",
                           varying="1", family="binomial")  # fmt: skip
    with pytest.warns(UserWarning):
        got = multilevel.anova(small, logit)
    with pytest.warns(UserWarning):
        want = multilevel.anova(small.fit, logit.fit)
    pd.testing.assert_frame_equal(got, want)
    assert got.attrs["formulas"] == {"m0": small.lme4_formula, "m1": logit.lme4_formula}
    assert got["Df"].iloc[-1] == 3
    assert got["Chisq"].iloc[-1] == pytest.approx(small.objective - logit.objective, rel=1e-10)
    linear = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u")
    with pytest.raises(MultilevelError, match="linear model and model 1 a binomial"):
        multilevel.anova(small, linear)


# -- presentation ----------------------------------------------------------------------------


def test_summary_in_the_seeds_notation_with_the_link(logit):
    text = logit.summary()
    lines = text.splitlines()
    assert lines[0].startswith(
        "Two-level binomial model (logit link) fit by maximum likelihood (Laplace approximation)"
    )
    assert "  logit(p_i) = α_j[i] + β_j[i]·x_i,   y01_i ~ Bernoulli(p_i)" in lines
    assert "  α_j = a0 + b0·u_j + η_j1" in lines and "  β_j = a1 + b1·u_j + η_j2" in lines
    assert "  (η_j1, η_j2) ~ N(0, Σ)" in lines
    assert "σ_y" not in text and "ε" not in text and "Residual" not in text
    assert "REML" not in text
    assert f"-2 log-likelihood: {logit.objective:.4f}" in text
    header = lines[lines.index("Level-2 regressions:") + 1]
    assert header.split()[-3:] == ["z", "value", "Pr(>|z|)"]
    assert "Correlation of the η's:" in text
    assert "Group coefficients (logit scale)" in text
    assert "S01" in text


@pytest.mark.parametrize("link", ["probit", "cloglog"])
def test_summary_names_the_link(schools, link):
    m = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u", varying="1",
                       family=multilevel.family("binomial", link))  # fmt: skip
    assert m.equations()[0] == f"{link}(p_i) = α_j[i] + β·x_i,   y01_i ~ Bernoulli(p_i)"
    assert f"Two-level binomial model ({link} link)" in m.summary()


def test_poisson_summary_shows_log_lambda_and_the_offset(pois, schools):
    eq = pois.equations()
    assert eq[0] == "log(λ_i) = α_j[i] + β_j[i]·x_i + offset(log(t))_i,   cnt_i ~ Poisson(λ_i)"
    text = pois.summary()
    assert "log(λ_i) = " in text and "σ_y" not in text and "ε_i" not in text
    col = multilevel.fit("cnt ~ x", schools, group="school", group_formula="~ u",
                         family="poisson", offset="logt")  # fmt: skip
    assert col.equations()[0].startswith("log(λ_i) = α_j[i] + β_j[i]·x_i + logt_i,")
    assert " Offset: logt" in col.summary().splitlines()


def test_to_dict(logit, pois):
    d = json.loads(json.dumps(logit.to_dict(), allow_nan=False))
    assert d["model"] == "two-level"
    assert (d["family"], d["link"], d["method"]) == ("binomial", "logit", "Laplace")
    assert d["sigma_y"] is None
    assert d["equations"][0].startswith("logit(p_i) = α_j[i] + β_j[i]·x_i")
    assert d["fit"]["family"] == "binomial" and d["fit"]["formula"] == logit.lme4_formula
    assert d["objective"] == logit.objective
    ct = logit.coef_table()
    row = d["coef"][5]
    assert row["coef"]["x"] == pytest.approx(ct.loc[row["group"], "x"])
    assert row["se"]["(Intercept)"] == pytest.approx(ct.loc[row["group"], "se((Intercept))"])
    assert d["group_level"]["x"]["sd"] == pytest.approx(logit.eta_sd["x"])
    p = pois.to_dict()
    assert (p["family"], p["link"]) == ("poisson", "log") and p["sigma_y"] is None


def test_linear_two_level_reports_its_family_too(schools):
    m = multilevel.fit("y ~ x", schools, group="school", group_formula="~ u")
    assert not m.generalized
    assert (m.family, m.link, m.method, m.statistic) == ("gaussian", "identity", "REML", "t")
    d = m.to_dict()
    assert (d["family"], d["link"], d["method"]) == ("gaussian", "identity", "REML")
    assert d["sigma_y"] == m.sigma_y > 0
    assert m.lmm is m.fit


def test_save_and_load(logit, tmp_path):
    path = tmp_path / "glmm2.mlfit"
    logit.save(path)
    back = multilevel.load(path)
    assert isinstance(back, TwoLevelModel) and back.generalized
    assert back.objective == logit.objective
    # PIRLS at the stored (θ, β) from its own start: the modes to its tolerance
    np.testing.assert_allclose(back.coef_table(), logit.coef_table(), rtol=1e-8)
    assert back.equations() == logit.equations()


def test_overview_figure(logit):
    pytest.importorskip("matplotlib")
    fig = logit.plot_overview()
    assert len(fig.subfigs) == 2
    fig = logit.plot_group_regression("x")
    assert "logit scale" in fig.axes[0].get_ylabel()


# -- what has no meaning, and bad combinations --------------------------------------------


def test_linear_only_methods_are_refused(logit):
    for call in (logit.refit, logit.compare_pooling, logit.pooling, logit.plot_pooling):
        with pytest.raises(MultilevelError, match="for linear two-level models; this is a "
                           r"binomial model \(logit link\)"):  # fmt: skip
            call()


def test_reml_is_ignored_with_a_family_as_in_the_formula_form(schools, logit):
    """fit(..., family=, reml=True) is maximum likelihood in the formula form (reml's
    default is True): the two-level form does the same."""
    formula = multilevel.fit(logit.lme4_formula, schools, family="binomial", reml=True)
    assert formula.reml is False
    ml = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u",
                        family="binomial", reml=False)  # fmt: skip
    reml = multilevel.fit("y01 ~ x", schools, group="school", group_formula="~ u",
                          family="binomial", reml=True)  # fmt: skip
    assert ml.objective == reml.objective == formula.objective == logit.objective


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(formula="y ~ x", family="gaussian", nagq=3), MultilevelError,
         "nagq= is for binomial and Poisson"),
        (dict(nagq=0), MultilevelError, "nagq must be a whole number"),
        (dict(family="gamma"), MultilevelError, "gamma"),
        (dict(formula="y ~ x"), DataError, "must be 0 or 1"),
        (dict(formula="cbind(succ, trials - succ) ~ x", family="poisson"), DataError,
         "is for a binomial model"),
        (dict(formula="x ~ z", family="poisson"), DataError, "whole counts"),
        (dict(group_formula="~ z"), DataError, "'z' varies within school"),
    ],
)  # fmt: skip
def test_bad_combinations(schools, kwargs, error, match):
    args = dict(formula="y01 ~ x", group="school", group_formula="~ u", family="binomial")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        multilevel.fit(args.pop("formula"), schools, **args)


# -- the command line ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def csv(schools, tmp_path_factory):
    path = tmp_path_factory.mktemp("tl") / "schools.csv"
    schools.to_csv(path, index=False)
    return str(path)


def test_cli_two_level_binomial(csv, logit, capsys):
    args = ["fit", csv, "y01 ~ x", "--group", "school", "--group-formula", "~ u"]
    assert main([*args, "--family", "binomial", "--json", "--ci", "wald"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["family"], out["link"], out["method"]) == ("binomial", "logit", "Laplace")
    assert out["objective"] == pytest.approx(logit.objective, rel=1e-12)
    assert out["sigma_y"] is None
    rows = {r["param"]: r for r in out["confint"]["intervals"]}
    assert rows["b0"]["lme4"] == "u"
    assert rows["b0"]["lower"] == pytest.approx(logit.confint("wald").loc["b0", "2.5 %"])
    assert main([*args, "--family", "binomial", "--link", "probit"]) == 0
    text = capsys.readouterr().out
    assert "probit(p_i) = α_j[i] + β_j[i]·x_i" in text and "σ_y" not in text


def test_cli_two_level_poisson_offset_nagq_and_plot(csv, tmp_path, capsys):
    png = tmp_path / "overview.png"
    args = ["fit", csv, "cnt ~ x", "--group", "school", "--group-formula", "~ u",
            "--varying", "1", "--family", "poisson", "--offset", "logt", "--nagq", "5"]  # fmt: skip
    assert main([*args, "--plot", str(png)]) == 0
    out = capsys.readouterr()
    assert "log(λ_i) = α_j[i] + β·x_i + logt_i,   cnt_i ~ Poisson(λ_i)" in out.out
    assert "nAGQ = 5" in out.out
    assert png.stat().st_size > 1000
    # nAGQ with a gaussian two-level model is an error, one line
    assert main(["fit", csv, "y ~ x", "--group", "school", "--nagq", "3"]) == 2
    assert capsys.readouterr().err.startswith("error: nagq= is for binomial and Poisson")
