"""Plain-words diagnostics of GLMM fits (multilevel.model.glmm_diagnostics): separation,
overdispersion, PIRLS trouble."""

import numpy as np
import pandas as pd

import multilevel
from multilevel import datasets
from multilevel.data import build_frame
from multilevel.engine.family import family
from multilevel.fitting.glmm import prepare_glmm


def frame(seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(10), 20)
    x = rng.normal(size=200)
    return pd.DataFrame({"x": x, "z": rng.normal(size=200), "g": g,
                         "y": rng.uniform(size=200) < 0.4})  # fmt: skip


def test_complete_separation_names_the_predictor():
    df = frame().assign(y=lambda d: d.x > 0.3)
    m = multilevel.fit("y ~ x + z + (1 | g)", df, family="binomial")
    notes = [n for n in m.diagnostics if n.startswith("separation")]
    assert len(notes) == 1 and notes[0].startswith("separation: x predicts the outcome exactly")
    assert "in 200 rows" in notes[0] or "in 199 rows" in notes[0]
    assert notes[0] in m.summary() and notes[0] in m.to_dict()["diagnostics"]


def test_a_factor_level_with_only_failures_names_the_factor():
    df = frame()
    df["f"] = np.where(df.g == 3, "a", np.where(df.g < 5, "b", "c"))
    df.loc[df.g == 3, "y"] = False  # quasi-complete: the level 'a' has no successes
    m = multilevel.fit("y ~ f + z + (1 | g)", df, family="binomial")
    assert any(n.startswith("separation: f predicts the outcome exactly in 20 rows")
               for n in m.diagnostics)  # fmt: skip


def test_no_separation_no_note():
    m = multilevel.fit("y ~ x + z + (1 | g)", frame(), family="binomial")
    assert m.diagnostics == []
    cbpp = multilevel.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                          datasets.load("cbpp"), family="binomial")  # fmt: skip
    assert cbpp.diagnostics == []


def test_overdispersed_counts_are_called_so_with_the_ratio():
    owls = datasets.load("owls")
    m = multilevel.fit("SiblingNegotiation ~ FoodTreatment + offset(logBroodSize) + (1 | Nest)",
                       owls, family="poisson")  # fmt: skip
    note = [n for n in m.diagnostics if n.startswith("overdispersion")]
    ratio = (m.pearson_residuals**2).sum() / (m.nobs - m.npar)
    assert ratio > 4
    assert len(note) == 1 and f"is {ratio:.3g} times" in note[0] and "(1 | obs)" in note[0]
    # an observation-level random effect takes the extra variation up
    obs = owls.assign(obs=np.arange(len(owls)))
    m2 = multilevel.fit(
        "SiblingNegotiation ~ FoodTreatment + offset(logBroodSize) + (1 | Nest) + (1 | obs)",
        obs, family="poisson",
    )  # fmt: skip
    assert not any(n.startswith("overdispersion") for n in m2.diagnostics)


def test_poisson_counts_are_not_called_overdispersed():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(30), 15)
    eta = 1.0 + rng.normal(scale=0.5, size=30)[g]
    df = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "g": g})
    assert multilevel.fit("y ~ 1 + (1 | g)", df, family="poisson").diagnostics == []


def test_the_worst_level_is_the_one_off_its_mode():
    df = frame()
    fr = build_frame("y ~ x + (1 | g)", df, family="binomial")
    dev = prepare_glmm(fr, family("binomial")).deviance
    m = multilevel.fit("y ~ x + (1 | g)", df, family="binomial")
    modes = dev.modes(m.optim.theta, m.fixef.to_numpy())
    lam = modes.factorization.lambdas_data
    u = [ut.copy() for ut in modes.u]
    u[0][6, 0] += 0.5  # level 6 off its mode
    b = [ut @ la.T for ut, la in zip(u, lam, strict=True)]
    eta = dev.eta(modes.beta, b)
    assert dev.worst_level(eta, u, lam) == (0, 6)
