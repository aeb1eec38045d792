"""Bounded work (issue 14): a formula from an untrusted source is refused at once, by our own
error naming the term, the size it would have and the limit, before formulaic parses,
expands or builds anything too large: the length and nesting of the text, Python
expressions too deep for Python's parser, term algebra that expands without bound, and
model matrices beyond what the data can identify or beyond the memory budget."""

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from formulaic import Formula
from hypothesis import given
from hypothesis import strategies as st

import multilevel
from multilevel.data import checks
from multilevel.errors import DataError, FormulaError
from multilevel.spec import limits, parse_formula
from multilevel.spec.parsing import check_bounded, formulaic_formula, formulaic_tokens

# -- the issue's examples -------------------------------------------------------------------


def issue_data(n: int = 60) -> pd.DataFrame:
    """60 rows, numeric x (all distinct), 6 groups: the data of the issue's examples."""
    rng = np.random.default_rng(14)
    g = np.arange(n) % 6
    return pd.DataFrame(
        {
            "y": rng.normal(size=n) + 0.3 * g,
            "x": rng.normal(size=n),
            "g": [f"g{v}" for v in g],
        }
    )


DEEP = "y ~ " + "(" * 3000 + "x" + ")" * 3000 + " + (1 | g)"
EXAMPLES = [
    (
        "y ~ bs(x, df=1000000) + (1 | g)",
        DataError,
        r"the term 'bs\(x, df=1000000\)' asks for a spline of 1,000,000 degrees of freedom, "
        r"but 'x' has only 60 distinct values.*at most 59 here",
    ),
    (
        "y ~ poly(x, 100000) + (1 | g)",
        DataError,
        r"the term 'poly\(x, 100000\)' asks for a polynomial of degree 100,000, but 'x' has only "
        r"60 distinct values: the degree must be less than.*at most 59 here",
    ),
    (DEEP, FormulaError, r"brackets are nested more than 50 deep .*at most 50 deep"),
]


@pytest.mark.parametrize("formula, error, message", EXAMPLES, ids=["bs", "poly", "nesting"])
def test_the_issues_examples_are_refused_by_our_error_in_python(formula, error, message):
    with pytest.raises(error, match=message) as info:
        multilevel.fit(formula, issue_data())
    line = info.value.one_line()
    assert "\n" not in line and len(line) < 400  # never the 6,000-character formula


def test_the_issues_examples_answer_quickly_through_the_cli(tmp_path):
    # every example in one process, bounded by a timeout: before, bs() ran for minutes
    # (memory growing), poly() took 10-12 s and the nesting was an internal error (status 1)
    path = tmp_path / "d.csv"
    issue_data().to_csv(path, index=False)
    spanish = tmp_path / "es.csv"
    issue_data().rename(columns={"y": "puntuación", "g": "escuela_año"}).to_csv(
        spanish, index=False
    )
    code = textwrap.dedent(
        """
        import contextlib, io, json, sys
        from multilevel.cli import main
        out = []
        for path, formula in json.loads(sys.argv[1]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(["fit", path, formula])
            out.append([code, err.getvalue()])
        print(json.dumps(out))
        """
    )
    cases = [[str(path), f] for f, _, _ in EXAMPLES]
    cases.append([str(spanish), "puntuación ~ x + (1 | escuela_año)"])
    run = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    results = json.loads(run.stdout)
    for (status, err), (_, _, message) in zip(results[:3], EXAMPLES, strict=True):
        assert status == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "internal error" not in err
        assert re.search(message, lines[0]), lines[0]
    assert results[3] == [0, ""]


def test_the_bs_example_returns_within_seconds_in_a_process_of_its_own(tmp_path):
    # bounded by a timeout: before the check it never returned (killed after 60 s)
    path = tmp_path / "d.csv"
    issue_data().to_csv(path, index=False)
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from multilevel.cli import main; sys.exit(main())"]
        + ["fit", str(path), EXAMPLES[0][0]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2, run.stderr
    assert "asks for a spline of 1,000,000 degrees of freedom" in run.stderr


# -- the text: length and nesting --------------------------------------------------------------


def test_a_formula_longer_than_the_limit_is_refused_without_repeating_it(monkeypatch):
    text = "y ~ " + " + ".join(["x"] * 3000) + " + (1 | g)"
    assert len(text) > limits.MAX_FORMULA_LENGTH
    with pytest.raises(
        FormulaError, match=rf"has {len(text):,} characters; .* most 10,000"
    ) as info:
        parse_formula(text)
    assert len(str(info.value)) < 200
    monkeypatch.setattr(limits, "MAX_FORMULA_LENGTH", 20_000)
    assert parse_formula(text).fixed_columns == {"x"}


def test_nesting_up_to_the_limit_fits_and_beyond_it_is_refused(monkeypatch):
    df = issue_data()
    depth = limits.MAX_NESTING_DEPTH
    ok = "y ~ " + "(" * depth + "x" + ")" * depth + " + (1 | g)"
    assert list(multilevel.fit(ok, df).fixef.index) == ["(Intercept)", "x"]
    deeper = "y ~ " + "(" * (depth + 1) + "x" + ")" * (depth + 1) + " + (1 | g)"
    with pytest.raises(FormulaError, match=rf"nested more than {depth} deep \(at column 55\)"):
        parse_formula(deeper)
    # brackets of every kind count, quotes do not
    with pytest.raises(FormulaError, match="nested more than"):
        parse_formula("y ~ I(" + "{" * 60 + "x" + "}" * 60 + ") + (1 | g)")
    limits.check_text("y ~ x + I('" + "(" * 80 + "') + (1 | g)")  # inside quotes: text
    monkeypatch.setattr(limits, "MAX_NESTING_DEPTH", 3)
    with pytest.raises(FormulaError, match="nested more than 3 deep"):
        parse_formula("y ~ ((((x)))) + ((1 | g))")
    assert parse_formula("y ~ (((x))) + ((1 | g))").fixed_columns == {"x"}


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + I(" + " + ".join(["x"] * 150) + ") + (1 | g)",
        "y ~ x + {" + "**".join(["1"] * 150) + "} + (1 | g)",
        "y ~ x + I(" + "-" * 150 + "x) + (1 | g)",
        "y ~ x + log(" + " + ".join(["x"] * 150) + ") + (1 | g)",
        "I(" + " + ".join(["y"] * 150) + ") ~ x + (1 | g)",
        "y ~ x + (I(" + " * ".join(["x"] * 150) + ") | g)",
        "y ~ x + offset(" + " + ".join(["x"] * 150) + ") + (1 | g)",
    ],
    ids=["I", "braces", "unary", "call", "response", "random", "offset"],
)
def test_python_expressions_too_deep_for_pythons_parser_are_refused(formula):
    # Python's parser nests one level per operator: 1,000 of them were a RecursionError
    # (an internal error); the allow-list and formulaic parse every such expression
    with pytest.raises(FormulaError, match=r"operators and nested brackets; .* at most 100"):
        multilevel.fit(formula, issue_data())


def test_a_python_expression_within_the_limit_is_fine():
    fit = multilevel.fit("y ~ I(" + " + ".join(["x"] * 40) + ") + (1 | g)", issue_data())
    assert fit.fixef.iloc[1] == pytest.approx(
        multilevel.fit("y ~ x + (1 | g)", issue_data()).fixef.iloc[1] / 40
    )


def test_the_parse_itself_is_bounded_wherever_formulaic_parses():
    # formulaic_formula is the one door to formulaic's parser (the two-level form's group
    # formula goes through it too)
    with pytest.raises(FormulaError, match="at most 100"):
        formulaic_formula("I(" + "+".join(["x"] * 500) + ")")
    with pytest.raises(FormulaError, match="at most 10,000"):
        formulaic_formula("*".join(f"x{i}" for i in range(20)))
    with pytest.raises(FormulaError, match="operators and nested brackets"):  # keywords nest
        formulaic_formula("I(" + "not " * 150 + "x)")


def test_the_two_level_group_formula_is_bounded():
    df = issue_data().assign(u=lambda d: d.groupby("g").x.transform("mean"))
    group_formula = "~ " + "*".join(["u"] * 20)
    with pytest.raises(FormulaError, match="'u\\*u.*' expands into 16,383 terms"):
        multilevel.fit("y ~ x", df, group="g", group_formula=group_formula)


# -- the term algebra ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula, count",
    [
        ("y ~ " + "*".join(f"x{i}" for i in range(14)) + " + (1 | g)", "16,383"),
        ("y ~ (" + " + ".join(f"x{i}" for i in range(20)) + ")^5 + (1 | g)", "3,200,000"),
        ("y ~ (x + z)^1000000 + (1 | g)", "more than 1e15"),
        ("y ~ (x + z) ** 40 + (1 | g)", "1,099,511,627,776"),
        ("y ~ x + (a + b + c + d + e + f + h)^5 + (1 | g)", "16,807"),
        ("y ~ x + (" + "*".join(f"x{i}" for i in range(14)) + " | g)", "16,383"),
    ],
    ids=["star", "power-of-sum", "huge-power", "pow-40", "power-7", "random"],
)
def test_term_algebra_that_expands_too_far_is_refused_before_formulaic_expands_it(formula, count):
    # before: x1*...*x18 took 5 s in formulaic's parse, (20 terms)^5 and (a + b)^1000000
    # never ended
    with pytest.raises(FormulaError, match=rf"expands into {count} terms .* at most 10,000"):
        parse_formula(formula)


def test_term_algebra_within_the_limit_parses(monkeypatch):
    mf = parse_formula("y ~ " + "*".join(f"x{i}" for i in range(13)) + " + (1 | g)")
    assert len(mf.fixed_columns) == 13
    parse_formula("y ~ (a + b + c)^3 + a*b*c*d + (1 | g)")
    monkeypatch.setattr(limits, "MAX_TERMS", 100)
    with pytest.raises(FormulaError, match="expands into 127 terms .* at most 100"):
        parse_formula("y ~ " + "*".join(f"x{i}" for i in range(7)) + " + (1 | g)")


def _algebra(depth: int = 3):
    leaf = st.sampled_from(["a", "b", "c", "d", "1", "0", "log(a)", "{a + b}", "`x y`", "C(g)"])
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            inner.map(lambda t: f"({t})"),
            st.tuples(st.sampled_from(["-", "+"]), inner).map("".join),
            st.tuples(
                inner,
                st.sampled_from(["+", "-", "*", "/", ":", "%in%", " + ", "*-", "+-", "-+"]),
                inner,
            ).map("".join),
            st.tuples(
                inner, st.sampled_from(["^", "**"]), st.sampled_from(["1", "2", "3", "(2)", "a"])
            ).map("".join),
        ),
        max_leaves=8,
    )


@given(_algebra())
def test_the_count_bounds_formulaics_expansion(rhs):
    # the check is an upper bound on the terms formulaic makes (with the intercept it adds)
    spec = f"y ~ {rhs}"
    try:
        parsed = Formula(spec)
    except Exception:  # noqa: BLE001 - formulaic refuses it: nothing is expanded
        return
    made = len(list(parsed.lhs)) + len(list(parsed.rhs))
    assert made <= limits.check_expansion(formulaic_tokens(spec), spec) + 1


def test_check_bounded_passes_what_formulaic_refuses_to_formulaic():
    check_bounded("x ~ 'unterminated")  # formulaic's own message, later


# -- poly() and bs(): sizes written in the formula -------------------------------------------


@pytest.mark.parametrize(
    "term, message",
    [
        ("poly(x, z)", r"the degree of 'poly\(x, z\)' must be a whole number"),
        ("poly(x, 0)", "of at least 1"),
        ("poly(x, 2.5)", "whole number"),
        ("poly(x, True)", "whole number"),
        ("poly(x, degree=-3)", "of at least 1"),
        ("poly(x, 2, raw=1)", "raw= .* must be True or False"),
        ("poly(x, 2, scale=True)", "poly\\(\\) has no argument 'scale'"),
        ("poly(x, 2, True, 4)", "has 4 arguments; poly\\(\\) takes at most 3"),
        ("poly(degree=2)", "needs the column to expand"),
        ("bs(x, knots=3)", "knots= .* needs a list of numbers, which a formula cannot hold"),
        ("bs(x, df=5, degree=11)", r"from 0 to 10 .*MAX_SPLINE_DEGREE"),
        ("bs(x, df=z)", "degrees of freedom of .* must be a whole number"),
        ("bs(x, df=0)", "of at least 1"),
        ("bs(x, df=2, degree=3)", "asks for 2 degrees of freedom, fewer than its degree 3"),
        ("bs(x, df=3, include_intercept=True)", r"degree 3 \+ 1 \(the intercept\)"),
        ("bs(x, df=3, df=4)", "gives 'df' twice|keyword argument repeated|not a valid"),
        ("log(poly(x, z))", "the degree of"),
    ],
)
def test_the_size_of_a_basis_must_be_written_as_a_whole_number(term, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(f"y ~ {term} + (1 | g)")


def test_bases_within_the_data_fit():
    df = issue_data()
    fit = multilevel.fit("y ~ bs(x, df=6, degree=2) + (1 | g)", df)
    assert len(fit.fixef) == 1 + 6
    df["z"] = np.random.default_rng(1).normal(size=len(df))
    fit = multilevel.fit("y ~ bs(x, degree=2 + 1) + poly(z, degree=2, raw=True) + (1 | g)", df)
    assert len(fit.fixef) == 1 + 3 + 2


@pytest.mark.parametrize(
    "formula, message",
    [
        ("y ~ poly(x, 6) + (1 | g)", r"'x' has only 6 distinct values: .*\(at most 5 here\)"),
        ("y ~ bs(x, df=6) + (1 | g)", r"spline of 6 degrees of freedom, but 'x' has only 6"),
        ("y ~ log(poly(z, 6)) + (1 | g)", r"'z' has only 6 distinct values"),
        ("y ~ poly(x * z, 12) + (1 | g)", r"the columns 'x', 'z' have only 6 distinct rows"),
        ("poly(y, 61) ~ x + (1 | g)", r"'y' has only 60 distinct values"),
        ("y ~ x + (poly(x, 7) | g)", r"degree 7, but 'x' has only 6"),
        ("y ~ x + offset(bs(x, df=6)) + (1 | g)", r"'x' has only 6 distinct values"),
        ("y ~ poly(1, 2) + (1 | g)", "its argument is a constant: .*nothing to expand"),
    ],
)
def test_a_basis_beyond_the_distinct_values_is_refused_before_it_is_built(formula, message):
    df = issue_data().assign(
        x=lambda d: np.arange(60) % 6 + 1.0, z=lambda d: np.arange(60) % 6 + 2.0
    )
    with pytest.raises(DataError, match=message):
        multilevel.fit(formula, df)


# -- the size of the model matrices ----------------------------------------------------------


def factors_data(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "a": [f"a{i}" for i in rng.integers(0, 20, n)],
            "b": [f"b{i}" for i in rng.integers(0, 20, n)],
            "id": [f"p{i}" for i in range(n)],
            "g": rng.integers(0, 8, n),
        }
    )


def test_fixed_effects_of_more_columns_than_rows_are_refused_before_they_are_built():
    # a:b would make (20 - 1) x (20 - 1) = 361 indicator columns or more for 200 rows
    with pytest.raises(DataError) as info:
        multilevel.fit("y ~ x + a:b + (1 | g)", factors_data())
    msg = str(info.value)
    assert "the fixed effects would have at least 363 columns" in msg
    assert "(the term 'a:b' alone at least 361 ('a' has 20 levels, 'b' has 20 levels))" in msg
    assert "only 200 observations" in msg


def test_a_term_beyond_the_memory_budget_is_refused_naming_its_size(monkeypatch):
    df = factors_data()
    monkeypatch.setattr(checks, "MAX_MATRIX_BYTES", 100_000)
    with pytest.raises(DataError) as info:
        multilevel.fit("y ~ x + a:b + (1 | g)", df)
    msg = str(info.value)
    assert (
        "the term 'a:b' of the fixed effects would make at least 361 columns of 200 rows "
        "(0.6 MB) ('a' has 20 levels, 'b' has 20 levels), more than the memory budget of "
        "0.1 MB for a model matrix" in msg
    )
    assert "MULTILEVEL_MAX_MATRIX_BYTES" in msg
    # one factor alone: check_fixed_factors' message (it suggests a random effect)
    with pytest.raises(DataError, match="did you mean a random effect"):
        multilevel.fit("y ~ x + C(id, Sum) + (1 | g)", df)


def test_the_budget_is_set_by_an_environment_variable(monkeypatch):
    # for the command line and services; it wins over the module's default
    df = factors_data()
    monkeypatch.setenv("MULTILEVEL_MAX_MATRIX_BYTES", "1e9")
    assert checks.matrix_budget() == 10**9
    monkeypatch.setenv("MULTILEVEL_MAX_MATRIX_BYTES", "20000")
    with pytest.raises(
        DataError,
        match=r"the term 'a' of the random-effects term \(0 \+ a \| g\) would make at least 19 "
        r"columns of 200 rows \(30.4 kB\) \('a' has 20 levels\), more than the memory budget of "
        r"20.0 kB",
    ):
        multilevel.fit("y ~ x + (0 + a | g)", df)
    monkeypatch.setenv("MULTILEVEL_MAX_MATRIX_BYTES", "lots")
    with pytest.raises(DataError, match="MULTILEVEL_MAX_MATRIX_BYTES must be a number of bytes"):
        multilevel.fit("y ~ x + (1 | g)", df)


def test_the_whole_fixed_effects_matrix_is_within_the_budget(monkeypatch):
    monkeypatch.setattr(checks, "MAX_MATRIX_BYTES", 200 * 8 * 30)
    with pytest.raises(
        DataError,
        match=r"^the fixed effects would make at least 39 columns of 200 rows \(62.4 kB\), more "
        r"than the memory budget of 48.0 kB",
    ):
        multilevel.fit("y ~ a + b + (1 | g)", factors_data())


def test_an_expression_that_may_be_categorical_counts_its_inputs_distinct_values(monkeypatch):
    # '{a + b}' joins the labels: one level per pair; counted as at most the distinct (a, b)
    monkeypatch.setattr(checks, "MAX_MATRIX_BYTES", 200 * 8 * 100)
    with pytest.raises(DataError, match=r"the term '\{a \+ b\}' .* would make up to 1\d\d columns"):
        multilevel.fit("y ~ x + {a + b} + (1 | g)", factors_data())


def test_random_effects_of_as_many_as_rows_are_refused_before_they_are_built():
    # lme4's check (levels x columns < observations), before Z is built
    df = factors_data()
    with pytest.raises(DataError) as info:
        multilevel.fit("y ~ x + (0 + id | g)", df)
    msg = str(info.value)
    assert "the term (0 + id | g) would have at least 1592 random effects" in msg
    assert "(8 levels x 199 ('id' has 200 levels))" in msg
    assert "not fewer than the 200 observations" in msg
    with pytest.raises(DataError, match=r"the term \(1 \+ poly\(x, 30\) \| g\) has 248 random"):
        multilevel.fit("y ~ x + (1 + poly(x, 30) | g)", df)


def test_random_effects_beyond_the_budget(monkeypatch):
    monkeypatch.setattr(checks, "MAX_MATRIX_BYTES", 200 * 8 * 10)
    with pytest.raises(DataError, match=r"the term 'a' of the random-effects term \(0 \+ a \| g\)"):
        multilevel.fit("y ~ x + (0 + a | g)", factors_data())


def test_designs_within_the_limits_are_untouched():
    df = factors_data()
    fit = multilevel.fit("y ~ x * C(a, Sum) + (1 + x | g)", df)
    assert len(fit.fixef) == 40
    assert multilevel.fit("y ~ x + (1 | g) + (1 | a:b)", df).ngroups["a:b"] > 100


def test_nothing_is_built_before_the_sizes_are_checked(monkeypatch):
    # the refusals come from the sizes alone: formulaic's model matrix is never called
    from multilevel.data import materialize

    def never(*args, **kwargs):
        raise AssertionError("a model matrix was built before its size was checked")

    monkeypatch.setattr(materialize, "model_matrix", never)
    for formula in ["y ~ bs(x, df=1000000) + (1 | g)", "y ~ x + (1 + poly(x, 100000) | g)"]:
        with pytest.raises(DataError, match="distinct values"):
            multilevel.fit(formula, issue_data())
    with pytest.raises(DataError, match="would have at least 363 columns"):
        multilevel.fit("y ~ x + a:b + (1 | g)", factors_data())
