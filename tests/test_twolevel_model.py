"""Two-level specification (multilevel.fit(..., group=, group_formula=, varying=)): the
translation to lme4's formula, the fit against that formula and against lme4's figures, the
group coefficients and their SEs against a dense computation, errors, JSON and summary."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from conftest import reference

import multilevel
from multilevel import TwoLevelModel, datasets
from multilevel.errors import DataError, FormulaError
from multilevel.simulate_schools import simulate_schools
from multilevel.twolevel import translate


def rel(a, b, floor=0.1):
    return abs(a - b) / max(abs(b), floor)


@pytest.fixture(scope="module")
def schools():
    """40 schools of unequal size, a school-level u and sector, a student-level z."""
    sizes = np.random.default_rng(5).integers(3, 25, size=40)
    df = simulate_schools(40, sizes, a0=1, b0=0.5, a1=-0.5, b1=0.3, seed=11)
    rng = np.random.default_rng(7)
    sector = np.where(rng.random(40) < 0.4, "public", "catholic")
    df["sector"] = sector[pd.factorize(df.school, sort=True)[0]]
    df["z"] = rng.normal(size=len(df))
    return df


@pytest.fixture(scope="module")
def radon():
    return datasets.load("radon")


# -- translation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (("y ~ x", "school", "~ u"), "y ~ x + u + x:u + (1 + x | school)"),
        (("y ~ x", "school", "~ u", "1"), "y ~ x + u + (1 | school)"),
        (("y ~ x", "school", None, "1"), "y ~ x + (1 | school)"),
        (("y ~ x", "school"), "y ~ x + (1 + x | school)"),
        (
            ("y ~ x", "school", "~ u + sector"),
            "y ~ x + u + sector + x:u + x:sector + (1 + x | school)",
        ),
        (("y ~ x + z", "school", "~ u", "1 + x"), "y ~ x + z + u + x:u + (1 + x | school)"),
        # lme4's convention: 'x' alone is '1 + x'; '0 + x' the slope alone
        (("y ~ x + z", "school", "~ u", "x"), "y ~ x + z + u + x:u + (1 + x | school)"),
        (("y ~ x", "school", "~ u", "0 + x"), "y ~ x + x:u + (0 + x | school)"),
        (("y ~ x + z", "school", "~ u", ["1", "z"]), "y ~ x + z + u + z:u + (1 + z | school)"),
        (
            ("y ~ log(x)", "my school", "~ u"),
            "y ~ log(x) + u + log(x):u + (1 + log(x) | `my school`)",
        ),
    ],
)
def test_translation(args, expected):
    assert translate(*args).lme4_formula == expected


def test_translation_notes_state_what_enters_where():
    spec = translate("y ~ x + z", "school", "~ u", "1 + x")
    text = " ".join(spec.translation)
    assert "u enters as a main effect" in text
    assert "x:u" in text
    assert "z does not vary" in text and "no interaction with u" in text


# -- the fit is the fit of the equivalent formula ----------------------------------------


@pytest.mark.parametrize(
    "formula, kwargs, lme4",
    [
        ("y ~ x", dict(group_formula="~ u"), "y ~ x * u + (1 + x | school)"),
        ("y ~ x", dict(group_formula="~ u", varying="1"), "y ~ u + x + (1 | school)"),
        ("y ~ x", dict(), "y ~ x + (x | school)"),
        ("y ~ x", dict(varying="1"), "y ~ x + (1 | school)"),
        (
            "y ~ x",
            dict(group_formula="~ u + sector"),
            "y ~ x * (u + sector) + (1 + x | school)",
        ),
        ("y ~ x + z", dict(group_formula="~ u", varying="1 + x"), "y ~ x*u + z + (x | school)"),
    ],
)
@pytest.mark.parametrize("reml", [True, False])
def test_two_level_fit_equals_formula_fit(schools, formula, kwargs, lme4, reml):
    m = multilevel.fit(formula, schools, group="school", reml=reml, **kwargs)
    ref = multilevel.fit(lme4, schools, reml=reml)
    assert isinstance(m, TwoLevelModel)
    assert math.isclose(m.objective, ref.objective, rel_tol=1e-10)
    assert set(m.fixef.index) == set(ref.fixef.index)
    for k in ref.fixef.index:
        assert math.isclose(m.fixef[k], ref.fixef[k], rel_tol=1e-6, abs_tol=1e-8)
        assert math.isclose(m.fixef_se[k], ref.fixef_se[k], rel_tol=1e-6)
    assert math.isclose(m.sigma, ref.sigma, rel_tol=1e-6)


def _group_level(m):
    return m.group_level.set_index("symbol")


def test_radon_group_predictor_matches_lme4(radon):
    """varying intercept with the county uranium: lme4's
    log_radon ~ floor + log_uranium + (1 | county)."""
    ref = reference("radon_group_predictor")
    m = multilevel.fit(
        "log_radon ~ floor", radon, group="county", group_formula="~ log_uranium", varying="1"
    )
    gl = _group_level(m)
    expect = {"a0": "(Intercept)", "b0": "log_uranium", "a1": "floor"}
    for sym, name in expect.items():
        assert rel(gl.loc[sym, "estimate"], ref["fixef"][name]) < 1e-4, sym
        assert rel(gl.loc[sym, "se"], ref["fixef_se"][name]) < 1e-4, sym
    assert not gl.loc["a1", "varying"]
    assert rel(m.sigma_y, ref["sigma"]) < 1e-4
    sd_ref = next(r["sdcor"] for r in ref["varcorr"] if r["grp"] == "county")
    assert rel(m.eta_sd["(Intercept)"], sd_ref) < 1e-4
    assert math.isclose(m.objective, ref["objective"], rel_tol=1e-6)
    # the group coefficients: α_j = a0 + b0 u_j + η_j with lme4's conditional modes
    cond = {r["grp"]: r["condval"] for r in ref["ranef"]}
    ct = m.coef_table()
    u = radon.groupby("county").log_uranium.first()
    for county in ["AITKIN", "ANOKA", "ST LOUIS", "LAC QUI PARLE"]:
        alpha = ref["fixef"]["(Intercept)"] + ref["fixef"]["log_uranium"] * u[county]
        alpha += cond[county]
        assert abs(ct.loc[county, "(Intercept)"] - alpha) < 1e-4
        assert abs(ct.loc[county, "floor"] - ref["fixef"]["floor"]) < 1e-4


def test_radon_seed_eq1_matches_lme4(radon):
    """varying intercept and slope with the county uranium for both: lme4's
    log_radon ~ floor * log_uranium + (1 + floor | county)."""
    ref = reference("radon_seed_eq1")
    m = multilevel.fit("log_radon ~ floor", radon, group="county", group_formula="~ log_uranium")
    gl = _group_level(m)
    expect = {"a0": "(Intercept)", "b0": "log_uranium", "a1": "floor", "b1": "floor:log_uranium"}
    for sym, name in expect.items():
        assert rel(gl.loc[sym, "estimate"], ref["fixef"][name]) < 1e-4, sym
        assert rel(gl.loc[sym, "se"], ref["fixef_se"][name]) < 1e-4, sym
    assert rel(m.sigma_y, ref["sigma"]) < 1e-4
    sds = {
        r["var1"]: r["sdcor"] for r in ref["varcorr"] if r["grp"] == "county" and "var2" not in r
    }
    cor = next(r["sdcor"] for r in ref["varcorr"] if "var2" in r)
    for name, sd in sds.items():
        assert rel(m.eta_sd[name], sd) < 1e-4, name
    assert abs(m.eta_cor.loc["(Intercept)", "floor"] - cor) < 1e-3
    S = m.Sigma
    assert rel(S.loc["(Intercept)", "floor"], cor * sds["(Intercept)"] * sds["floor"]) < 1e-3
    # the conditional part of the coefficient variance is lme4's condVar
    condsd = {(r["grp"], r["term"]): r["condsd"] for r in ref["ranef"]}
    cv = m.lmm.conditional.condvar[0]
    for j, county in enumerate(m.design.levels[:20]):
        for a, term in enumerate(m.varying):
            assert abs(math.sqrt(cv[j, a, a]) - condsd[(county, term)]) < 1e-3


def test_radon_translation_in_summary(radon):
    m = multilevel.fit(
        "log_radon ~ floor", radon, group="county", group_formula="~ log_uranium", data_name="radon"
    )
    text = m.summary()
    assert "log_radon ~ floor + log_uranium + floor:log_uranium + (1 + floor | county)" in text
    assert "α_j = a0 + b0·log_uranium_j + η_j1" in text
    assert "β_j = a1 + b1·log_uranium_j + η_j2" in text
    assert "σ_y" in text and "Correlation of the η's" in text
    assert "AITKIN" in text
    m1 = multilevel.fit(
        "log_radon ~ floor", radon, group="county", group_formula="~ log_uranium", varying="1"
    )
    text1 = m1.summary()
    assert "β = a1  (same in every group)" in text1
    assert "floor does not vary by county: no interaction with log_uranium" in text1


# -- group coefficients and their SEs ---------------------------------------------------


def _dense_joint_cov(m):
    """σ² A⁻¹ of the mixed-model equations in (b, β), built densely from Z and X."""
    lmm = m.lmm
    fr = lmm.frame
    rt = fr.reterms[0]
    J, k, n = rt.nlevels, rt.k, fr.n
    Z = np.zeros((n, J * k))
    for a in range(k):
        Z[np.arange(n), rt.codes * k + a] = rt.Z[:, a]
    lam = lmm.lambdas[0]
    L = np.kron(np.eye(J), lam)
    ZL, X = Z @ L, fr.X
    A = np.block([[ZL.T @ ZL + np.eye(J * k), ZL.T @ X], [X.T @ ZL, X.T @ X]])
    T = np.block(
        [[L, np.zeros((J * k, X.shape[1]))], [np.zeros((X.shape[1], J * k)), np.eye(X.shape[1])]]
    )
    return T @ (lmm.sigma**2 * np.linalg.inv(A)) @ T.T, J, k


@pytest.mark.parametrize(
    "kwargs", [dict(group_formula="~ u"), dict(group_formula="~ u + sector", varying="1")]
)
def test_coef_se_against_dense_mixed_model_equations(schools, kwargs):
    m = multilevel.fit("y ~ x + z", schools, group="school", **kwargs)
    C, J, k = _dense_joint_cov(m)
    d = m.design
    p = len(m.fixef)
    cov = m.coef_cov()
    arm = m.coef_cov(covariance=False)
    V = m.vcov.to_numpy()
    H = m.lmm.conditional.coupling[0]
    for j in range(J):
        B = np.zeros((len(d.x1names), J * k + p))
        B[:, J * k :] = d.D[j]
        B[:, j * k : (j + 1) * k] = d.E
        np.testing.assert_allclose(cov[j], B @ C @ B.T, rtol=1e-7, atol=1e-12)
        # arm's se.coef: Var(fixed combination) + condVar, no covariance between them
        cond = C[j * k : (j + 1) * k, j * k : (j + 1) * k] - H[j] @ V @ H[j].T
        fixed_part = d.D[j] @ V @ d.D[j].T
        np.testing.assert_allclose(arm[j], fixed_part + d.E @ cond @ d.E.T, rtol=1e-7, atol=1e-12)
    # the estimates are the fixed combination plus lme4's conditional modes
    ct = m.coef_table()
    re = m.ranef["school"]
    fix = m.fixef
    a0 = fix["(Intercept)"] + fix["u"] * m.group_predictors["u"]
    if "sector[T.public]" in fix.index:
        a0 = a0 + fix["sector[T.public]"] * m.group_predictors["sector[T.public]"]
    np.testing.assert_allclose(ct["(Intercept)"], a0 + re["(Intercept)"], rtol=1e-10)
    if "x" in m.varying:
        b = fix["x"] + fix["x:u"] * m.group_predictors["u"] + re["x"]
        np.testing.assert_allclose(ct["x"], b, rtol=1e-10)
    else:
        np.testing.assert_allclose(ct["x"], fix["x"], rtol=1e-12)
        np.testing.assert_allclose(ct["se(x)"], m.fixef_se["x"], rtol=1e-10)


def test_coef_table_shapes_and_sizes(schools):
    m = multilevel.fit("y ~ x", schools, group="school", group_formula="~ u")
    ct = m.coef_table()
    assert list(ct.columns) == ["n", "(Intercept)", "x", "se((Intercept))", "se(x)"]
    assert len(ct) == schools.school.nunique()
    np.testing.assert_array_equal(ct["n"], schools.groupby("school").size().sort_index())
    assert (ct["se((Intercept))"] > 0).all()
    # more students, more precise α_j (for the same school-level design)
    assert np.corrcoef(ct["n"], ct["se(x)"])[0, 1] < -0.5


# -- errors ------------------------------------------------------------------------------


def test_group_predictor_varying_within_group(schools):
    bad = schools.copy()
    bad.loc[bad.index[bad.school == "S07"][0], "u"] += 1.0
    with pytest.raises(DataError) as e:
        multilevel.fit("y ~ x", bad, group="school", group_formula="~ u")
    msg = str(e.value)
    assert "'u'" in msg and "'S07'" in msg and "constant within each group" in msg
    # a categorical one, in a function of the column
    bad = schools.copy()
    bad.loc[bad.index[bad.school == "S12"][-1], "sector"] = "other"
    with pytest.raises(DataError, match=r"'sector' varies within school 'S12'"):
        multilevel.fit("y ~ x", bad, group="school", group_formula="~ u + C(sector)")
    # a student-level variable used as a group-level predictor
    with pytest.raises(DataError, match=r"'z' varies within school 'S01'"):
        multilevel.fit("y ~ x", schools, group="school", group_formula="~ z", varying="1")


def test_group_predictor_missing_values_drop_rows(schools):
    df = schools.copy()
    df.loc[df.school == "S03", "u"] = np.nan
    df.loc[df.index[5], "x"] = np.nan
    m = multilevel.fit("y ~ x", df, group="school", group_formula="~ u")
    ref = multilevel.fit("y ~ x * u + (1 + x | school)", df)
    assert m.lmm.n_dropped == ref.n_dropped == (schools.school == "S03").sum() + 1
    assert "S03" not in set(m.coef_table().index)
    assert math.isclose(m.objective, ref.objective, rel_tol=1e-10)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(formula="y ~ x + (1 | school)"), FormulaError, "random-effects term"),
        (dict(varying="1 + w"), FormulaError, "'w' is not a term"),
        (dict(group="nope"), DataError, "'nope' is not in the data"),
        (dict(group_formula="y ~ u"), FormulaError, "one-sided"),
        (dict(group_formula="~ u | school"), FormulaError, "cannot contain '|'"),
        (dict(group_formula="~ 0 + u"), FormulaError, "intercept"),
        (dict(group_formula="~ x"), FormulaError, "both the individual-level"),
        (dict(varying="0"), FormulaError, "no coefficient varies"),
        (dict(group_formula="~ __import__('os')"), FormulaError, "not allowed"),
    ],
)
def test_bad_specifications(schools, kwargs, error, match):
    args = dict(formula="y ~ x", group="school", group_formula="~ u")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        multilevel.fit(args.pop("formula"), schools, **args)


def test_group_formula_without_group_is_an_error(schools):
    with pytest.raises(FormulaError, match="need group="):
        multilevel.fit("y ~ x + (1 | school)", schools, group_formula="~ u")


# -- output --------------------------------------------------------------------------------


def test_to_dict(schools):
    m = multilevel.fit("y ~ x + z", schools, group="school", group_formula="~ u", varying="1 + x")
    d = json.loads(json.dumps(m.to_dict()))
    assert d["model"] == "two-level"
    assert d["lme4_formula"] == m.lme4_formula
    assert set(d["group_level"]) == {"(Intercept)", "x"}
    assert set(d["constant"]) == {"z"}
    gl = m.group_level.set_index(["coefficient", "predictor"])
    for coef, entry in d["group_level"].items():
        assert set(entry) >= {"coef", "se", "sd"}
        assert entry["sd"] == pytest.approx(m.eta_sd[coef])
        for pred, v in entry["coef"].items():
            assert v == pytest.approx(gl.loc[(coef, pred), "estimate"])
            assert entry["se"][pred] == pytest.approx(gl.loc[(coef, pred), "se"])
    assert len(d["coef"]) == m.ngroups
    ct = m.coef_table()
    row = d["coef"][3]
    assert row["coef"]["x"] == pytest.approx(ct.loc[row["group"], "x"])
    assert row["se"]["x"] == pytest.approx(ct.loc[row["group"], "se(x)"])
    assert d["eta_correlation"]["matrix"][0][1] == pytest.approx(m.eta_cor.iloc[0, 1])
    assert d["fit"]["formula"] == m.lme4_formula


def test_refit(schools):
    m = multilevel.fit("y ~ x", schools, group="school", group_formula="~ u")
    same = m.refit(schools.y.to_numpy())
    assert math.isclose(same.objective, m.objective, rel_tol=1e-10)
    ml = m.refit(reml=False)
    direct = multilevel.fit("y ~ x", schools, group="school", group_formula="~ u", reml=False)
    assert math.isclose(ml.objective, direct.objective, rel_tol=1e-8)
    y2 = schools.y.to_numpy() + 2.0 * schools.u.to_numpy()
    other = m.refit(y2)
    # adding 2 u to y moves b0 by 2 and leaves the slope regression alone
    gl, gl2 = _group_level(m), _group_level(other)
    assert gl2.loc["b0", "estimate"] == pytest.approx(gl.loc["b0", "estimate"] + 2, abs=1e-5)
    assert gl2.loc["b1", "estimate"] == pytest.approx(gl.loc["b1", "estimate"], abs=1e-5)


# -- the plain fit's methods, named a0, b0, a1, b1 ---------------------------------------

SEED_LME4 = "log_radon ~ floor * log_uranium + (1 + floor | county)"
# the seed's names of lme4's parameters for y ~ x * u + (1 + x | g), written out by hand
SEED_NAMES = {
    "sd_(Intercept)|county": "sd(η_j1)",
    "cor_floor.(Intercept)|county": "cor(η_j1,η_j2)",
    "sd_floor|county": "sd(η_j2)",
    "sigma": "σ_y",
    "(Intercept)": "a0",
    "floor": "a1",
    "log_uranium": "b0",
    "floor:log_uranium": "b1",
}


@pytest.fixture(scope="module")
def seed(radon):
    """G&H's varying-intercept, varying-slope radon model with the county uranium."""
    return multilevel.fit("log_radon ~ floor", radon, group="county", group_formula="~ log_uranium")


@pytest.fixture(scope="module")
def seed_plain(radon):
    """The same model fitted as its lme4 formula."""
    return multilevel.fit(SEED_LME4, radon)


@pytest.fixture(scope="module")
def seed_ref():
    return reference("inference/radon_seed_eq1")


def test_parameter_names_of_the_seed_model(seed):
    names = seed.parameter_names()
    assert names == SEED_NAMES
    # in lme4's confint order, the same as the plain fit's
    assert list(names) == list(seed.lmm.confint("wald").index)
    # a symbol of the level-2 table names the fixed effect of the same estimate
    for r in seed.group_level.itertuples():
        lme4 = next(k for k, v in names.items() if v == r.symbol)
        assert r.estimate == seed.fixef[lme4]
        assert r.se == seed.fixef_se[lme4]


def test_parameter_names_of_a_model_without_varying_slope(radon):
    m = multilevel.fit(
        "log_radon ~ floor", radon, group="county", group_formula="~ log_uranium", varying="1"
    )
    assert m.parameter_names() == {
        "sd_(Intercept)|county": "sd(η_j1)",
        "sigma": "σ_y",
        "(Intercept)": "a0",
        "floor": "a1",
        "log_uranium": "b0",
    }


def test_wald_confint_is_the_plain_fits_row_for_row(seed, seed_ref):
    ci = seed.confint("wald")
    plain = seed.lmm.confint("wald")
    assert list(ci["parameter"]) == list(plain.index)
    assert list(ci.index) == [SEED_NAMES[p] for p in plain.index]
    np.testing.assert_array_equal(ci[["2.5 %", "97.5 %"]].to_numpy(), plain.to_numpy())
    # against lme4's confint(method = "Wald")
    ref = seed_ref["wald_ci"]
    for name, lo, hi in zip(ref["params"], ref["lower"], ref["upper"], strict=True):
        row = ci.loc[SEED_NAMES[name]]
        if lo is None:
            assert np.isnan(row["2.5 %"]) and np.isnan(row["97.5 %"])
        else:
            assert row["2.5 %"] == pytest.approx(lo, rel=1e-5)
            assert row["97.5 %"] == pytest.approx(hi, rel=1e-5)
    # the level moves the limits as the normal quantile says
    ci90 = seed.confint("wald", level=0.9)
    assert list(ci90.columns) == ["parameter", "5 %", "95 %"]
    half = (ci90.loc["b1", "95 %"] - ci90.loc["b1", "5 %"]) / 2
    assert half == pytest.approx(1.6448536269514722 * seed.fixef_se["floor:log_uranium"])


def test_confint_parm_takes_either_name(seed):
    by_symbol = seed.confint("wald", parm="a0")
    by_lme4 = seed.confint("wald", parm="(Intercept)")
    pd.testing.assert_frame_equal(by_symbol, by_lme4)
    assert list(by_symbol.index) == ["a0"] and by_symbol["parameter"].iloc[0] == "(Intercept)"
    assert by_symbol["2.5 %"].iloc[0] == seed.lmm.confint("wald").loc["(Intercept)", "2.5 %"]
    # mixed, in lme4's order whatever the order asked
    mixed = seed.confint("wald", parm=["b1", "sigma", "log_uranium"])
    assert list(mixed.index) == ["σ_y", "b0", "b1"]
    assert list(mixed["parameter"]) == ["sigma", "log_uranium", "floor:log_uranium"]
    with pytest.raises(multilevel.MultilevelError, match=r"no parameter 'c0'.*b1 \(floor:log"):
        seed.confint("wald", parm="c0")


def test_profile_confint_is_the_formula_fits_and_lme4s(seed, seed_plain, seed_ref):
    ci = seed.confint("profile", parm=["a0", "b0", "a1", "b1", "σ_y", "sd(η_j2)"])
    lme4_names = ["sd_floor|county", "sigma", "(Intercept)", "floor", "log_uranium"]
    lme4_names.append("floor:log_uranium")
    plain = seed_plain.confint("profile", parm=lme4_names)
    assert list(ci["parameter"]) == list(plain.index)
    np.testing.assert_allclose(ci[["2.5 %", "97.5 %"]], plain, rtol=1e-6, atol=1e-8)
    ref = seed_ref["profile_ci"]
    for name, lo, hi in zip(ref["params"], ref["lower"], ref["upper"], strict=True):
        if name in lme4_names:
            row = ci.loc[SEED_NAMES[name]]
            assert row["2.5 %"] == pytest.approx(lo, rel=1e-4, abs=1e-6), name
            assert row["97.5 %"] == pytest.approx(hi, rel=1e-4, abs=1e-6), name


def test_test_has_lmertest_df_and_p_for_the_level2_rows(seed, seed_ref):
    from multilevel.inference.ftests import fixef_tests

    t = seed.test()
    ft = fixef_tests(seed.lmm)
    assert list(t["symbol"]) == ["a0", "b0", "a1", "b1"]
    assert [SEED_NAMES[p] for p in t["parameter"]] == list(t["symbol"])
    for r in t.itertuples():
        row = ft.loc[r.parameter]
        assert r.estimate == row["Estimate"]
        assert r.se == row["Std. Error"] and r.df == row["df"] and r.p == row["Pr(>|t|)"]
        assert r.t == pytest.approx(row["t value"], rel=1e-12)
    # lmerTest's summary(m) of the lme4 formula
    sat = seed_ref["satterthwaite"]
    t = t.set_index("parameter")
    for name, df, p in zip(sat["terms"], sat["df"], sat["p"], strict=True):
        assert t.loc[name, "df"] == pytest.approx(df, rel=1e-3), name
        assert t.loc[name, "p"] == pytest.approx(p, rel=1e-2), name
    # Kenward-Roger: its SE and df, the same rows
    kr, ftk = seed.test(ddf="kenward-roger").set_index("parameter"), fixef_tests(seed.lmm, "kr")
    for name in ftk.index:
        assert kr.loc[name, "se"] == ftk.loc[name, "Std. Error"]
        assert kr.loc[name, "df"] == ftk.loc[name, "df"]
        assert kr.loc[name, "p"] == ftk.loc[name, "Pr(>|t|)"]


def test_test_row_of_a_coefficient_that_does_not_vary(schools):
    from multilevel.inference.ftests import fixef_tests

    m = multilevel.fit("y ~ x + z", schools, group="school", group_formula="~ u", varying="1 + x")
    t = m.test()
    ft = fixef_tests(m.lmm)
    # z does not vary: one row, a2 = the coefficient of z, no z:u
    assert list(t["symbol"]) == ["a0", "b0", "a1", "b1", "a2"]
    assert list(t["parameter"]) == ["(Intercept)", "u", "x", "x:u", "z"]
    z = t.set_index("symbol").loc["a2"]
    assert not z["varying"] and z["predictor"] == "(Intercept)"
    assert z["df"] == ft.loc["z", "df"] and z["p"] == ft.loc["z", "Pr(>|t|)"]
    # a level-1 coefficient's df is of the order of n, a level-2 one's of J
    assert z["df"] > 10 * schools.school.nunique()
    assert t.set_index("symbol").loc["b0", "df"] < schools.school.nunique()


def test_bootstrap_is_the_plain_bootstrap_renamed(seed):
    b = seed.bootstrap(50, seed=1)
    plain = seed.lmm.bootstrap(50, seed=1)
    assert list(b.estimates.columns) == [SEED_NAMES[c] for c in plain.estimates.columns]
    np.testing.assert_array_equal(b.estimates.to_numpy(), plain.estimates.to_numpy())
    np.testing.assert_array_equal(b.original.to_numpy(), plain.original.to_numpy())
    np.testing.assert_array_equal(b.theta, plain.theta)
    assert b.original["a0"] == seed.fixef["(Intercept)"]
    assert b.original["σ_y"] == pytest.approx(seed.sigma_y, rel=1e-12)
    bci = b.confint()
    assert list(bci.index) == list(SEED_NAMES.values())
    np.testing.assert_array_equal(bci.to_numpy(), plain.confint().to_numpy())
    assert b.se["b1"] == plain.se["floor:log_uranium"]
    # confint(method="boot") is the same bootstrap's percentile interval
    ci = seed.confint("boot", n=50, seed=1)
    np.testing.assert_array_equal(ci[["2.5 %", "97.5 %"]].to_numpy(), bci.to_numpy())
    assert list(ci["parameter"]) == list(SEED_NAMES)
    assert b.seed == 1 and b.n == 50


def test_fitted_and_residuals_are_the_plain_fits(seed, radon):
    np.testing.assert_array_equal(seed.fitted, seed.lmm.fitted)
    np.testing.assert_array_equal(seed.residuals, seed.lmm.residuals)
    y = radon.log_radon.to_numpy()
    np.testing.assert_allclose(seed.fitted + seed.residuals, y, rtol=0, atol=1e-12)
    # level 1 with the group coefficients: ŷ_i = α_j[i] + β_j[i] floor_i
    d = seed.design
    beta_j = seed.coef_estimates()[d.codes]
    np.testing.assert_allclose(seed.fitted, (d.X1 * beta_j).sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(d.X1[:, 1], radon.floor.to_numpy())


def test_predict_is_the_plain_fits(seed, radon):
    new = pd.DataFrame(
        {
            "county": ["AITKIN", "ST LOUIS", "NOWHERE", "ANOKA"],
            "floor": [0, 1, 0, 1],
        }
    )
    u = radon.groupby("county").log_uranium.first()
    new["log_uranium"] = [u["AITKIN"], u["ST LOUIS"], 0.1, u["ANOKA"]]
    np.testing.assert_array_equal(seed.predict(new), seed.lmm.predict(new))
    np.testing.assert_array_equal(seed.predict(), seed.fitted)
    for interval in ("confidence", "prediction"):
        got = seed.predict(new, interval=interval, level=0.8, ndraws=300, seed=4)
        want = seed.lmm.predict(new, interval=interval, level=0.8, ndraws=300, seed=4)
        pd.testing.assert_frame_equal(got, want)
        assert (got["lower"] < got["fit"]).all() and (got["fit"] < got["upper"]).all()
    pd.testing.assert_frame_equal(
        seed.predict(new, "draw", interval="prediction", ndraws=100, seed=2),
        seed.lmm.predict(new, new_groups="draw", interval="prediction", ndraws=100, seed=2),
    )
    # a known county: its α_j + β_j floor; a new one: the level-2 regressions alone
    point = seed.predict(new)
    ct = seed.coef_table()
    assert point[1] == pytest.approx(
        ct.loc["ST LOUIS", "(Intercept)"] + ct.loc["ST LOUIS", "floor"]
    )
    g = seed.fixef
    assert point[2] == pytest.approx(g["(Intercept)"] + g["log_uranium"] * 0.1, rel=1e-12)
    with pytest.raises(multilevel.MultilevelError):
        seed.predict(new, new_groups="error")


def test_anova_between_two_level_fits(seed, radon, seed_ref):
    m1 = multilevel.fit(
        "log_radon ~ floor", radon, group="county", group_formula="~ log_uranium", varying="1"
    )
    with pytest.warns(UserWarning):
        got = multilevel.anova(m1, seed)
    with pytest.warns(UserWarning):
        want = multilevel.anova(m1.lmm, seed.lmm)
    pd.testing.assert_frame_equal(got, want)
    assert got.attrs["formulas"] == {"m0": m1.lme4_formula, "m1": seed.lme4_formula}
    assert got["Df"].iloc[-1] == 3  # b1, sd(η_j2), cor(η_j1,η_j2)
    # a two-level fit against a plain one: lme4's anova of the reference models
    null = multilevel.fit(seed_ref["lrt"]["null"], radon)
    with pytest.warns(UserWarning):
        lrt = multilevel.anova(null, seed)
    assert lrt["Chisq"].iloc[-1] == pytest.approx(seed_ref["lrt"]["chisq"], rel=1e-4)
    assert lrt["Df"].iloc[-1] == seed_ref["lrt"]["df"]
    assert lrt["Pr(>Chisq)"].iloc[-1] == pytest.approx(seed_ref["lrt"]["p"], rel=1e-3)


def _level2_table(text):
    """The header and the rows (split into cells, by symbol) of the summary's level-2 table."""
    lines = text.splitlines()
    i = lines.index("Level-2 regressions:") + 1
    rows = {}
    for line in lines[i + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        sym = next((c for c in cells if re.fullmatch(r"[a-z]\d+", c)), None)
        if sym:
            rows[sym] = cells
    return lines[i], rows


def test_summary_level2_table_has_df_and_p(seed, seed_ref):
    header, rows = _level2_table(seed.summary())
    assert header.split()[-2:] == ["df", "Pr(>|t|)"]
    assert set(rows) == {"a0", "b0", "a1", "b1"}
    sat = seed_ref["satterthwaite"]
    for name, df, p in zip(sat["terms"], sat["df"], sat["p"], strict=True):
        cells = rows[SEED_NAMES[name]]
        # lmerTest's df and p of the same fixed effect, as the summary rounds them
        assert cells[-2] == f"{df:.1f}", name
        assert cells[-1] == ("<2e-16" if p < 2e-16 else f"{p:.3g}"), name
        assert cells[-3] == f"{seed.fixef[name] / seed.fixef_se[name]:.2f}", name


def test_summary_without_df_drops_the_columns(seed, monkeypatch):
    """When the df cannot be computed the level-2 table is printed without them."""

    def fails(ddf="satterthwaite"):
        raise multilevel.MultilevelError("no df")

    monkeypatch.setattr(seed, "test", fails)
    header, rows = _level2_table(seed.summary())
    assert header.rstrip().endswith("Std. Error t value")
    assert set(rows) == {"a0", "b0", "a1", "b1"}
    assert rows["b0"][-1] == f"{seed.fixef['log_uranium'] / seed.fixef_se['log_uranium']:.2f}"


# -- weights, a categorical level-2 predictor, a slope varying alone -----------------------


@pytest.fixture(scope="module")
def weighted(schools):
    df = schools.copy()
    df["w"] = np.random.default_rng(3).uniform(0.5, 2.0, size=len(df))
    return df


def test_two_level_fit_with_weights(weighted):
    from multilevel.inference.ftests import fixef_tests

    m = multilevel.fit("y ~ x", weighted, group="school", group_formula="~ u", weights="w")
    ref = multilevel.fit("y ~ x * u + (1 + x | school)", weighted, weights="w")
    plain = multilevel.fit("y ~ x", weighted, group="school", group_formula="~ u")
    assert m.lmm.weights == "w"
    assert math.isclose(m.objective, ref.objective, rel_tol=1e-10)
    assert not math.isclose(m.objective, plain.objective, rel_tol=1e-3)  # the weights count
    gl = _group_level(m)
    for sym, name in {"a0": "(Intercept)", "b0": "u", "a1": "x", "b1": "x:u"}.items():
        assert gl.loc[sym, "estimate"] == pytest.approx(ref.fixef[name], rel=1e-6)
    t = m.test().set_index("symbol")
    ft = fixef_tests(m.lmm)
    assert t.loc["b1", "df"] == ft.loc["x:u", "df"]
    ci = m.confint("wald")
    np.testing.assert_array_equal(ci[["2.5 %", "97.5 %"]], m.lmm.confint("wald"))
    np.testing.assert_allclose(m.fitted + m.residuals, weighted.y, atol=1e-12)
    assert "Weights: w" in m.summary()


def test_categorical_group_level_predictor(schools):
    m = multilevel.fit("y ~ x", schools, group="school", group_formula="~ u + sector")
    names = m.parameter_names()
    assert {k: names[k] for k in m.fixef.index} == {
        "(Intercept)": "a0",
        "x": "a1",
        "u": "b0",
        "sector[T.public]": "c0",
        "x:u": "b1",
        "x:sector[T.public]": "c1",
    }
    public = (schools.groupby("school").sector.first() == "public").astype(float)
    np.testing.assert_array_equal(m.group_predictors["sector[T.public]"], public.sort_index())
    # β_jc = Σ_w γ_cw w_j + η_jc: X = X1 · D row by row
    d = m.design
    np.testing.assert_allclose(np.einsum("ic,icp->ip", d.X1, d.D[d.codes]), m.lmm.frame.X)
    ci = m.confint("wald", parm=["c0", "x:sector[T.public]"])
    assert list(ci.index) == ["c0", "c1"]
    assert list(ci["parameter"]) == ["sector[T.public]", "x:sector[T.public]"]
    t = m.test().set_index("symbol")
    assert t.loc["c1", "parameter"] == "x:sector[T.public]"
    assert t.loc["c1", "estimate"] == m.fixef["x:sector[T.public]"]
    assert "c0·sector[T.public]_j" in " ".join(m.equations())


@pytest.mark.parametrize("group_formula", ["~ u", "~ scale(u) + sector", "~ I(u ** 2)"])
def test_slope_varying_alone_reads_w_from_its_own_evaluation(schools, group_formula):
    """varying="0 + x": no level-2 main effects in the lme4 formula, so W is evaluated
    apart; it must be the W that the varying-intercept fit reads off X."""
    m = multilevel.fit(
        "y ~ x", schools, group="school", group_formula=group_formula, varying="0 + x"
    )
    both = multilevel.fit("y ~ x", schools, group="school", group_formula=group_formula)
    assert "(0 + x | school)" in m.lme4_formula
    assert not any(c in m.fixef.index for c in both.design.wnames[1:])  # no main effects
    pd.testing.assert_frame_equal(m.group_predictors, both.group_predictors, rtol=1e-12)
    d = m.design
    np.testing.assert_allclose(np.einsum("ic,icp->ip", d.X1, d.D[d.codes]), m.lmm.frame.X)
    ref = multilevel.fit(m.lme4_formula, schools)
    assert math.isclose(m.objective, ref.objective, rel_tol=1e-10)
    # the intercept is one number (a0), the slope a regression on W
    gl = _group_level(m)
    assert not gl.loc["a0", "varying"] and gl.loc["a1", "varying"]
    assert list(gl.index) == ["a0"] + [f"{m.letters[w]}1" for w in d.wnames]
    ct = m.coef_table()
    np.testing.assert_allclose(ct["(Intercept)"], m.fixef["(Intercept)"], rtol=1e-12)
    np.testing.assert_allclose(ct["se((Intercept))"], m.fixef_se["(Intercept)"], rtol=1e-10)
    lme4 = {v: k for k, v in m.parameter_names().items()}
    slope = d.W @ np.array([m.fixef[lme4[s]] for s in gl.index[1:]])
    np.testing.assert_allclose(ct["x"], slope + m.ranef["school"]["x"].to_numpy(), rtol=1e-10)
    assert m.parameter_names()["sd_x|school"] == "sd(η_j1)"
    assert "α = a0  (same in every group)" in m.equations()


@pytest.mark.parametrize("varying", [None, "0 + x"])
def test_aliased_level2_predictor_is_named_as_the_dropped_column(schools, varying):
    df = schools.assign(u2=2 * schools.u + 1)
    with pytest.warns(UserWarning, match="rank deficient"):
        m = multilevel.fit("y ~ x", df, group="school", group_formula="~ u + u2", varying=varying)
    assert set(m.design.dropped) == set(m.lmm.dropped_columns)
    assert "(Intercept):u2" not in m.summary()
    gl = _group_level(m)
    assert np.isnan(gl.loc["c1", "estimate"])
    t = m.test().set_index("symbol")
    assert np.isnan(t.loc["c1", "df"]) and t.loc["c1", "parameter"] == ""
    assert t.loc["b1", "df"] > 0
    assert "c1" not in m.confint("wald").index  # not a parameter of the fit


def test_eta_names_follow_the_varying_coefficients(schools):
    """Two slopes varying without the intercept: η_j1 is x's, η_j2 z's, in the equations,
    in Σ and in the names of the intervals."""
    m = multilevel.fit(
        "y ~ x + z", schools, group="school", group_formula="~ u", varying="0 + x + z"
    )
    assert m.lme4_formula == "y ~ x + z + x:u + z:u + (0 + x + z | school)"
    assert m.varying == ["x", "z"]
    eq = m.equations()
    assert "β1_j = a1 + b1·u_j + η_j1" in eq and "β2_j = a2 + b2·u_j + η_j2" in eq
    names = m.parameter_names()
    assert names["sd_x|school"] == "sd(η_j1)" and names["sd_z|school"] == "sd(η_j2)"
    assert names["cor_z.x|school"] == "cor(η_j1,η_j2)"
    assert {names[k] for k in ("x", "x:u", "z", "z:u")} == {"a1", "b1", "a2", "b2"}
    assert names["z:u"] == "b2"
    vc = m.varcorr
    sd = {r.term1: r.sdcor for r in vc[(vc.group == "school") & vc.term2.isna()].itertuples()}
    assert m.eta_sd["x"] == pytest.approx(sd["x"], rel=1e-12)
    assert m.eta_sd["z"] == pytest.approx(sd["z"], rel=1e-12)
    b = m.bootstrap(5, seed=2)
    assert b.original["sd(η_j2)"] == pytest.approx(sd["z"], rel=1e-12)
