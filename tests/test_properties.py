"""Invariances a correct fit must have: row order, level labels, scale of y."""

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel import datasets

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def base(sleep):
    return multilevel.fit(FORMULA, sleep)


def test_permuting_rows_and_relabelling_levels_changes_nothing(sleep, base):
    rng = np.random.default_rng(7)
    perm = rng.permutation(len(sleep))
    df = sleep.iloc[perm].reset_index(drop=True)
    relabel = {s: f"subj_{rng.integers(1_000_000)}_{s}" for s in df.Subject.unique()}
    df["Subject"] = df.Subject.map(relabel)
    m = multilevel.fit(FORMULA, df)
    assert m.objective == pytest.approx(base.objective, rel=1e-9)
    np.testing.assert_allclose(m.fixef, base.fixef, rtol=1e-6)
    np.testing.assert_allclose(m.fixef_se, base.fixef_se, rtol=1e-5)
    assert m.sigma == pytest.approx(base.sigma, rel=1e-6)
    ours = m.ranef["Subject"]
    for old, new in relabel.items():
        np.testing.assert_allclose(
            ours.loc[new].to_numpy(),
            base.ranef["Subject"].loc[str(old)].to_numpy(),
            rtol=1e-4,
            atol=1e-6,
        )
    # fitted values follow the rows
    np.testing.assert_allclose(m.fitted, base.fitted[perm], rtol=1e-6)


@pytest.mark.parametrize("c", [1e-3, 7.5, 1e4])
def test_scaling_y_scales_estimates(sleep, base, c):
    df = sleep.assign(Reaction=sleep.Reaction * c)
    m = multilevel.fit(FORMULA, df)
    np.testing.assert_allclose(m.fixef, c * base.fixef, rtol=1e-5)
    np.testing.assert_allclose(m.fixef_se, c * base.fixef_se, rtol=1e-4)
    assert m.sigma == pytest.approx(c * base.sigma, rel=1e-5)
    sd = m.varcorr.query("term2.isna()", engine="python").sdcor.to_numpy()
    sd0 = base.varcorr.query("term2.isna()", engine="python").sdcor.to_numpy()
    np.testing.assert_allclose(sd, c * sd0, rtol=1e-4)
    np.testing.assert_allclose(m.theta, base.theta, rtol=1e-4, atol=1e-6)
    # the objective shifts by the log-Jacobian: 2 (n - p) log c under REML
    shift = 2 * (m.nobs - len(m.fixef)) * np.log(c)
    assert m.objective == pytest.approx(base.objective + shift, rel=1e-9)


def test_fitted_plus_residuals_is_y(sleep, base):
    np.testing.assert_allclose(base.fitted + base.residuals, sleep.Reaction.to_numpy())


def test_predict_on_training_data_equals_fitted(sleep, base):
    np.testing.assert_allclose(base.predict(sleep), base.fitted, rtol=1e-12)


def test_predict_new_groups(sleep, base):
    new = sleep.head(3).assign(Subject=999)
    pop = base.fixef["(Intercept)"] + base.fixef["Days"] * new.Days.to_numpy()
    np.testing.assert_allclose(base.predict(new), pop, rtol=1e-12)
    with pytest.raises(multilevel.DataError, match="999"):
        base.predict(new, new_groups="error")


def test_refit_with_new_response_equals_fresh_fit(sleep, base):
    rng = np.random.default_rng(3)
    y = sleep.Reaction.to_numpy() + rng.normal(scale=20, size=len(sleep))
    fresh = multilevel.fit(FORMULA, sleep.assign(Reaction=y))
    re = base.refit(y)
    assert re.objective == pytest.approx(fresh.objective, rel=1e-12)
    # the optimiser's path may differ in the last digits of the blocks: θ agrees to ~1e-6
    np.testing.assert_allclose(re.fixef, fresh.fixef, rtol=1e-6)
    np.testing.assert_allclose(re.fitted, fresh.fitted, rtol=1e-5)
    assert base.objective != pytest.approx(re.objective)  # base is untouched


def test_refit_by_ml_equals_ml_fit(sleep, base):
    ml = multilevel.fit(FORMULA, sleep, reml=False)
    re = base.refit(reml=False)
    assert re.method == "ML" and base.method == "REML"
    assert re.objective == pytest.approx(ml.objective, rel=1e-12)


def test_random_effects_aliased_with_fixed_effects_are_reported():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(8), 10)
    df = pd.DataFrame({"y": rng.normal(size=80) + rng.normal(size=8)[g], "g": g})
    with pytest.warns(UserWarning, match="aliased"):
        m = multilevel.fit("y ~ C(g) + (1 | g)", df)
    assert m.aliased_terms and "aliased" in m.summary()
    assert multilevel.fit("y ~ 1 + (1 | g)", df).aliased_terms == []


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_predictors_on_extreme_scales_give_the_same_fit(scale):
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 20)
    x = rng.normal(size=600)
    y = x + rng.normal(size=30)[g] + 0.3 * x * rng.normal(size=30)[g] + rng.normal(size=600)
    base = multilevel.fit("y ~ x + (1 + x | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
    m = multilevel.fit("y ~ x + (1 + x | g)", pd.DataFrame({"y": y + 1e6, "x": x * scale, "g": g}))
    assert m.converged and not m.singular
    assert m.scale_note is None  # one predictor: nothing to compare
    np.testing.assert_allclose(m.fixef["x"] * scale, base.fixef["x"], rtol=1e-6)
    sd = m.varcorr.sdcor.to_numpy() * [1, scale, 1, 1]
    np.testing.assert_allclose(sd, base.varcorr.sdcor.to_numpy(), rtol=1e-5)
    # REML's log|X'V⁻¹X| carries the Jacobian of the rescaled column
    assert m.objective == pytest.approx(base.objective + 2 * np.log(scale), rel=1e-9)


def test_predictors_orders_of_magnitude_apart_get_a_note_and_an_exact_fit():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(30), 20)
    x1, x2 = rng.normal(size=(2, 600))
    y = x1 - x2 + rng.normal(size=30)[g] + rng.normal(size=600)
    base = multilevel.fit(
        "y ~ x1 + x2 + (1 | g)", pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})
    )
    df = pd.DataFrame({"y": y, "x1": x1 * 1e6, "x2": x2 * 1e-6, "g": g})
    with pytest.warns(UserWarning, match="orders of magnitude"):
        m = multilevel.fit("y ~ x1 + x2 + (1 | g)", df)
    assert "'x1' ~ 1e+06" in m.scale_note and "rescaling" in m.summary()
    np.testing.assert_allclose(m.fixef.to_numpy() * [1, 1e6, 1e-6], base.fixef, rtol=1e-7)
    np.testing.assert_allclose(m.fixef_se.to_numpy() * [1, 1e6, 1e-6], base.fixef_se, rtol=1e-6)
    assert base.scale_note is None
