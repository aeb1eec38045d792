"""Fixed-effect t and F tests: Satterthwaite and Kenward-Roger df against lmerTest 3.1-3 and
pbkrtest 0.5.2 (tests/data/reference/inference), exact df of balanced designs, the classical
split-plot ANOVA, Type III invariance to the contrast coding, and internal consistency."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import multilevel
from multilevel import datasets
from multilevel.errors import MultilevelError
from multilevel.fitting.derivatives import gen_d, hessian
from multilevel.inference.ftests import anova_type3, contrast_test, fixef_tests
from multilevel.inference.kenward_roger import kenward_roger
from multilevel.inference.satterthwaite import varpar_deviance
from multilevel.inference.type3 import type3_contrasts

INFERENCE = Path(__file__).parent / "data" / "reference" / "inference"
CASES = sorted(p.stem for p in INFERENCE.glob("*.json"))
DDF = {"satterthwaite": "satterthwaite", "kenward_roger": "kenward-roger"}
CAKE = "angle ~ recipe * C(temperature) + (1 | recipe:replicate)"
CAKE_SUM = "angle ~ C(recipe, contr.sum) * C(temperature, contr.sum) + (1 | recipe:replicate)"


def _fit(formula, name, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return multilevel.fit(formula, datasets.load(name), **kw)


def _wald_f(fit, cols):
    """(Lβ)'(L V L')⁻¹(Lβ)/q for the rows of I picking ``cols``."""
    beta, V = fit.fixef.to_numpy(), fit.vcov.to_numpy()
    L = np.eye(len(beta))[cols]
    Lb = L @ beta
    return float(Lb @ np.linalg.solve(L @ V @ L.T, Lb)) / len(cols)


@pytest.fixture(scope="module")
def reference_fits():
    out = {}
    for case in CASES:
        ref = json.loads((INFERENCE / f"{case}.json").read_text())
        out[case] = (ref, _fit(ref["formula"], case.split("_")[0], reml=ref["reml"]))
    return out


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("key", sorted(DDF))
def test_df_and_p_match_lmertest_and_pbkrtest(reference_fits, case, key):
    ref, fit = reference_fits[case]
    want = ref[key]
    tab = fixef_tests(fit, ddf=DDF[key])
    assert list(tab.index) == list(np.atleast_1d(want["terms"]))
    np.testing.assert_allclose(tab["df"], np.atleast_1d(want["df"]), rtol=1e-3)
    np.testing.assert_allclose(tab["Pr(>|t|)"], np.atleast_1d(want["p"]), rtol=1e-3)
    # the t statistic is the estimate over the (KR: adjusted) standard error
    np.testing.assert_allclose(tab["t value"], tab["Estimate"] / tab["Std. Error"], rtol=1e-12)


def test_fit_methods_delegate(reference_fits):
    _, fit = reference_fits["radon_seed_eq1"]
    pd.testing.assert_frame_equal(fit.test(), fixef_tests(fit))
    pd.testing.assert_frame_equal(fit.anova(ddf="kenward-roger"), anova_type3(fit, "KR"))
    tab = fit.test()
    assert list(tab.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    np.testing.assert_allclose(tab["Estimate"], fit.fixef, rtol=1e-12)
    np.testing.assert_allclose(tab["Std. Error"], fit.fixef_se, rtol=1e-10)


@pytest.mark.parametrize("reml", [True, False])
def test_varpar_deviance_is_the_criterion_with_sigma_free(reml):
    """d(θ, σ) equals the profiled criterion at σ̂ and is stationary in σ there."""
    fit = _fit("Reaction ~ Days + (Days | Subject)", "sleepstudy", reml=reml)
    theta = fit.factorization.theta
    s = fit.sigma

    def d(sigma):
        return varpar_deviance(fit, np.append(theta, sigma))

    assert d(s) == pytest.approx(fit.objective, rel=1e-12)
    h = 1e-4 * s
    assert abs(d(s + h) - d(s - h)) / (2 * h) < 1e-6 * fit.objective / s
    assert d(1.1 * s) > d(s) and d(0.9 * s) > d(s)


def test_numerical_derivatives_are_accurate():
    def f(x):
        return np.exp(x[0]) * np.sin(x[1]) + x[0] ** 2 * x[1] ** 3 + x[2] * x[0]

    x = np.array([0.3, 1.2, 0.0])  # x[2] = 0: the absolute step
    a, b = x[0], x[1]
    H = np.array(
        [
            [np.exp(a) * np.sin(b) + 2 * b**3, np.exp(a) * np.cos(b) + 6 * a * b**2, 1.0],
            [np.exp(a) * np.cos(b) + 6 * a * b**2, -np.exp(a) * np.sin(b) + 6 * a**2 * b, 0.0],
            [1.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_allclose(hessian(f, x), H, atol=1e-7)
    f0, J, H2 = gen_d(lambda v: np.array([f(v), v[0] * v[1]]), x)
    grad = [np.exp(a) * np.sin(b) + 2 * a * b**3, np.exp(a) * np.cos(b) + 3 * a**2 * b**2, a]
    np.testing.assert_allclose(f0, [f(x), a * b])
    np.testing.assert_allclose(J, np.array([grad, [b, a, 0.0]]), atol=1e-9)
    np.testing.assert_allclose(H2[0], H, atol=1e-7)
    np.testing.assert_allclose(H2[1], [[0, 1, 0], [1, 0, 0], [0, 0, 0]], atol=1e-9)


# -- balanced designs: the exact df are known -------------------------------------------
@pytest.mark.parametrize(
    "name, formula, coef, df",
    [
        # random intercept and slope, 18 subjects x 10 days: both fixed effects on 17 df
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "Days", 17),
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "(Intercept)", 17),
        # one-way random effects, 6 batches: the mean on 6 - 1 df
        ("dyestuff", "Yield ~ 1 + (1 | Batch)", "(Intercept)", 5),
        # nested, 10 batches of 3 casks: the mean on 10 - 1 df
        ("pastes", "strength ~ 1 + (1 | batch/cask)", "(Intercept)", 9),
    ],
)
@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
def test_balanced_designs_give_the_exact_df(name, formula, coef, df, ddf):
    fit = _fit(formula, name)
    assert fixef_tests(fit, ddf).loc[coef, "df"] == pytest.approx(df, rel=1e-5)


def test_kenward_roger_does_not_adjust_a_balanced_design():
    """pbkrtest's own example: for sleepstudy Φ_A = vcov(β̂)."""
    fit = _fit("Reaction ~ Days + (Days | Subject)", "sleepstudy")
    kr = kenward_roger(fit)
    np.testing.assert_allclose(kr.phi_adj, fit.vcov.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(fixef_tests(fit, "kenward-roger")["Std. Error"], fit.fixef_se)


def _split_plot_anova(d: pd.DataFrame) -> dict:
    """Classical split-plot ANOVA of the cake data by sums of squares: recipe tested against
    replicates within recipe, temperature and the interaction against the residual."""
    y = d["angle"].to_numpy(float)
    grand = y.mean()

    def ss(keys):
        g = pd.Series(y).groupby([d[k].to_numpy() for k in keys])
        return float((g.count() * (g.mean() - grand) ** 2).sum())

    a, b = d["recipe"].nunique(), d["temperature"].nunique()
    r = d["replicate"].nunique()
    ss_a = ss(["recipe"])
    ss_wp = ss(["recipe", "replicate"]) - ss_a
    ss_b = ss(["temperature"])
    ss_ab = ss(["recipe", "temperature"]) - ss_a - ss_b
    ss_e = float(((y - grand) ** 2).sum()) - ss_a - ss_wp - ss_b - ss_ab
    df_wp, df_e = a * (r - 1), a * (r - 1) * (b - 1)
    ms_wp, ms_e = ss_wp / df_wp, ss_e / df_e
    assert ms_wp > ms_e  # the REML variance of the whole plots is positive: F tests exact
    return {
        "recipe": ((ss_a / (a - 1)) / ms_wp, a - 1, df_wp),
        "C(temperature)": ((ss_b / (b - 1)) / ms_e, b - 1, df_e),
        "recipe:C(temperature)": ((ss_ab / ((a - 1) * (b - 1))) / ms_e, (a - 1) * (b - 1), df_e),
    }


@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
def test_type3_f_tests_reproduce_the_split_plot_anova(ddf):
    d = datasets.load("cake")
    fit = multilevel.fit(CAKE, d)
    tab = anova_type3(fit, ddf=ddf)
    assert list(tab.columns) == ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    want = _split_plot_anova(d)
    assert list(tab.index) == list(want)
    for term, (F, num, den) in want.items():
        assert tab.loc[term, "F value"] == pytest.approx(F, rel=1e-5)
        assert tab.loc[term, "NumDF"] == num
        assert tab.loc[term, "DenDF"] == pytest.approx(den, rel=1e-5)
    np.testing.assert_allclose(tab["Mean Sq"], tab["F value"] * fit.sigma**2, rtol=1e-5)
    np.testing.assert_allclose(tab["Sum Sq"], tab["Mean Sq"] * tab["NumDF"], rtol=1e-12)


@pytest.fixture(scope="module")
def unbalanced_cake():
    d = datasets.load("cake")
    drop = np.random.default_rng(1).choice(len(d), 40, replace=False)
    return d.drop(index=drop).reset_index(drop=True)


@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
def test_type3_is_invariant_to_the_contrast_coding(unbalanced_cake, ddf):
    """SAS Type III hypotheses do not depend on the coding: treatment and sum-to-zero codings
    give the same table on unbalanced data."""
    a = anova_type3(multilevel.fit(CAKE, unbalanced_cake), ddf)
    b = anova_type3(multilevel.fit(CAKE_SUM, unbalanced_cake), ddf)
    for col in ["F value", "NumDF", "DenDF", "Pr(>F)"]:
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-5)


def test_type3_main_effect_is_the_sum_coded_wald_test(unbalanced_cake):
    """With all cells filled, the Type III test of a main effect is the Wald test of its
    sum-to-zero coefficients; the treatment-coded coefficients test something else."""
    treat = multilevel.fit(CAKE, unbalanced_cake)
    total = multilevel.fit(CAKE_SUM, unbalanced_cake)
    tab = anova_type3(treat)
    assert tab.loc["recipe", "F value"] == pytest.approx(_wald_f(total, [1, 2]), rel=1e-6)
    temp = list(range(3, 8))
    assert tab.loc["C(temperature)", "F value"] == pytest.approx(_wald_f(total, temp), rel=1e-6)
    naive = _wald_f(treat, [1, 2])  # recipe at the reference temperature
    assert abs(naive - tab.loc["recipe", "F value"]) > 0.1


def test_factor_term_f_is_the_wald_f():
    """Without interactions a 3-level factor's F is the Wald F of its two coefficients."""
    fit = _fit("angle ~ recipe + temp + (1 | recipe:replicate)", "cake")
    assert list(fit.fixef.index[1:3]) == ["recipe[T.B]", "recipe[T.C]"]
    row = anova_type3(fit).loc["recipe"]
    assert row["NumDF"] == 2
    assert row["F value"] == pytest.approx(_wald_f(fit, [1, 2]), rel=1e-10)
    direct = contrast_test(fit, np.eye(len(fit.fixef))[[1, 2]])
    assert direct["F value"] == pytest.approx(row["F value"], rel=1e-10)
    assert direct["DenDF"] == pytest.approx(row["DenDF"], rel=1e-10)
    # the KR F is the scaled Wald F with the adjusted covariance
    kr = kenward_roger(fit)
    L = np.eye(len(fit.fixef))[[1, 2]]
    Lb = L @ fit.fixef.to_numpy()
    wald = float(Lb @ np.linalg.solve(L @ kr.phi_adj @ L.T, Lb)) / 2
    row_kr = anova_type3(fit, "kenward-roger").loc["recipe"]
    assert row_kr["Mean Sq"] == pytest.approx(wald * fit.sigma**2, rel=1e-10)
    p = stats.f.sf(row_kr["F value"], 2, row_kr["DenDF"])
    assert row_kr["Pr(>F)"] == pytest.approx(p, rel=1e-10)


@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
def test_single_column_terms_f_is_t_squared(reference_fits, ddf):
    _, fit = reference_fits["radon_seed_eq1"]
    t = fixef_tests(fit, ddf).iloc[1:]
    a = anova_type3(fit, ddf)
    assert list(a.index) == list(t.index)
    np.testing.assert_allclose(a["NumDF"], 1.0)
    np.testing.assert_allclose(a["F value"], t["t value"] ** 2, rtol=1e-10)
    np.testing.assert_allclose(a["DenDF"], t["df"], rtol=1e-10)
    np.testing.assert_allclose(a["Pr(>F)"], t["Pr(>|t|)"], rtol=1e-8)


def test_type3_of_a_covariate_in_an_interaction_averages_its_slope():
    """``temp`` in ``recipe * temp`` is tested at the average over recipes (SAS Type III): the
    contrast is the temp slope plus 1/3 of each of the two interaction coefficients."""
    fit = _fit("angle ~ recipe * temp + (1 | recipe:replicate)", "cake")
    names = list(fit.fixef.index)
    L = type3_contrasts(fit)["temp"]
    want = np.zeros(len(names))
    want[names.index("temp")] = 1
    want[[names.index("recipe[T.B]:temp"), names.index("recipe[T.C]:temp")]] = 1 / 3
    np.testing.assert_allclose(L[0] / L[0, names.index("temp")], want, atol=1e-10)


def test_ml_fits_get_satterthwaite_df():
    fit = _fit("Reaction ~ Days + (Days | Subject)", "sleepstudy", reml=False)
    tab = fixef_tests(fit)
    assert np.isfinite(tab["df"]).all() and (tab["df"] > 1).all()
    assert fixef_tests(fit.refit(reml=True))["df"].to_numpy() == pytest.approx(17, rel=1e-5)


def test_models_without_terms():
    fit = _fit("Yield ~ 1 + (1 | Batch)", "dyestuff")
    assert anova_type3(fit).empty
    assert list(fixef_tests(fit).index) == ["(Intercept)"]


def test_errors(reference_fits, monkeypatch):
    _, fit = reference_fits["sleepstudy_slope_reml"]
    with pytest.raises(MultilevelError, match="unknown ddf"):
        fixef_tests(fit, ddf="containment")
    with pytest.raises(MultilevelError, match="unknown ddf"):
        anova_type3(fit, ddf=None)
    with pytest.raises(MultilevelError, match="REML"):
        fixef_tests(fit.refit(reml=False), ddf="kenward-roger")
    with pytest.raises(MultilevelError, match="linear mixed model"):
        fixef_tests(object())
    with pytest.raises(MultilevelError, match="columns"):
        contrast_test(fit, [1.0, 0.0, 0.0])
    import multilevel.inference.ftests as ftests

    monkeypatch.setattr(ftests, "KR_MAX_N", 100)
    with pytest.raises(MultilevelError, match="limited to 100 observations"):
        fixef_tests(fit.refit(reml=True), ddf="kenward-roger")
    assert (fixef_tests(fit, "satterthwaite")["df"] > 0).all()  # no limit for Satterthwaite


def _dense_vcov_adj(fit):
    """pbkrtest's vcovAdj written out with dense n x n matrices G_r (one per covariance
    parameter: Z_a Z_b' + Z_b Z_a' for a covariance, Z_a Z_a' for a variance, I for σ²)."""
    X = fit.frame.X
    n = X.shape[0]
    G, gamma = [], []
    lams = fit.deviance.layout.lambdas(np.asarray(fit.theta))
    for rt, lam in zip(fit.frame.reterms, lams, strict=True):
        cov = fit.sigma**2 * lam @ lam.T
        Zs = []
        for a in range(rt.k):
            M = np.zeros((n, rt.nlevels))
            M[np.arange(n), rt.codes] = rt.Z[:, a]
            Zs.append(M)
        for b in range(rt.k):  # the lower triangle column by column (lme4's order)
            for a in range(b, rt.k):
                if a != b and not rt.correlated:
                    continue
                Gi = Zs[a] @ Zs[b].T
                G.append(Gi if a == b else Gi + Gi.T)
                gamma.append(cov[a, b])
    G.append(np.eye(n))
    gamma.append(fit.sigma**2)
    Si = np.linalg.inv(sum(g * Gi for g, Gi in zip(gamma, G, strict=True)))
    phi = fit.vcov.to_numpy()
    m = len(G)
    GX = [Gi @ Si @ X for Gi in G]
    P = [-(o.T @ Si @ X) for o in GX]
    Q = [[GX[r].T @ Si @ GX[s] for s in range(m)] for r in range(m)]
    info = np.array(
        [
            [
                np.trace(G[r] @ Si @ G[s] @ Si)
                - 2 * np.sum(phi * Q[r][s])
                + np.trace(phi @ P[r] @ phi @ P[s])
                for s in range(m)
            ]
            for r in range(m)
        ]
    )
    W = 2 * np.linalg.inv(info)
    U = sum(W[r, s] * (Q[r][s] - P[r] @ phi @ P[s]) for r in range(m) for s in range(m))
    return phi + 2 * phi @ U @ phi, W


@pytest.mark.parametrize(
    "formula",
    ["y ~ x + z + (1 + x + z | g)", "y ~ x + (1 + x | g) + (1 + x | h)", "y ~ z + (1 + x || g)"],
)
def test_kenward_roger_matches_the_dense_formulas(formula):
    rng = np.random.default_rng(3)
    n = 240
    g, h = rng.integers(0, 12, n), rng.integers(0, 7, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    y = 1 + x + rng.normal(size=12)[g] * (1 + 0.5 * x + 0.3 * z) + rng.normal(size=7)[h] * x
    y = y + rng.normal(size=n)
    d = pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str), "h": h.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = multilevel.fit(formula, d)
    phi_adj, W = _dense_vcov_adj(fit)
    kr = kenward_roger(fit)
    np.testing.assert_allclose(kr.phi_adj, phi_adj, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(kr.W, W, rtol=1e-7, atol=1e-10 * np.abs(W).max())


@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
def test_tests_do_not_depend_on_the_units(ddf):
    """Predictors and response in other units (the blocks then standardise X and scale Z, and
    the covariance parameters span many orders of magnitude): the same df, t and p."""
    d = datasets.load("radon")
    d["F"], d["U"], d["Y"] = d["floor"] * 1e3, d["log_uranium"] * 1e4, d["log_radon"] * 1e3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = multilevel.fit("log_radon ~ floor * log_uranium + (1 + floor | county)", d)
        b = multilevel.fit("Y ~ F * U + (1 + F | county)", d)
    assert b.problem.blocks.z_scale[0][1] != 1.0  # the slope's Z column entered the blocks rescaled
    ta, tb = fixef_tests(a, ddf), fixef_tests(b, ddf)
    np.testing.assert_allclose(tb[["df", "t value"]], ta[["df", "t value"]], rtol=1e-4)
    # (the two fits agree to the optimiser's tolerance; p = 6e-38 at t = 40 amplifies it)
    np.testing.assert_allclose(tb["Pr(>|t|)"], ta["Pr(>|t|)"], rtol=1e-3)
    fa, fb = anova_type3(a, ddf), anova_type3(b, ddf)
    np.testing.assert_allclose(fb[["DenDF", "F value"]], fa[["DenDF", "F value"]], rtol=1e-4)
