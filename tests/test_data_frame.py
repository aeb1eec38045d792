"""The model frame: from formula and data to y, X and the random-effects terms, and every
way the data can be unfit for the model (each a DataError or FormulaError naming the column,
term or count at fault)."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel import datasets
from multilevel.data import build_frame
from multilevel.errors import DataError, FormulaError, MultilevelError


def make_data(n_groups: int = 6, per_group: int = 10, seed: int = 0) -> pd.DataFrame:
    """y = 1 + 0.5 x + group effect + noise, groups 'a', 'b', ... and a second factor h."""
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    g = np.repeat([chr(ord("a") + i) for i in range(n_groups)], per_group)
    x = rng.normal(size=n)
    effect = rng.normal(scale=1.0, size=n_groups)[np.repeat(np.arange(n_groups), per_group)]
    return pd.DataFrame(
        {
            "y": 1 + 0.5 * x + effect + rng.normal(scale=0.5, size=n),
            "x": x,
            "z": rng.uniform(1, 2, size=n),
            "g": g,
            "h": np.tile(["p", "q", "r", "s"], n // 4 + 1)[:n],
        }
    )


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def sleep():
    return datasets.load("sleepstudy")


def fit_quiet(formula, df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return multilevel.fit(formula, df, **kw)


# -- structure of the frame --------------------------------------------------------------


def test_intercept_only_fixed_part(data):
    fr = build_frame("y ~ (1 | g)", data)
    assert fr.xnames == ["(Intercept)"]
    assert fr.X.shape == (60, 1)
    assert [rt.group for rt in fr.reterms] == ["g"]
    assert fr.reterms[0].nlevels == 6


@pytest.mark.parametrize("formula", ["y ~ 0 + x + (1 | g)", "y ~ x - 1 + (1 | g)"])
def test_no_intercept(data, formula):
    assert build_frame(formula, data).xnames == ["x"]


def test_interactions(data):
    fr = build_frame("y ~ x*h + (1 | g)", data)
    assert fr.xnames[:2] == ["(Intercept)", "x"]
    assert "x:h[T.q]" in fr.xnames
    assert len(fr.xnames) == 8
    fr = build_frame("y ~ x:z + (1 | g)", data)
    assert fr.xnames == ["(Intercept)", "x:z"]


def test_categorical_and_transforms(data):
    fr = build_frame("y ~ C(h) + log(z) + I(x**2) + scale(x) + poly(z, 2) + (1 | g)", data)
    assert fr.dropped_columns == []
    assert "C(h)[T.q]" in fr.xnames
    np.testing.assert_allclose(fr.X[:, fr.xnames.index("log(z)")], np.log(data.z))
    np.testing.assert_allclose(fr.X[:, fr.xnames.index("I(x ** 2)")], data.x**2)
    sx = fr.X[:, fr.xnames.index("scale(x)")]
    assert abs(sx.mean()) < 1e-12


@pytest.mark.parametrize("spec", ["Sum", "contrasts=Sum", "contr.sum", "Sum()"])
def test_contrast_named_as_patsy_does(data, spec):
    # found by tests/test_formula_hypothesis.py: 'C(h, Sum)' was refused as the unknown
    # column 'Sum' ("call it, e.g. 'Sum(x)'"), though formulaic (as patsy) accepts it
    fr = build_frame(f"y ~ C(h, {spec}) + (1 | g)", data)
    assert len(fr.xnames) == 4 and fr.xnames[1].endswith("[S.p]")
    np.testing.assert_allclose(fr.X[:, 1], (data.h == "p").astype(float) - (data.h == "s"))
    with pytest.raises(DataError, match="unknown column 'Sum'"):
        build_frame("y ~ I(Sum * 2) + (1 | g)", data)  # elsewhere it is a name like any


def test_numpy_functions_formulaic_lacks(data):
    fr = build_frame("y ~ sqrt(z) + abs(x) + sin(x) + cos(x) + log1p(z) + (1 | g)", data)
    np.testing.assert_allclose(fr.X[:, fr.xnames.index("sqrt(z)")], np.sqrt(data.z))
    np.testing.assert_allclose(fr.X[:, fr.xnames.index("log1p(z)")], np.log1p(data.z))
    m = fit_quiet("y ~ sqrt(z) + (1 + sin(x) | g)", data)
    np.testing.assert_allclose(m.predict(data), m.fitted)


def test_correlated_slope_block(data):
    fr = build_frame("y ~ x + (1 + x | g)", data)
    (rt,) = fr.reterms
    assert rt.names == ["(Intercept)", "x"]
    assert rt.correlated


def test_double_bar_blocks_are_uncorrelated(sleep):
    m = fit_quiet("Reaction ~ Days + (Days || Subject)", sleep)
    vc = m.varcorr
    assert list(vc.group) == ["Subject", "Subject.1", "Residual"]
    assert vc.term2.isna().all()  # no covariance rows
    assert len(m.theta) == 2


def test_several_terms_on_one_factor_equal_double_bar(sleep):
    a = fit_quiet("Reaction ~ Days + (Days || Subject)", sleep)
    b = fit_quiet("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep)
    assert a.objective == pytest.approx(b.objective, rel=1e-10)


def test_zero_inside_bar(data):
    fr = build_frame("y ~ x + (0 + x | g)", data)
    assert fr.reterms[0].names == ["x"]


def test_nesting_names_levels_as_lme4():
    df = datasets.load("pastes")
    fr = build_frame("strength ~ 1 + (1 | batch/cask)", df)
    groups = {rt.group: rt for rt in fr.reterms}
    assert set(groups) == {"batch", "cask:batch"}
    inner = groups["cask:batch"]
    assert inner.nlevels == 30
    assert "a:A" in set(inner.levels)  # cask value : batch value
    m = fit_quiet("strength ~ 1 + (1 | batch/cask)", df)
    assert m.ngroups == {"cask:batch": 30, "batch": 10}
    assert set(m.ranef) == {"cask:batch", "batch"}


def test_nesting_equals_explicit_interaction_factor():
    df = datasets.load("pastes")
    nested = fit_quiet("strength ~ 1 + (1 | batch/cask)", df)
    explicit = fit_quiet("strength ~ 1 + (1 | batch) + (1 | sample)", df)
    interaction = fit_quiet("strength ~ 1 + (1 | batch) + (1 | batch:cask)", df)
    assert nested.objective == pytest.approx(explicit.objective, rel=1e-10)
    assert interaction.objective == pytest.approx(explicit.objective, rel=1e-10)
    # 'batch:cask' labels are 'A:a', exactly the 'sample' column
    assert set(interaction.ranef["batch:cask"].index) == set(df["sample"])


def test_crossed_factors():
    df = datasets.load("penicillin")
    fr = build_frame("diameter ~ 1 + (1 | plate) + (1 | sample)", df)
    assert [(rt.group, rt.nlevels) for rt in fr.reterms] == [("plate", 24), ("sample", 6)]
    # ordered by decreasing number of levels, whatever the formula order
    fr2 = build_frame("diameter ~ 1 + (1 | sample) + (1 | plate)", df)
    assert [rt.group for rt in fr2.reterms] == ["plate", "sample"]


@pytest.mark.parametrize("dtype", ["int", "str", "float", "category", "object"])
def test_grouping_dtype_does_not_matter(sleep, dtype):
    df = sleep.copy()
    df["Subject"] = {
        "int": df.Subject,
        "str": df.Subject.astype(str),
        "float": df.Subject.astype(float),
        "category": df.Subject.astype("category"),
        "object": df.Subject.astype(str).astype(object),
    }[dtype]
    base = fit_quiet("Reaction ~ Days + (Days | Subject)", sleep)
    m = fit_quiet("Reaction ~ Days + (Days | Subject)", df)
    assert m.objective == pytest.approx(base.objective, rel=1e-10)
    assert m.ngroups == {"Subject": 18}
    # float subjects 308.0 are labelled '308', like the int column
    assert list(m.ranef["Subject"].index) == list(base.ranef["Subject"].index)


def test_non_integral_float_and_bool_grouping(data):
    df = data.copy()
    df["g"] = pd.factorize(df.g)[0] + 0.5
    m = fit_quiet("y ~ x + (1 | g)", df)
    assert list(m.ranef["g"].index)[:2] == ["0.5", "1.5"]
    base = fit_quiet("y ~ x + (1 | g)", data)
    assert m.objective == pytest.approx(base.objective, rel=1e-10)


def test_categorical_with_unused_levels(data):
    df = data.copy()
    df["g"] = pd.Categorical(df.g, categories=list("abcdefxyz"))
    fr = build_frame("y ~ x + (1 | g)", df)
    assert fr.reterms[0].nlevels == 6


def test_predict_matches_levels_across_dtypes(sleep):
    df = sleep.copy()
    df["Subject"] = df.Subject.astype(float)
    df.loc[0, "Reaction"] = np.nan  # the way an int column becomes float in a CSV
    m = fit_quiet("Reaction ~ Days + (Days | Subject)", df)
    new = sleep.iloc[1:6]  # int subjects
    np.testing.assert_allclose(m.predict(new, new_groups="error"), m.fitted[:5])


def test_caller_data_is_not_modified(data):
    df = data.copy()
    df[3] = 1.0  # a non-string column name
    before = list(df.columns)
    build_frame("y ~ x + (1 | g)", df)
    assert list(df.columns) == before


def test_dict_and_object_numbers(data):
    cols = {c: data[c].tolist() for c in ["y", "x", "g"]}
    a = fit_quiet("y ~ x + (1 | g)", cols)
    df = data.copy()
    df["y"] = df.y.astype(object)
    df["x"] = df.x.astype(object)
    b = fit_quiet("y ~ x + (1 | g)", df)
    assert a.objective == pytest.approx(b.objective, rel=1e-12)


# -- missing values ----------------------------------------------------------------------


def test_missing_values_are_dropped_counted_and_shown(data):
    df = data.copy()
    df.loc[[1, 5], "x"] = np.nan
    df.loc[7, "y"] = np.nan
    df.loc[9, "g"] = None
    df.loc[11, "z"] = np.nan  # z is not in the model: the row stays
    m = fit_quiet("y ~ x + (1 | g)", df)
    assert m.n_dropped == 4
    assert m.nobs == 56
    assert "4 rows with missing values dropped" in m.summary()
    assert m.to_dict()["n_dropped"] == 4
    clean = fit_quiet("y ~ x + (1 | g)", df.drop(index=[1, 5, 7, 9]))
    assert m.objective == pytest.approx(clean.objective, rel=1e-12)
    assert clean.n_dropped == 0


def test_missing_values_in_a_bar_expression_are_dropped(data):
    df = data.copy()
    df.loc[[0, 1, 2], "z"] = np.nan
    m = fit_quiet("y ~ x + (1 + z | g)", df)
    assert m.n_dropped == 3


def test_nullable_dtypes(data):
    df = data.copy()
    df["x"] = pd.array(df.x, dtype="Float64")
    df.loc[2, "x"] = pd.NA
    m = fit_quiet("y ~ x + (1 | g)", df)
    assert m.n_dropped == 1


def test_no_rows_left(data):
    df = data.copy()
    df["x"] = np.nan
    with pytest.raises(DataError, match=r"no rows left.*all 60 rows.*'x' 60"):
        build_frame("y ~ x + (1 | g)", df)


# -- rank deficiency ---------------------------------------------------------------------


def test_aliased_columns_dropped_with_warning(data):
    df = data.copy()
    df["x2"] = 2 * df.x
    df["w"] = df.x - 3 * df.z
    with pytest.warns(UserWarning, match=r"rank deficient so dropping 2 columns: x2, w"):
        m = multilevel.fit("y ~ x + z + x2 + w + (1 | g)", df)
    assert m.dropped_columns == ["x2", "w"]
    assert list(m.fixef.index) == ["(Intercept)", "x", "z"]
    ref = fit_quiet("y ~ x + z + (1 | g)", df)
    assert m.objective == pytest.approx(ref.objective, rel=1e-10)
    np.testing.assert_allclose(m.fixef, ref.fixef, rtol=1e-8)
    assert m.to_dict()["dropped_columns"] == ["x2", "w"]
    assert "x2, w" in m.summary()


def test_aliasing_keeps_the_intercept(data):
    """lme4 drops the later of the aliased columns; a pivoted QR would drop the intercept."""
    with pytest.warns(UserWarning, match="dropping 1 column: scale"):
        fr = build_frame("y ~ center(x) + scale(x) + (1 | g)", data.assign(x=data.x * 100 + 5))
    assert fr.xnames == ["(Intercept)", "center(x)"]


def test_constant_column_is_aliased_with_intercept(data):
    with pytest.warns(UserWarning, match="dropping 1 column: c"):
        fr = build_frame("y ~ x + c + (1 | g)", data.assign(c=3.0))
    assert fr.dropped_columns == ["c"]


def test_more_fixed_effects_than_observations(data):
    df = data.copy()
    df["x"] = df.x.astype(str)  # 60 distinct strings: a 60-level factor
    with pytest.raises(DataError, match="60 columns but there are only 60 observations"):
        build_frame("y ~ x + (1 | g)", df)


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula, missing, suggestion",
    [
        ("y ~ xx + (1 | g)", "xx", "x"),
        ("y ~ x + (1 + xq | g)", "xq", "x"),
        ("y ~ x + (1 | gg)", "gg", "g"),
        ("y ~ x + (1 | g/hh)", "hh", "h"),
        ("yy ~ x + (1 | g)", "yy", "y"),
        ("y ~ log(zz) + (1 | g)", "zz", "z"),
        ("Y ~ x + (1 | g)", "Y", "y"),
    ],
)
def test_unknown_column_named_with_suggestion(data, formula, missing, suggestion):
    with pytest.raises(DataError) as info:
        build_frame(formula, data)
    msg = str(info.value)
    assert f"unknown column '{missing}'" in msg
    assert f"did you mean '{suggestion}'?" in msg
    assert "the data has columns: y, x, z, g, h" in msg


def test_function_name_used_as_a_column(data):
    with pytest.raises(DataError, match="'log' is a function"):
        build_frame("y ~ log + (1 | g)", data)


def test_names_from_the_library_do_not_leak_into_formulas(data):
    for name in ["np", "pd", "sub", "df", "mf", "warnings"]:
        with pytest.raises(DataError, match=f"unknown column '{name}'"):
            build_frame(f"y ~ I({name}) + (1 | g)", data)


def test_non_numeric_response(data):
    df = data.assign(y=data.y.astype(str))
    with pytest.raises(DataError, match=r"response 'y' must be numeric.*type str.*to_numeric"):
        build_frame("y ~ x + (1 | g)", df)
    with pytest.raises(DataError, match=r"response 'log\(y\)' must be numeric.*column 'y'"):
        build_frame("log(y) ~ x + (1 | g)", df.assign(y="a"))


def test_response_of_numbers_as_text_with_a_typo(data):
    # found by tests/test_cli_hypothesis.py: one stray value in a CSV's response column made
    # it text, and the message showed a number as the example of what is not numeric
    df = data.assign(y=data.y.astype(str))
    df.loc[7, "y"] = "12,5"
    with pytest.raises(DataError) as info:
        build_frame("y ~ x + (1 | g)", df)
    msg = str(info.value)
    assert "column 'y' holds numbers as text" in msg and "'12,5' in row 7" in msg
    assert "categorical" not in msg
    df = data.assign(y=["a" if i % 2 else str(v) for i, v in enumerate(data.y)])
    with pytest.raises(DataError, match=r"response 'y' must be numeric.*\(e\.g\. 'a'\)"):
        build_frame("y ~ x + (1 | g)", df)


def test_factor_with_very_many_levels_among_the_fixed_effects(data, monkeypatch):
    # an id column as a fixed effect: 20,000 levels in 100,000 rows made a 16 GB X (a
    # MemoryError, after minutes); 5,000 levels in 10,000 rows took 4 minutes
    import multilevel.data.checks as frame

    df = data.assign(id=[f"i{i}" for i in range(len(data))], num=np.arange(len(data)))
    monkeypatch.setattr(frame, "MAX_FIXED_BYTES", 59 * 58 * 8 - 1)
    for formula, name in [("y ~ x + id + (1 | g)", "id"), ("y ~ C(num) + (1 | g)", "num")]:
        with pytest.raises(DataError) as info:
            build_frame(formula, df)
        assert f"the factor '{name}' has 60 levels" in str(info.value)
        assert f"did you mean a random effect '(1 | {name})'?" in str(info.value)
    build_frame("y ~ x + num + (1 | g)", df)  # numeric: one column
    monkeypatch.setattr(frame, "MAX_FIXED_BYTES", 10**9)
    monkeypatch.setattr(frame, "MANY_LEVELS", 3)
    with pytest.warns(UserWarning, match="'h' has 4 levels.*'\\(1 \\| h\\)'"):
        build_frame("y ~ x + h + (1 | g)", data)


def test_constant_response(data):
    with pytest.raises(DataError, match=r"same value \(2\) in all 60 rows"):
        build_frame("y ~ x + (1 | g)", data.assign(y=2.0))


def test_one_level_grouping_factor(data):
    with pytest.raises(DataError, match=r"'g' of the term \(1 \| g\) has 1 level \(only 'a'\)"):
        build_frame("y ~ x + (1 | g)", data.assign(g="a"))


def test_one_level_after_dropping_missing(data):
    df = data.copy()
    df.loc[df.g != "a", "x"] = np.nan
    with pytest.raises(DataError, match="has 1 level"):
        build_frame("y ~ x + (1 | g)", df)


@pytest.mark.parametrize(
    "formula, term, count, levels, k, n",
    [
        ("y ~ x + (1 | id)", r"\(1 \| id\)", 12, 12, 1, 12),
        ("y ~ x + (1 + x | g)", r"\(1 \+ x \| g\)", 12, 6, 2, 12),
        ("y ~ x + (1 + x + z | g)", r"\(1 \+ x \+ z \| g\)", 18, 6, 3, 12),
    ],
)
def test_as_many_random_effects_as_observations(formula, term, count, levels, k, n):
    df = make_data(n_groups=6, per_group=2)
    df["id"] = np.arange(len(df))
    with pytest.raises(DataError) as info:
        build_frame(formula, df)
    msg = str(info.value)
    assert re.search(term, msg)
    assert f"has {count} random effects ({levels} levels x {k})" in msg
    assert f"not fewer than the {n} observations" in msg


def test_one_fewer_random_effect_than_observations_is_allowed():
    df = make_data(n_groups=6, per_group=2)
    df = df.iloc[:-1]  # 11 rows, 6 levels x 2 = 12 random effects: refused
    with pytest.raises(DataError, match="12 random effects"):
        build_frame("y ~ x + (1 + x | g)", df)
    df = make_data(n_groups=5, per_group=3)  # 15 rows, 5 x 2 = 10: allowed
    assert build_frame("y ~ x + (1 + x | g)", df).reterms[0].k == 2


def test_fixed_and_random_effects_that_fit_every_observation_are_refused():
    # found by tests/test_fit_hypothesis.py: 4 rows, 3 fixed effects and 2 groups; each
    # term passes the check above, but [X Z] has rank 4 = n, the ML deviance had no minimum
    # (it falls without bound as the variance of g grows) and the fit claimed convergence
    df = pd.DataFrame(
        {
            "y": [3.358459, 2.456435, 3.113218, 1.305242],
            "x": [0.125730, -0.132105, 0.640423, 0.104900],
            "w": [0.626540, 0.825511, 0.213272, 0.458993],
            "g": ["G0", "G0", "G1", "G1"],
            "h": [1, 1, 1, 2],
        }
    )
    for formula in ["y ~ x + w + (1 | g)", "y ~ x + w + (1 | g) + (1 | h)"]:
        with pytest.raises(DataError, match=r"fit all 4 observations exactly \(rank 4\)"):
            fit_quiet(formula, df, reml=False)
    # one row more leaves a residual degree of freedom: fitted
    df5 = pd.concat([df, df.iloc[[0]].assign(y=3.0)], ignore_index=True)
    assert np.isfinite(fit_quiet("y ~ x + w + (1 | g)", df5, reml=False).objective)


@pytest.mark.parametrize(
    "column, formula, words",
    [
        ("y", "y ~ x + (1 | g)", "the response 'y' has 1 infinite value, the first in row 7"),
        ("x", "y ~ x + (1 | g)", "fixed-effects column 'x' has 1 infinite value"),
        ("z", "y ~ x + (1 + z | g)", r"term (1 + z | g), the column 'z' has 1 infinite"),
    ],
)
def test_infinite_values(data, column, formula, words):
    df = data.copy()
    df.loc[7, column] = -np.inf if column == "x" else np.inf
    with pytest.raises(DataError) as info:
        build_frame(formula, df)
    assert words in str(info.value)


def test_nan_produced_by_a_transform(data):
    df = data.assign(w=data.x)  # about half negative
    nneg = int((df.w < 0).sum())
    with np.errstate(invalid="ignore"), pytest.raises(DataError) as info:
        build_frame("y ~ log(w) + (1 | g)", df)
    msg = str(info.value)
    assert f"'log(w)' has {nneg} NaN values" in msg
    with np.errstate(invalid="ignore"), pytest.raises(DataError, match=r"'sqrt\(w\)' has \d+ NaN"):
        build_frame("y ~ 1 + (sqrt(w) | g)", df)


def test_log_of_zero_is_infinite(data):
    df = data.copy()
    df.loc[[3, 4], "z"] = 0.0
    match = r"'log\(z\)' has 2 infinite values, the first in row 3"
    with np.errstate(divide="ignore"), pytest.raises(DataError, match=match):
        build_frame("y ~ log(z) + (1 | g)", df)


@pytest.mark.parametrize(
    "column, formula, words",
    [
        # found by tests/test_cli_hypothesis.py (a cell of 4.03e163 in a CSV): an internal
        # error (no finite deviance); a predictor at 1e160 was 'dropped as rank deficient'
        ("y", "y ~ x + (1 | g)", "the response 'y' has a value too large"),
        ("x", "y ~ x + (1 | g)", "the fixed-effects column 'x' has a value too large"),
        ("x", "y ~ 1 + (x | g)", "in the random-effects term (x | g), the column 'x'"),
    ],
)
def test_values_too_large_to_square(data, column, formula, words):
    df = data.copy()
    df.loc[7, column] = 1e160
    with pytest.raises(DataError) as info:
        build_frame(formula, df)
    assert words in str(info.value) and "1e+160 in row 7" in str(info.value)
    df.loc[7, column] = 1e149  # below the limit
    fr = build_frame(formula, df)
    assert 1e149 in (fr.y if column == "y" else np.concatenate([fr.X, fr.reterms[0].Z], axis=1))


def test_mixed_types_in_a_column(data):
    df = data.copy()
    df["x"] = df.x.astype(object)
    df.loc[4, "x"] = "n/a"
    with pytest.raises(DataError, match=r"column 'x' mixes value types \(59 number, 1 str\)"):
        build_frame("y ~ x + (1 | g)", df)
    df = data.copy()
    df["g"] = df.g.astype(object)
    df.loc[2, "g"] = 17
    with pytest.raises(DataError, match=r"column 'g' mixes value types.*17 in row 2"):
        build_frame("y ~ x + (1 | g)", df)


def test_duplicated_column_names(data):
    df = pd.concat([data, data[["x"]]], axis=1)
    with pytest.raises(DataError, match="column 'x' appears 2 times"):
        build_frame("y ~ x + (1 | g)", df)
    # a duplicated column the model does not use is no problem
    build_frame("y ~ z + (1 | g)", df)


def test_empty_data(data):
    with pytest.raises(DataError, match="the data has no rows"):
        build_frame("y ~ x + (1 | g)", data.iloc[:0])
    with pytest.raises(DataError, match="the data has no columns"):
        build_frame("y ~ x + (1 | g)", pd.DataFrame())


@pytest.mark.parametrize("bad", [None, [1, 2, 3], "data.csv", 3.0])
def test_not_a_table(bad):
    with pytest.raises(DataError, match="data must be a table"):
        build_frame("y ~ x + (1 | g)", bad)


def test_dict_with_unequal_columns():
    with pytest.raises(DataError, match=r"column lengths: 'y': 2, 'x': 3"):
        build_frame("y ~ x + (1 | g)", {"y": [1, 2], "x": [1, 2, 3]})


def test_no_random_effects(data):
    with pytest.raises(FormulaError, match="no random-effects term"):
        multilevel.fit("y ~ x", data)


def test_random_term_without_columns(data):
    with pytest.raises(FormulaError, match=r"term \(0 \| g\) has no columns"):
        build_frame("y ~ x + (0 | g)", data)


def test_errors_from_fit_are_multilevel_errors(data):
    bad = [
        ("y ~ nope + (1 | g)", data),
        ("y ~ x + (1 | g", data),
        ("y ~ x + (1 | g)", data.assign(g="a")),
        ("y ~ np.exp(x) + (1 | g)", data),
    ]
    for formula, df in bad:
        with pytest.raises(MultilevelError):
            multilevel.fit(formula, df)


def test_numbers_as_text_with_a_typo(data):
    df = data.copy()
    df["x"] = df.x.astype(str)
    df.loc[3, "x"] = "oops"  # what read_csv makes of a numeric column with one typo
    with pytest.raises(DataError, match=r"column 'x' holds numbers as text.*'oops' in row 3"):
        build_frame("y ~ x + (1 | g)", df)
    # a grouping factor of mixed codes is fine, and so is an explicit categorical
    build_frame("y ~ 1 + (1 | x)", df.iloc[:30].assign(x=["1", "2", "2a"] * 10))
    df["x"] = df.x.astype("category")
    with pytest.raises(DataError, match="60 columns but there are only 60 observations"):
        build_frame("y ~ x + (1 | g)", df)


# -- memory: what the frame shares instead of copying ----------------------------------


def test_random_term_columns_are_views_of_the_fixed_columns(data):
    """(1 + x | g) beside y ~ x + z: Z is X's first two columns, not a copy of them."""
    fr = build_frame("y ~ x + z + (1 + x | g)", data)
    Z = fr.reterms[0].Z
    assert fr.xnames[:2] == ["(Intercept)", "x"] and fr.reterms[0].names == fr.xnames[:2]
    assert np.shares_memory(Z, fr.X)
    np.testing.assert_array_equal(Z, np.column_stack([np.ones(len(data)), data["x"]]))


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("y ~ z + (1 + x | g)", lambda d: np.column_stack([np.ones(len(d)), d["x"]])),
        ("y ~ x + z + (0 + z | g)", lambda d: d[["z"]].to_numpy()),
        (
            "y ~ x + z + (1 + log(z) | g)",
            lambda d: np.column_stack([np.ones(len(d)), np.log(d["z"])]),
        ),
        ("y ~ x + z + (z + x | g)", lambda d: np.column_stack([np.ones(len(d)), d["z"], d["x"]])),
    ],
)
def test_random_term_columns_not_in_the_fixed_part_are_built(data, formula, expected):
    """Columns X lacks (or has in another order) are built from the data, not borrowed."""
    fr = build_frame(formula, data)
    np.testing.assert_array_equal(fr.reterms[0].Z, expected(data))


def test_later_changes_to_the_callers_data_do_not_reach_the_fit():
    """The response is read from the caller's column without a copy where pandas allows;
    writing into the caller's frame afterwards must not change the fit's data."""
    d = make_data()
    fit = multilevel.fit("y ~ x + (1 | g)", d)
    y_before = fit.frame.y.copy()
    resid_before = fit.residuals.copy()
    d.loc[0, "y"] = 1e6
    d["y"] *= 2
    np.testing.assert_array_equal(fit.frame.y, y_before)
    np.testing.assert_array_equal(fit.residuals, resid_before)


@pytest.mark.parametrize(
    "formula", ["y ~ y + x + (1 | g)", "y ~ x + (1 + y | g)", "`y` ~ x + y + (1 | g)"]
)
def test_response_among_its_own_predictors_is_refused(data, formula):
    with pytest.raises(DataError, match="response 'y' also appears among the"):
        build_frame(formula, data)


def test_a_reference_level_that_does_not_exist_is_named_with_the_levels(data):
    with pytest.raises(
        FormulaError, match=r"'9'.*not among the provided levels.*'h' has levels 'p', 'q', 'r', 's'"
    ):
        build_frame("y ~ x + C(h, Treatment('9')) + (1 | g)", data)


@pytest.mark.parametrize("name", ["Sum", "Treatment", "Poly"])
def test_a_contrast_written_as_a_column_is_pointed_inside_C(data, name):
    with pytest.raises(
        DataError, match=rf"'{name}' is a contrast: use it inside C\(\), e.g. 'C\(g, {name}\)'"
    ):
        build_frame(f"y ~ x + {name} + (1 | g)", data)


@pytest.mark.parametrize(
    "formula",
    ["scale(y) ~ x + y + (1 | g)", "I(y * 2) ~ (1 + x | g) + y", "y ~ x + I(3 * y) + (1 | g)"],
)
def test_fixed_effects_that_reproduce_the_response_are_refused(data, formula):
    """A transform of the response among the predictors (found by the property tests: it
    ended in an AttributeError, or a LinAlgError in the convergence check)."""
    with pytest.raises(DataError, match="reproduce the response .* exactly"):
        multilevel.fit(formula, data)
