"""Two-level specification (multilevel.fit(..., group=, group_formula=, varying=)): the
translation to lme4's formula, the fit against that formula and against lme4's figures, the
group coefficients and their SEs against a dense computation, errors, JSON and summary."""

import json
import math

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
