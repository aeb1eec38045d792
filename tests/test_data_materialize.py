"""Model matrices of simple formulas built without formulaic (multilevel.data.simple) against
formulaic's: the same values (exactly), names, column and term order, the same fits and
predictions, the same errors; other formulas and column types still go through formulaic."""

import random
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel.data import build_frame
from multilevel.data.materialize import LazySpec, model_matrix
from multilevel.data.simple import simple_design
from multilevel.datasets import load
from multilevel.errors import DataError, FormulaError
from multilevel.spec import simple as simple_module

NUMERIC = {
    "x": lambda rng, n: rng.integers(-5, 6, n).astype(np.int64),
    "z": lambda rng, n: rng.normal(size=n).astype(np.float32),
    "w": lambda rng, n: rng.integers(0, 200, n).astype(np.uint8),
    "h": lambda rng, n: (rng.normal(size=n) * 3).astype(np.float16),
    "a b": lambda rng, n: rng.normal(10, 4, n),
    "a.b": lambda rng, n: rng.integers(-(2**40), 2**40, n).astype(np.int64),
    "u16": lambda rng, n: rng.integers(0, 60000, n).astype(np.uint16),
    "i32": lambda rng, n: rng.integers(-(2**31), 2**31 - 1, n).astype(np.int32),
    "big": lambda rng, n: rng.integers(2**62, 2**63 - 1, n, dtype=np.int64),
}
QUOTED = {"a b": "`a b`"}


def make_data(seed: int, n: int = 120, nan: bool = True) -> pd.DataFrame:
    """Random numeric columns of many types, two grouping factors, a few missing values and
    row labels that are not 0..n-1; the columns in a random order."""
    rng = np.random.default_rng(seed)
    cols = {name: make(rng, n) for name, make in NUMERIC.items()}
    cols["g"] = rng.choice([f"s{i}" for i in range(8)], n)
    cols["k"] = rng.integers(0, 5, n)
    cols["y"] = (
        rng.normal(size=n) * 2
        + cols["x"]
        + cols["z"]
        + rng.normal(size=8)[np.searchsorted(np.unique(cols["g"]), cols["g"])]
    )
    df = pd.DataFrame(cols, index=rng.permutation(np.arange(1000, 1000 + n)))
    if nan:
        for c in ("y", "a b", "z"):
            df.loc[df.index[rng.integers(0, n, 3)], c] = np.nan
    order = list(df.columns)
    rng.shuffle(order)
    return df[order]


def both_frames(text: str, data, monkeypatch, **kwargs):
    fast = build_frame(text, data, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(simple_module, "FAST_PATH", False)
        slow = build_frame(text, data, **kwargs)
    return fast, slow


def assert_same_array(a: np.ndarray, b: np.ndarray):
    assert a.dtype == b.dtype == np.float64
    assert a.shape == b.shape
    assert a.flags.f_contiguous == b.flags.f_contiguous
    np.testing.assert_array_equal(a, b, strict=True)


def assert_same_frames(fast, slow):
    assert_same_array(fast.y, slow.y)
    assert_same_array(fast.X, slow.X)
    assert fast.xnames == slow.xnames
    assert fast.schema.formula == slow.schema.formula
    assert fast.n_dropped == slow.n_dropped
    assert fast.dropped_columns == slow.dropped_columns
    assert [str(t.term) for t in fast.reterms] == [str(t.term) for t in slow.reterms]
    for a, b in zip(fast.reterms, slow.reterms, strict=True):
        assert a.names == b.names
        assert_same_array(a.Z, b.Z)
        assert np.shares_memory(a.Z, fast.X) == np.shares_memory(b.Z, slow.X)
        np.testing.assert_array_equal(a.codes, b.codes)
        assert list(a.levels) == list(b.levels)
        assert_same_spec(a.schema.spec, b.schema.spec)
    assert_same_spec(fast.fixed_spec, slow.fixed_spec)
    pd.testing.assert_frame_equal(fast.data, slow.data)


def assert_same_spec(a, b):
    assert repr(a.structure) == repr(b.structure)
    assert a.encoder_state == b.encoder_state
    assert tuple(a.column_names) == tuple(b.column_names)


SIMPLE_FORMULAS = [
    "y ~ x + (1 | g)",
    "y ~ 1 + (1 | g)",
    "y ~ x + z + (x | g)",
    "y ~ z + x + 1 + (1 + z | g)",
    "y ~ 0 + x + z + (0 + x | g)",
    "y ~ x - 1 + (1 | g)",
    "y ~ -1 + x + z + (1 | g)",
    "y ~ x + x + (x + x | g)",
    "y ~ x + z + (0 + x + z | g)",
    "y ~ x + z + (1 + z | g)",
    "y ~ `a b` + a.b + (`a b` | g)",
    "y ~ w + h + u16 + i32 + (h || g)",
    "y ~ big + x + (1 | g) + (0 + x | k)",
    "y ~ x + (1 + x || g/k)",
    "y ~ z + (z | g:k) + (1 | g)",
    "y ~ x + (0 | g) + (1 | k)",
    "y ~ 0 + (1 | g)",
]


@pytest.mark.parametrize("text", SIMPLE_FORMULAS)
@pytest.mark.parametrize("seed", [1, 2])
def test_simple_formulas_give_formulaic_matrices(text, seed, monkeypatch):
    df = make_data(seed)
    if "(0 | g)" in text:
        with pytest.raises(FormulaError, match="has no columns") as e1:
            build_frame(text, df)
        monkeypatch.setattr(simple_module, "FAST_PATH", False)
        with pytest.raises(FormulaError, match="has no columns") as e2:
            build_frame(text, df)
        assert str(e1.value) == str(e2.value)
        return
    fast, slow = both_frames(text, df, monkeypatch)
    assert_same_frames(fast, slow)
    assert isinstance(fast.fixed_spec, LazySpec)
    assert not isinstance(slow.fixed_spec, LazySpec)


def random_formula(rng: random.Random) -> str:
    names = [QUOTED.get(c, c) for c in NUMERIC]

    def part() -> str:
        atoms = [rng.choice(names) for _ in range(rng.randint(0, 3))]
        switch = rng.choice(["1", "0", "-1", None, None])
        if switch is not None or not atoms:
            atoms.insert(rng.randint(0, len(atoms)), switch or "1")
        text = atoms[0]
        for a in atoms[1:]:
            text += " - 1" if a == "-1" else f" + {a}"
        return text

    fixed = part()
    terms = []
    for _ in range(rng.randint(1, 2)):
        expr = part()
        while expr in ("0", "-1") or expr.startswith("0 + 1") or not expr.strip("-01 +"):
            expr = rng.choice(["1", "x", "z", "1 + z"])
        terms.append(f"({expr} {rng.choice(['|', '||'])} {rng.choice(['g', 'k'])})")
    parts = [fixed, *terms]
    rng.shuffle(parts)
    return "y ~ " + " + ".join(parts)


def test_random_simple_formulas_on_random_data(monkeypatch):
    rng = random.Random(3)
    checked = 0
    for i in range(60):
        text = random_formula(rng)
        df = make_data(100 + i, nan=bool(i % 2))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fast, slow = both_frames(text, df, monkeypatch)
        except (DataError, FormulaError) as e:  # e.g. a term without columns: same error
            monkeypatch.setattr(simple_module, "FAST_PATH", False)
            with pytest.raises(type(e)) as slow_error:
                build_frame(text, df)
            monkeypatch.setattr(simple_module, "FAST_PATH", True)
            assert str(slow_error.value) == str(e)
            continue
        assert_same_frames(fast, slow)
        checked += 1
    assert checked > 40


@pytest.mark.parametrize(
    "rhs",
    ["1", "0", "x", "x + z + 1", "0 + `a b` + w", "h + u16 - 1", "i32 + big + a.b + x + z"],
)
def test_simple_design_is_formulaic_model_matrix(rhs):
    df = make_data(5, nan=False)
    M, names = simple_design(rhs, df)
    mm = model_matrix(rhs, df)
    expected = np.asarray(mm, dtype=float)
    assert M.shape == expected.shape
    np.testing.assert_array_equal(M, expected, strict=True)
    assert names == ["(Intercept)" if c == "Intercept" else c for c in mm.columns]


def test_columns_that_are_not_plain_numbers_go_through_formulaic(monkeypatch):
    df = make_data(9, nan=False)
    df["flag"] = df["x"] > 0
    df["cat"] = pd.Categorical(df["k"])
    df["text"] = df["g"].str.upper()
    df["nullable"] = pd.array(df["x"].to_numpy(), dtype="Int64")
    df["nullf"] = pd.array(df["z"].to_numpy(dtype=float), dtype="Float64")
    for column in ("flag", "cat", "text", "nullable", "nullf"):
        assert simple_design(f"1 + {column}", df) is None
        for text in (
            f"y ~ {column} + x + (1 | g)",
            f"y ~ x + ({column} | g)",
            f"y ~ x + {column} + (x | g)",
        ):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fast, slow = both_frames(text, df, monkeypatch)
            assert_same_frames(fast, slow)


def test_random_term_columns_are_views_of_the_fixed_columns():
    fr = build_frame("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    assert isinstance(fr.fixed_spec, LazySpec)
    (rt,) = fr.reterms
    assert rt.Z.base is not None and np.shares_memory(rt.Z, fr.X)
    np.testing.assert_array_equal(rt.Z, fr.X)
    fr = build_frame("y ~ x + z + (0 + x + z | g) + (1 + z | k)", make_data(4))
    zx, zk = sorted(fr.reterms, key=lambda t: t.group)
    assert np.shares_memory(zx.Z, fr.X)
    np.testing.assert_array_equal(zx.Z, fr.X[:, 1:3])
    assert not np.shares_memory(zk.Z, fr.X)  # (Intercept), z: not consecutive in X


def test_the_checks_give_the_same_errors(monkeypatch):
    cases = []
    df = make_data(11, nan=False)
    df.loc[df.index[7], "a b"] = np.inf
    cases += [("y ~ `a b` + (1 | g)", df), ("y ~ x + (0 + `a b` | g)", df)]
    df = make_data(12, nan=False)
    df.loc[df.index[3], "z"] = np.float32(-np.inf)
    cases += [("y ~ z + (1 | g)", df)]
    df = make_data(13, nan=False)
    df["huge"] = df["a b"] * 1e155
    cases += [("y ~ huge + (1 | g)", df), ("y ~ x + (huge | g)", df)]
    df = make_data(14, nan=False)
    cases += [("y ~ y + x + (1 | g)", df), ("y ~ x + (y | g)", df), ("y ~ x + (0 + y || g)", df)]
    cases += [("y ~ x + (0 | g)", df), ("y ~ nothere + (1 | g)", df)]
    for text, data in cases:
        with pytest.raises((DataError, FormulaError)) as fast:
            build_frame(text, data)
        with monkeypatch.context() as m:
            m.setattr(simple_module, "FAST_PATH", False)
            with pytest.raises(type(fast.value)) as slow:
                build_frame(text, data)
        assert str(fast.value) == str(slow.value), text


def both_fits(text: str, data, monkeypatch, **kwargs):
    fast = multilevel.fit(text, data, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(simple_module, "FAST_PATH", False)
        slow = multilevel.fit(text, data, **kwargs)
    return fast, slow


def newdata_for(df: pd.DataFrame) -> pd.DataFrame:
    new = df.dropna().head(15).copy()
    new.loc[new.index[:3], "g"] = "unseen"
    return new.reset_index(drop=True)


@pytest.mark.parametrize(
    "text",
    [
        "y ~ x + z + (x | g)",
        "y ~ 1 + (1 | g)",
        "y ~ 0 + x + z + `a b` + (1 + z || g) + (1 | k)",
        "y ~ w + h + (0 + w | g)",
    ],
)
def test_fits_and_predictions_are_identical(text, monkeypatch):
    df = make_data(21)
    fast, slow = both_fits(text, df, monkeypatch)
    assert fast.objective == slow.objective
    pd.testing.assert_series_equal(fast.fixef, slow.fixef, check_exact=True)
    np.testing.assert_array_equal(fast.theta, slow.theta)
    assert fast.sigma == slow.sigma
    new = newdata_for(df)
    np.testing.assert_array_equal(fast.predict(new), slow.predict(new), strict=True)
    np.testing.assert_array_equal(fast.predict(), slow.predict())
    if fast.schema.formula.predictor_columns & {"x", "w", "z"}:  # formulaic's own message
        bad = new.assign(x="text", w="text", z="text")
        with pytest.raises(DataError) as e1:
            fast.predict(bad)
        with pytest.raises(DataError) as e2:
            slow.predict(bad)
        assert str(e1.value) == str(e2.value)


def test_weights_offsets_and_type3_are_identical(monkeypatch):
    df = make_data(31, nan=False)
    df["wt"] = np.random.default_rng(0).uniform(0.5, 2, len(df))
    df["off"] = np.random.default_rng(1).normal(size=len(df))
    fast, slow = both_fits(
        "y ~ x + z + (z | g)", df, monkeypatch, weights="wt", offset="off", reml=False
    )
    assert fast.objective == slow.objective
    pd.testing.assert_series_equal(fast.fixef, slow.fixef, check_exact=True)
    new = newdata_for(df)
    np.testing.assert_array_equal(fast.predict(new), slow.predict(new))
    pd.testing.assert_frame_equal(fast.anova(), slow.anova(), check_exact=True)
    pd.testing.assert_frame_equal(fast.test(), slow.test(), check_exact=True)
    assert fast.summary() == slow.summary()


def test_two_level_fits_are_identical(monkeypatch):
    df = make_data(41, nan=False)
    df["u"] = df.groupby("g")["a b"].transform("mean")
    kwargs = dict(group="g", group_formula="~ u")
    fast, slow = both_fits("y ~ x + z", df, monkeypatch, **kwargs)
    assert fast.lmm.objective == slow.lmm.objective
    pd.testing.assert_series_equal(fast.lmm.fixef, slow.lmm.fixef, check_exact=True)
    assert str(fast.summary()) == str(slow.summary())


def test_sleepstudy_is_fitted_without_formulaic():
    code = (
        "import sys\n"
        "import multilevel\n"
        "from multilevel.datasets import load\n"
        "m = multilevel.fit('Reaction ~ Days + (Days | Subject)', load('sleepstudy'))\n"
        "assert abs(m.objective - 1743.6283) < 1e-3, m.objective\n"
        "assert 'formulaic' not in sys.modules\n"
        "m = multilevel.fit('Reaction ~ log(Days + 1) + (1 | Subject)', load('sleepstudy'))\n"
        "assert list(m.fixef.index) == ['(Intercept)', 'log(Days + 1)'], m.fixef\n"
        "assert 'formulaic' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cli_fit_does_not_import_formulaic():
    code = (
        "import sys\n"
        "from multilevel.cli import main\n"
        "assert main(['fit', 'sleepstudy', 'Reaction ~ Days + (Days | Subject)']) == 0\n"
        "assert 'formulaic' not in sys.modules\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert "REML criterion at convergence: 1743.6283" in out


def test_the_lazy_spec_is_built_once_and_forwards_everything():
    fr = build_frame("y ~ x + z + (1 | g)", make_data(51))
    spec = fr.fixed_spec
    assert isinstance(spec, LazySpec)
    bound = spec.bound()
    assert spec.bound() is bound
    assert spec.structure is bound.structure
    assert spec.formula == bound.formula
    with pytest.raises(AttributeError):
        spec.__deepcopy__  # noqa: B018 - dunders are not forwarded (copy, pickle)
    with pytest.raises(AttributeError):
        spec.no_such_attribute  # noqa: B018


def test_keyword_columns(monkeypatch):
    df = make_data(61, nan=False).rename(columns={"x": "if", "z": "True"})
    with pytest.raises(FormulaError, match="keyword 'if'"):
        build_frame("y ~ if + (1 | g)", df)
    # quoted, a keyword is a column name (read by formulaic, never on the fast path)
    fast, slow = both_frames("y ~ `if` + `True` + (`if` | g)", df, monkeypatch)
    assert_same_frames(fast, slow)
    assert fast.xnames == ["(Intercept)", "if", "True"]
    assert not isinstance(fast.fixed_spec, LazySpec)
