"""Save and load: exact round trip, clear errors for foreign, newer or corrupted files."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel import datasets


@pytest.fixture(scope="module")
def fit():
    df = datasets.load("sleepstudy")
    df.loc[3, "Reaction"] = np.nan  # a dropped row must stay counted
    return multilevel.fit("Reaction ~ Days + (Days | Subject)", df, data_name="sleepstudy")


def test_round_trip_is_exact(fit, tmp_path):
    path = tmp_path / "m.mlfit"
    fit.save(path)
    m = multilevel.load(path)
    assert m.objective == fit.objective
    np.testing.assert_array_equal(m.theta, fit.theta)
    pd.testing.assert_series_equal(m.fixef, fit.fixef)
    pd.testing.assert_frame_equal(m.vcov, fit.vcov)
    pd.testing.assert_frame_equal(m.varcorr, fit.varcorr)
    pd.testing.assert_frame_equal(m.ranef["Subject"], fit.ranef["Subject"])
    assert m.sigma == fit.sigma and m.n_dropped == fit.n_dropped == 1
    assert m.converged == fit.converged and m.formula == fit.formula
    new = datasets.load("sleepstudy").head(5)
    np.testing.assert_array_equal(m.predict(new), fit.predict(new))
    assert m.summary() == fit.summary()


def _rewrite(src, dst, meta_change=None, data=None):
    with zipfile.ZipFile(src) as z:
        meta = json.loads(z.read("fit.json"))
        parquet = z.read("data.parquet")
    if meta_change:
        meta_change(meta)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("fit.json", json.dumps(meta))
        z.writestr("data.parquet", parquet if data is None else data)


def test_newer_format_version_is_refused(fit, tmp_path):
    fit.save(tmp_path / "m.mlfit")
    _rewrite(tmp_path / "m.mlfit", tmp_path / "new.mlfit", lambda m: m.update(version=99))
    with pytest.raises(multilevel.DataError, match="version 99.*upgrade"):
        multilevel.load(tmp_path / "new.mlfit")


def test_corrupted_files_are_refused(fit, tmp_path):
    fit.save(tmp_path / "m.mlfit")
    bad = tmp_path / "bad.mlfit"
    bad.write_bytes((tmp_path / "m.mlfit").read_bytes()[:200])
    with pytest.raises(multilevel.DataError, match="not a readable"):
        multilevel.load(bad)
    # parameters that do not belong to the data
    _rewrite(tmp_path / "m.mlfit", tmp_path / "t.mlfit", lambda m: m["theta"].__setitem__(0, 2.0))
    with pytest.raises(multilevel.DataError, match="corrupted"):
        multilevel.load(tmp_path / "t.mlfit")
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(multilevel.DataError):
        multilevel.load(tmp_path / "plain.txt")
    with pytest.raises(multilevel.DataError, match="no fit file"):
        multilevel.load(tmp_path / "missing.mlfit")


def test_a_formula_in_a_fit_file_cannot_run_code(fit, tmp_path):
    fit.save(tmp_path / "m.mlfit")
    target = tmp_path / "pwned"
    evil = f'Reaction ~ Days + {{__import__("os").system("touch {target}")}} + (Days | Subject)'
    _rewrite(tmp_path / "m.mlfit", tmp_path / "e.mlfit", lambda m: m.update(formula=evil))
    with pytest.raises(multilevel.MultilevelError):
        multilevel.load(tmp_path / "e.mlfit")
    assert not target.exists()


# -- two-level fits --------------------------------------------------------------------


def _two_level(**kwargs):
    df = datasets.load("radon")
    args = dict(group="county", group_formula="~ log_uranium", data_name="radon")
    args.update(kwargs)
    return multilevel.fit("log_radon ~ floor", df, **args)


@pytest.mark.parametrize("varying", [None, "1", "0 + floor"])
def test_two_level_round_trip(tmp_path, varying):
    from multilevel import LinearMixedModel, TwoLevelModel

    tl = _two_level(varying=varying)
    path = tmp_path / "tl.mlfit"
    tl.save(path)
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("fit.json"))
    assert meta["formula"] == tl.lme4_formula
    assert meta["two_level"] == {
        "formula": "log_radon ~ floor",
        "group": "county",
        "group_formula": "~ log_uranium",
        "varying": list(tl.spec.varying),
    }
    m = multilevel.load(path)
    assert type(m) is TwoLevelModel and type(m.lmm) is LinearMixedModel
    assert m.spec == tl.spec
    assert m.objective == tl.objective
    np.testing.assert_array_equal(m.theta, tl.theta)
    pd.testing.assert_frame_equal(m.group_level, tl.group_level)
    pd.testing.assert_frame_equal(m.coef_table(), tl.coef_table(), rtol=1e-12)
    pd.testing.assert_frame_equal(m.Sigma, tl.Sigma)
    np.testing.assert_array_equal(m.design.gamma, tl.design.gamma)
    np.testing.assert_array_equal(m.design.W, tl.design.W)
    assert m.parameter_names() == tl.parameter_names()
    pd.testing.assert_frame_equal(m.confint("wald"), tl.confint("wald"))
    assert m.summary() == tl.summary()
    assert m.to_dict() == tl.to_dict()


def test_two_level_round_trip_with_weights_and_a_quoted_group(tmp_path):
    df = datasets.load("radon")
    df["my county"] = df.county
    df["w"] = np.random.default_rng(0).uniform(0.5, 2.0, size=len(df))
    tl = multilevel.fit(
        "log_radon ~ floor", df, group="my county", group_formula="~ log_uranium", weights="w"
    )
    tl.save(tmp_path / "w.mlfit")
    m = multilevel.load(tmp_path / "w.mlfit")
    assert m.spec == tl.spec and m.group == "my county"
    assert m.lmm.weights == "w" and m.objective == tl.objective
    pd.testing.assert_frame_equal(m.coef_table(), tl.coef_table(), rtol=1e-12)
    np.testing.assert_array_equal(m.fitted, tl.fitted)


def test_a_loaded_plain_fit_stays_plain(fit, tmp_path):
    from multilevel import LinearMixedModel
    from multilevel.twolevel import TwoLevelFit

    fit.save(tmp_path / "m.mlfit")
    with zipfile.ZipFile(tmp_path / "m.mlfit") as z:
        assert json.loads(z.read("fit.json"))["two_level"] is None
    m = multilevel.load(tmp_path / "m.mlfit")
    assert type(m) is LinearMixedModel and not isinstance(m, TwoLevelFit)


def test_a_two_level_entry_that_does_not_match_the_formula_is_refused(tmp_path):
    tl = _two_level()
    tl.save(tmp_path / "tl.mlfit")

    def edit(key, value):
        return lambda meta: meta["two_level"].__setitem__(key, value)

    cases = [
        ("v.mlfit", edit("varying", ["1"]), "corrupted.*amounts to"),
        ("g.mlfit", edit("group_formula", None), "corrupted.*amounts to"),
        ("s.mlfit", edit("varying", "1 + floor"), "corrupted.*list"),
        ("k.mlfit", lambda meta: meta["two_level"].pop("group"), "corrupted.*two_level"),
        ("t.mlfit", lambda meta: meta.update(two_level=[1, 2]), "corrupted.*two_level"),
    ]
    for name, change, match in cases:
        _rewrite(tmp_path / "tl.mlfit", tmp_path / name, change)
        with pytest.raises(multilevel.DataError, match=match):
            multilevel.load(tmp_path / name)


def test_a_group_formula_in_a_fit_file_cannot_run_code(tmp_path):
    _two_level().save(tmp_path / "tl.mlfit")
    target = tmp_path / "pwned"
    evil = f'~ {{__import__("os").system("touch {target}")}}'
    _rewrite(
        tmp_path / "tl.mlfit",
        tmp_path / "e.mlfit",
        lambda meta: meta["two_level"].update(group_formula=evil),
    )
    with pytest.raises(multilevel.MultilevelError):
        multilevel.load(tmp_path / "e.mlfit")
    assert not target.exists()


GLMMS = {
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", 1),
    "cbpp_agq": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", 9),
    "owls": (
        "SiblingNegotiation ~ FoodTreatment + offset(logBroodSize) + (1 | Nest)", "poisson", 1,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(GLMMS))
def test_glmm_round_trip(name, tmp_path):
    formula, family, nagq = GLMMS[name]
    data = datasets.load(name.split("_")[0])
    m = multilevel.fit(formula, data, family=family, nagq=nagq)
    m.save(tmp_path / "g.mlfit")
    back = multilevel.load(tmp_path / "g.mlfit")
    assert type(back) is type(m)
    assert (back.family, back.link, back.method) == (m.family, m.link, m.method)
    assert back.objective == m.objective
    assert back.fixef.equals(m.fixef) and back.vcov.equals(m.vcov)  # bit for bit
    np.testing.assert_allclose(back.theta, m.theta, rtol=1e-15)
    group = m.schema.terms[0].group
    np.testing.assert_allclose(back.ranef[group], m.ranef[group], rtol=1e-8, atol=1e-12)
    assert back.summary() == m.summary()
    assert back.converged == m.converged


def test_a_glmm_file_with_parameters_of_another_fit_is_refused(tmp_path):
    formula, family, _ = GLMMS["cbpp"]
    m = multilevel.fit(formula, datasets.load("cbpp"), family=family)
    m.save(tmp_path / "g.mlfit")
    _rewrite(tmp_path / "g.mlfit", tmp_path / "b.mlfit",
             lambda meta: meta["glmm"]["beta"].__setitem__(1, -0.4))  # fmt: skip
    with pytest.raises(multilevel.DataError, match="corrupted: its data and parameters give"):
        multilevel.load(tmp_path / "b.mlfit")
    _rewrite(tmp_path / "g.mlfit", tmp_path / "h.mlfit",
             lambda meta: meta["glmm"].__setitem__("hessian", [[1.0]]))  # fmt: skip
    with pytest.raises(multilevel.DataError, match="do not fit the model"):
        multilevel.load(tmp_path / "h.mlfit")
