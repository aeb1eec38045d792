"""The command line for binomial and Poisson models: fit (summary, JSON, intervals, AGQ) and
compare, against the Python API's figures."""

import json

import pytest

import multilevel
from multilevel import datasets
from multilevel.cli import main

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cbpp_fit():
    return multilevel.fit(CBPP, datasets.load("cbpp"), family="binomial")


def test_fit_json_is_the_apis(capsys, cbpp_fit):
    code, out, err = run(capsys, "fit", "cbpp", CBPP, "--family", "binomial", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert (d["family"], d["link"], d["method"], d["sigma"]) == (
        "binomial",
        "logit",
        "Laplace",
        None,
    )
    assert d["objective"] == pytest.approx(cbpp_fit.objective, rel=1e-10)
    assert d["fixef"]["period"] == pytest.approx(cbpp_fit.fixef["period"], rel=1e-6)
    assert d["diagnostics"] == []


def test_fit_summary_with_agq_and_profile_intervals(capsys):
    code, out, err = run(capsys, "fit", "cbpp", CBPP, "--family", "binomial", "--nagq", "9",
                         "--ci", "profile")  # fmt: skip
    assert code == 0, err
    assert "Adaptive Gauss-Hermite Quadrature, nAGQ = 9" in out
    assert "z value" in out and "sd_(Intercept)|herd" in out


def test_link_and_offset_from_the_command_line(capsys):
    code, out, err = run(
        capsys, "fit", "owls", "SiblingNegotiation ~ FoodTreatment + (1 | Nest)",
        "--family", "poisson", "--offset", "logBroodSize", "--json",
    )  # fmt: skip
    assert code == 0, err
    d = json.loads(out)
    assert d["offset"] == "logBroodSize" and d["link"] == "log"
    assert any(n.startswith("overdispersion") for n in d["diagnostics"])
    code, out, err = run(capsys, "fit", "cbpp", CBPP, "--family", "binomial", "--link", "probit",
                         "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["link"] == "probit"


def test_bad_glmm_requests_are_one_line_errors(capsys):
    code, out, err = run(capsys, "fit", "cbpp", "incidence ~ period + (1 | herd)", "--family",
                         "binomial")  # fmt: skip
    assert code == 2 and out == ""
    assert "must be 0 or 1" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "fit", "cbpp", CBPP, "--family", "poisson", "--link", "logit")
    assert code == 2 and "not available for the poisson family" in err
    code, _, err = run(capsys, "fit", "verbagg", "r2 ~ Anger + (1 | id) + (1 | item)",
                       "--family", "binomial", "--nagq", "5")  # fmt: skip
    assert code == 2 and "single random-effects term" in err


def test_compare_glmms(capsys, cbpp_fit):
    code, out, err = run(capsys, "compare", "cbpp", CBPP.replace("period", "1"), CBPP,
                         "--family", "binomial", "--json")  # fmt: skip
    assert code == 0, err
    d = json.loads(out)
    null = multilevel.fit(CBPP.replace("period", "1"), datasets.load("cbpp"), family="binomial")
    assert d["test"]["chisq"] == pytest.approx(null.objective - cbpp_fit.objective, rel=1e-8)
    assert d["test"]["df"] == 1 and d["refitted_with_ml"] is False
