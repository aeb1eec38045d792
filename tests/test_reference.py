"""Every Gaussian reference model: our fit against lme4's figures.

A reference names its data (a bundled dataset, or a CSV of tests/data/datasets) and its
prior-weights column (``"weights": "w"``, or ``{}`` for none); offsets are in its formula.

Objective no worse than lme4's best optimiser by 1e-6 relative; fixed effects, SEs, sigma and
random-effect SDs to 1e-4 relative (against 0.1 where smaller); conditional modes and their
SEs to 1e-3.
"""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import gaussian_references, load_data, reference, reference_weights

import multilevel

_FITS: dict[str, multilevel.LinearMixedModel] = {}


def fitted(name: str):
    if name not in _FITS:
        ref = reference(name)
        data = load_data(ref["data"])
        _FITS[name] = multilevel.fit(
            ref["formula"], data, reml=ref["reml"], weights=reference_weights(ref)
        )
    return _FITS[name]


def rel(a, b, floor=0.1):
    return abs(a - b) / max(abs(b), floor)


def norm(name: str) -> str:
    return name.replace("[T.", "").replace("]", "")


NAMES = gaussian_references()


@pytest.mark.parametrize("name", NAMES)
def test_objective_no_worse_than_lme4(name):
    ref, m = reference(name), fitted(name)
    assert m.objective <= ref["objective"] + 1e-6 * abs(ref["objective"])
    assert m.converged


@pytest.mark.parametrize("name", NAMES)
def test_fixed_effects_and_scale(name):
    ref, m = reference(name), fitted(name)
    ours = {norm(k): v for k, v in m.fixef.items()}
    ours_se = {norm(k): v for k, v in m.fixef_se.items()}
    assert set(ours) == set(ref["fixef"])
    for k, v in ref["fixef"].items():
        assert rel(ours[k], v) < 1e-4, k
        assert rel(ours_se[k], ref["fixef_se"][k]) < 1e-4, k
    assert rel(m.sigma, ref["sigma"]) < 1e-4
    assert m.nobs == ref["nobs"]
    assert m.ngroups == ref["ngroups"]
    assert math.isclose(m.loglik, ref["loglik"], rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(m.aic, ref["aic"], rel_tol=1e-6)
    assert math.isclose(m.bic, ref["bic"], rel_tol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_theta_in_lme4_order(name):
    ref, m = reference(name), fitted(name)
    theirs = np.atleast_1d(ref["theta"])
    assert len(m.theta) == len(theirs)
    for a, b in zip(m.theta, theirs, strict=True):
        assert rel(a, b) < 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_variance_components(name):
    ref, m = reference(name), fitted(name)
    vc = m.varcorr
    ours = [r for r in vc.itertuples() if r.group != "Residual"]
    theirs = [r for r in ref["varcorr"] if r["grp"] != "Residual"]
    assert len(ours) == len(theirs)
    key = lambda g: g.split(".")[0]  # noqa: E731 - lme4 names a second '||' block 'g.1'
    for r in theirs:
        match = [
            o
            for o in ours
            if key(o.group) == key(r["grp"])
            and o.term1 == r["var1"]
            and (o.term2 if isinstance(o.term2, str) else None) == r.get("var2")
        ]
        assert match, r
        assert min(rel(o.sdcor, r["sdcor"]) for o in match) < 1e-4, r
    assert (m.varcorr.group == "Residual").sum() == 1


@pytest.mark.parametrize("name", NAMES)
def test_conditional_modes_and_ses(name):
    ref, m = reference(name), fitted(name)
    ranef = m.ranef
    for r in ref["ranef"]:
        df = ranef[r["grpvar"]]
        row = df.loc[str(r["grp"])]
        assert rel(row[r["term"]], r["condval"], floor=0.1) < 1e-3, r
        assert rel(row[f"se({r['term']})"], r["condsd"], floor=0.1) < 1e-3, r


def test_lme4_default_stops_early_on_radon_but_we_do_not():
    ref, m = reference("radon_seed_eq1"), fitted("radon_seed_eq1")
    assert ref["lme4_default_objective"] > ref["objective"] + 5
    assert m.objective < ref["objective"] + 1e-6 * ref["objective"]
    assert not m.singular


def test_dyestuff2_is_singular_with_zero_batch_sd():
    m = fitted("dyestuff2_singular_reml")
    assert m.singular
    vc = m.varcorr
    assert vc.loc[vc.group == "Batch", "sdcor"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert "Batch" in m.singular_terms[0]
    note = [line for line in m.summary().splitlines() if "singular" in line]
    assert len(note) == 1 and "variance of '(Intercept)' in Batch" in note[0]
    assert "groups differ no more than the residual variation" in note[0]  # what it means
    assert "correlation at +1" not in note[0]  # and only what applies


def test_nonsingular_fits_are_not_flagged():
    for name in ["sleepstudy_slope_reml", "penicillin_crossed_reml", "pastes_nested_reml"]:
        assert not fitted(name).singular


def test_coef_is_fixef_plus_ranef():
    m = fitted("sleepstudy_slope_reml")
    coef = m.coef["Subject"]
    re = m.ranef["Subject"]
    np.testing.assert_allclose(
        coef["Days"].to_numpy(), m.fixef["Days"] + re["Days"].to_numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(
        coef["(Intercept)"].to_numpy(),
        m.fixef["(Intercept)"] + re["(Intercept)"].to_numpy(),
        rtol=1e-12,
    )


@pytest.mark.parametrize("name", NAMES)
def test_summary_shows_the_fit(name):
    ref, m = reference(name), fitted(name)
    text = m.summary()
    crit = "REML criterion at convergence" if ref["reml"] else "logLik"
    assert crit in text
    assert f"Number of obs: {ref['nobs']}" in text
    for k in m.fixef.index:
        assert k in text
    assert "Residual" in text
    if len(m.fixef) > 1:
        assert "Correlation of Fixed Effects" in text


def test_summary_of_a_response_at_1e80_falls_back_to_t_values():
    # Satterthwaite's σ⁴ overflows there; the summary must still print (lme4's t table)
    import pandas as pd

    rng = np.random.default_rng(0)
    i = np.arange(40)
    df = pd.DataFrame({"y": rng.normal(size=40) * 1e80, "x": rng.normal(size=40), "g": i % 5})
    text = multilevel.fit("y ~ x + (1 | g)", df).summary()
    assert "Fixed effects" in text and "t value" in text


def test_a_correlation_at_one_is_explained_in_the_summary():
    """4 groups, a random slope whose true effect is proportional to the intercept's: the
    fit puts the correlation at +1, and the note says so and what it usually means."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(4), 10)
    x = np.tile(np.arange(10, dtype=float), 4)
    a = rng.normal(size=4)
    y = 1 + 0.5 * x + a[g] + 0.3 * a[g] * x + rng.normal(size=40)
    m = multilevel.fit("y ~ x + (1 + x | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
    assert m.singular_terms == ["the correlation of '(Intercept)' and 'x' in g is estimated as +1"]
    vc = m.varcorr
    assert vc.loc[vc.term2.notna(), "sdcor"].iloc[0] == pytest.approx(1, abs=1e-6)
    note = [line for line in m.summary().splitlines() if "singular" in line][0]
    assert "cannot separate the variation of the effects" in note and "(1 + x || g)" in note
    assert "variance at zero" not in note
