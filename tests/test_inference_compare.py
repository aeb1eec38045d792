"""Likelihood-ratio tests against lme4 1.1-31's anova (tests/data/reference/inference)."""

import json
import math
import warnings

import pytest
from conftest import reference

import multilevel
from multilevel import anova, datasets
from multilevel.cli import main
from multilevel.errors import MultilevelError
from multilevel.inference.compare import BoundaryWarning, RefitNotice, format_anova

CASES = {
    "sleepstudy_slope_reml": "sleepstudy",
    "penicillin_crossed_reml": "penicillin",
    "radon_seed_eq1": "radon",
}


def pair(name, data, reml=None):
    ref = reference(f"inference/{name}")
    d = datasets.load(data)
    reml = ref["reml"] if reml is None else reml
    m1 = multilevel.fit(ref["formula"], d, reml=reml, data_name=data)
    m0 = multilevel.fit(ref["lrt"]["null"], d, reml=reml, data_name=data)
    return ref, m0, m1


@pytest.mark.parametrize("name", list(CASES))
def test_lrt_matches_lme4(name):
    ref, m0, m1 = pair(name, CASES[name])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tab = anova(m0, m1)
    lrt = ref["lrt"]
    assert tab["Chisq"].iloc[-1] == pytest.approx(lrt["chisq"], rel=1e-6)
    assert tab["Df"].iloc[-1] == lrt["df"]
    assert tab["Pr(>Chisq)"].iloc[-1] == pytest.approx(lrt["p"], rel=1e-5)
    # REML fits are refitted by ML, and we say so
    assert any(issubclass(w.category, RefitNotice) for w in caught)
    assert tab.attrs["refitted"] == ["m0", "m1"]
    assert "refitting model(s) with ML (instead of REML)" in tab.attrs["messages"]
    # every reference test drops a variance component: the p-value is conservative
    assert any(issubclass(w.category, BoundaryWarning) for w in caught)
    assert "boundary" in tab["note"].iloc[-1]
    # the deviances are the ML fits'
    ml0, ml1 = m0.refit(reml=False), m1.refit(reml=False)
    assert tab.loc["m0", "deviance"] == pytest.approx(ml0.objective, rel=1e-12)
    assert tab.loc["m1", "deviance"] == pytest.approx(ml1.objective, rel=1e-12)


def test_table_columns_and_information_criteria():
    """On ML fits no refit; AIC, BIC, logLik are lme4's (reference sleepstudy_slope_ml)."""
    ref = reference("sleepstudy_slope_ml")
    d = datasets.load("sleepstudy")
    full = multilevel.fit(ref["formula"], d, reml=False)
    reduced = multilevel.fit("Reaction ~ 1 + (Days | Subject)", d, reml=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tab = anova(full, reduced, names=["full", "reduced"])  # any order: sorted by npar
    assert not any(issubclass(w.category, RefitNotice | BoundaryWarning) for w in caught)
    assert tab.attrs["refitted"] == []
    assert list(tab.columns) == [
        "npar",
        "AIC",
        "BIC",
        "logLik",
        "deviance",
        "Chisq",
        "Df",
        "Pr(>Chisq)",
        "note",
    ]
    assert list(tab.index) == ["reduced", "full"]
    assert list(tab["npar"]) == [5, 6]
    row = tab.loc["full"]
    assert row["AIC"] == pytest.approx(ref["aic"], rel=1e-8)
    assert row["BIC"] == pytest.approx(ref["bic"], rel=1e-8)
    assert row["logLik"] == pytest.approx(ref["loglik"], rel=1e-8)
    assert row["note"] == ""  # a fixed effect tested: not on a boundary
    assert math.isnan(tab["Chisq"].iloc[0])
    assert tab["Chisq"].iloc[1] == pytest.approx(
        2 * (tab["logLik"].iloc[1] - tab["logLik"].iloc[0]), rel=1e-12
    )


def test_three_models_and_names():
    d = datasets.load("sleepstudy")
    ms = [
        multilevel.fit(f, d, reml=False)
        for f in (
            "Reaction ~ Days + (1 | Subject)",
            "Reaction ~ Days + (Days || Subject)",
            "Reaction ~ Days + (Days | Subject)",
        )
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tab = anova(*ms, names=["int", "uncorr", "corr"])
    assert list(tab.index) == ["int", "uncorr", "corr"]
    assert list(tab["Df"].iloc[1:]) == [1, 1]
    # adding an SD is a boundary test; adding only the correlation is not
    assert "boundary" in tab.loc["uncorr", "note"]
    assert tab.loc["corr", "note"] == ""
    assert sum(issubclass(w.category, BoundaryWarning) for w in caught) == 1
    text = format_anova(tab)
    assert "uncorr: Reaction ~ Days + (Days || Subject)" in text
    assert "Pr(>Chisq)" in text


def test_errors():
    d = datasets.load("sleepstudy")
    m = multilevel.fit("Reaction ~ Days + (1 | Subject)", d)
    other = multilevel.fit("Reaction ~ Days + (1 | Subject)", d.iloc[:150])
    with pytest.raises(MultilevelError, match="different data"):
        anova(m, other)
    with pytest.raises(MultilevelError, match="not a fitted"):
        anova(m, "m1")
    with pytest.raises(MultilevelError, match="names"):
        anova(m, m, names=["a", "a"])
    y2 = d.assign(Reaction=d["Reaction"] + 1.0)
    with pytest.raises(MultilevelError, match="different data"):
        anova(m, multilevel.fit("Reaction ~ Days + (1 | Subject)", y2))


def test_exported():
    assert multilevel.anova is anova
    assert "anova" in multilevel.__all__


def test_cli_compare(capsys):
    args = ["compare", "sleepstudy", "Reaction ~ Days + (1 | Subject)"]
    args += ["Reaction ~ Days + (Days | Subject)"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = reference("inference/sleepstudy_slope_reml")["lrt"]
    assert out["test"]["chisq"] == pytest.approx(ref["chisq"], rel=1e-6)
    assert out["test"]["df"] == ref["df"]
    assert out["refitted_with_ml"] is True
    assert [m["name"] for m in out["models"]] == ["m0", "m1"]
    assert any("boundary" in n for n in out["notes"])
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "m1: Reaction ~ Days + (Days | Subject)" in text and "42.1393" in text
