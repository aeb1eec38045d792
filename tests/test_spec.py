"""The formula grammar (lme4's bar terms) and the allow-list that keeps formulas from running
code. Parsing only: nothing here fits a model, except the checks that refused formulas never
reach evaluation."""

import os
import re
import uuid

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel.errors import FormulaError, MultilevelError
from multilevel.spec import RandomTerm, parse_formula
from multilevel.spec.allowlist import check_expression
from multilevel.spec.contrasts import CONTRASTS
from multilevel.spec.functions import ALLOWED_FUNCTIONS
from multilevel.spec.parsing import parse_factors


def blocks(formula: str) -> list[tuple[str, str, bool]]:
    return [(rt.expr, rt.group, rt.correlated) for rt in parse_formula(formula).random]


# -- the grammar -------------------------------------------------------------------------


def test_intercept_bar():
    mf = parse_formula("y ~ x + (1 | g)")
    assert mf.response == "y"
    assert mf.fixed == "x"
    assert mf.random == (RandomTerm("1", ("g",), True),)
    assert mf.fixed_formula == "y ~ x"


def test_slope_bar_is_one_correlated_block():
    assert blocks("y ~ x + (1 + x | g)") == [("1 + x", "g", True)]


@pytest.mark.parametrize("formula", ["y ~ (x || g)", "y ~ (1 + x || g)"])
def test_double_bar_splits_into_uncorrelated_blocks(formula):
    assert blocks(formula) == [("1", "g", False), ("0 + x", "g", False)]


def test_double_bar_without_intercept():
    assert blocks("y ~ (0 + x + z || g)") == [("0 + x", "g", False), ("0 + z", "g", False)]


def test_double_bar_keeps_backticked_names_and_expressions():
    got = blocks("y ~ (1 + `a b` + I(x**2) + {x + 1} + x:z || g)")
    assert got == [
        ("1", "g", False),
        ("0 + `a b`", "g", False),
        ("0 + {I(x ** 2)}", "g", False),
        ("0 + {x + 1}", "g", False),
        ("0 + x:z", "g", False),
    ]


def test_nesting_slash_gives_lme4_names():
    mf = parse_formula("y ~ (1 | a/b)")
    assert [rt.factors for rt in mf.random] == [("a",), ("b", "a")]
    assert [rt.group for rt in mf.random] == ["a", "b:a"]
    assert str(mf.random[1]) == "(1 | b:a)"


def test_three_level_nesting():
    mf = parse_formula("y ~ (1 | a/b/c)")
    assert [rt.group for rt in mf.random] == ["a", "b:a", "c:b:a"]


def test_interaction_grouping_factor():
    mf = parse_formula("y ~ (1 | a:b)")
    assert [rt.factors for rt in mf.random] == [("a", "b")]
    assert mf.random[0].group == "a:b"


def test_double_bar_with_nesting():
    assert blocks("y ~ (x || a/b)") == [
        ("1", "a", False),
        ("0 + x", "a", False),
        ("1", "b:a", False),
        ("0 + x", "b:a", False),
    ]


def test_crossed_factors():
    assert blocks("y ~ (1|g1) + (1|g2)") == [("1", "g1", True), ("1", "g2", True)]


def test_several_terms_on_one_factor():
    assert blocks("y ~ x + (1 | g) + (0 + x | g)") == [("1", "g", True), ("0 + x", "g", True)]


def test_zero_inside_a_bar():
    assert blocks("y ~ (0 + x | g)") == [("0 + x", "g", True)]


@pytest.mark.parametrize(
    "formula, fixed",
    [
        ("y ~ x - 1 + (1|g)", "x - 1"),
        ("y ~ 0 + x + (1|g)", "0 + x"),
        ("y ~ -1 + x + (1|g)", "x - 1"),
        ("y ~ (1|g)", "1"),
        ("y ~ (1|g) + x*z", "x*z"),
        ("y ~ x:z + (1|g)", "x:z"),
        ("y ~ x + (1|g) + C(h)", "x + C(h)"),
        ("y ~ log(x) + I(x**2) + (1|g)", "log(x) + I(x**2)"),
        ("y ~ x + ((1 | g))", "x"),
    ],
)
def test_fixed_part(formula, fixed):
    assert parse_formula(formula).fixed == fixed


def test_backticked_grouping_factor():
    assert parse_formula("y ~ (1 | `my group`)").random[0].factors == ("my group",)


def test_response_expression():
    assert parse_formula("log(y) ~ x + (1 | g)").response == "log(y)"


@pytest.mark.parametrize("response", ["(y)", "((y))", "I(y - 1)", "{-y}", "log((y + 1))", "`a-b`"])
def test_response_expressions_without_formula_operators(response):
    assert parse_formula(f"{response} ~ x + (1 | g)").response == response


@pytest.mark.parametrize(
    "formula, op, position, hint",
    [
        # found by tests/test_formula_hypothesis.py: '-~0' crashed with AttributeError
        ("- ~ 0 + (1 | g)", "-", 0, "a column"),
        ("y - 1 ~ x + (1 | g)", "-", 2, "'I(y - 1)'"),  # formulaic fitted y, lme4 y - 1
        ("y^2 ~ x + (1 | g)", "^", 1, "'I(y**2)'"),  # formulaic fitted y
        ("y**2 ~ x + (1 | g)", "**", 1, "'I(y**2)'"),
        ("y:z ~ x + (1 | g)", ":", 1, "a column"),  # formulaic fitted y*z
        ("(y - 1) ~ x + (1 | g)", "-", 3, "'I((y - 1))'"),
        ("-y ~ x + (1 | g)", "-", 0, "'I(-y)'"),
        ("y %in% z ~ x + (1 | g)", "%in%", 2, "a column"),
        ("log(y) + z ~ x + (1 | g)", "+", 7, "'I(log(y) + z)'"),
    ],
)
def test_formula_operators_in_the_response_are_refused(formula, op, position, hint):
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    assert f"contains the operator '{op}'" in info.value.reason
    assert hint in info.value.reason
    assert info.value.position == position


def test_empty_parentheses_as_response():
    # found by tests/test_formula_hypothesis.py: '() ~ x' crashed with AttributeError
    with pytest.raises(FormulaError, match="no response"):
        parse_formula("() ~ x + (1 | g)")


# -- syntax errors name the problem and show where ---------------------------------------


@pytest.mark.parametrize(
    "formula, words, position",
    [
        ("y ~ (x + (1|g)", "never closed", 4),
        ("y ~ x + (1|g))", "unexpected ')'", 13),
        ("y ~ x + ( | g)", "nothing on the left of '|'", 8),
        ("y ~ x + ( || g)", "nothing on the left of '||'", 8),
        ("y ~ x + (1 | )", "no grouping factor after '|'", 13),
        ("y ~ x + (x || )", "no grouping factor after '||'", 14),
        ("y ~", "nothing on the right of '~'", 3),
        ("y ~ x +", "ends with the operator '+'", 6),
        ("y x", "exactly one '~'", 3),
        ("y ~ x ~ z", "exactly one '~'", 6),
        ("~ x + (1|g)", "no response", 0),
        ("y ~ x || g", "'|' must be inside a random-effects term", 6),
        ("y ~ x + 1 | g", "'|' must be inside a random-effects term", 10),
        ("y ~ (1 ||| g)", "'|||'", 7),
        ("y ~ (1 | g | h)", "more than one '|'", 11),
        ("y ~ (1 | g/)", "grouping-factor name is missing", 11),
        ("y ~ (1 | g h)", "two grouping-factor names in a row", 11),
        ("y ~ (1 | log(g))", "must be a column name", 9),
        ("y ~ ((1 | g) | h)", "cannot contain another", 8),
        ("(1 | g) ~ x", "response", 3),
        ("y ~ x + ()", "empty parentheses", 8),
        ("y ~ x - (1 | g)", "cannot be removed", 8),
        # found by tests/test_formula_hypothesis.py: a '~' inside a bar crashed (AttributeError)
        ("y ~ (0 ~ 1 | g)", "inside brackets", 7),
        ("y ~ (y ~ 1 || g)", "inside brackets", 7),
        ("(y ~ x) ~ (1 | g)", "inside brackets", 3),
    ],
)
def test_syntax_errors_say_what_and_where(formula, words, position):
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    err = info.value
    assert words in str(err)
    assert err.position == position
    # the message shows the formula with a caret under the position
    lines = str(err).splitlines()
    assert lines[-2].strip() == formula.strip()
    assert lines[-1].index("^") - 2 == position
    # and the one-line form says the column
    assert f"column {position + 1}" in err.one_line()
    assert "\n" not in err.one_line()


@pytest.mark.parametrize(
    "formula", ["y ~ (1 | g\n0) + 1", ":\ny ~ (1 | g)", "y ~ (1 | g) + (1 + z | g)\n0 + 1"]
)
def test_one_line_error_when_the_reason_quotes_a_newline(formula):
    # found by tests/test_formula_hypothesis.py: the reason quoted the part of the formula
    # at fault, newline included, and one_line() (what the command line prints) was two lines
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    assert "\n" in info.value.reason
    assert "\n" not in info.value.one_line()


@pytest.mark.parametrize("bad", [None, 5, "", "   "])
def test_empty_or_non_string_formula(bad):
    with pytest.raises(FormulaError, match="empty|must be a string"):
        parse_formula(bad)


def test_formula_errors_are_multilevel_errors():
    assert issubclass(FormulaError, MultilevelError)
    assert issubclass(FormulaError, ValueError)


# -- the allow-list ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ log(x) + (1 | g)",
        "y ~ I(x**2) + (1 | g)",
        "y ~ C(g) + (1 | h)",
        "y ~ scale(x) + center(x) + (1 | g)",
        "y ~ poly(x, 2) + (1 | g)",
        "y ~ C(h, Treatment('b')) + C(h, contr.sum) + (1 | g)",
        "y ~ sqrt(x) + abs(x) + exp(x) + log1p(x) + (1 | g)",
        "log(y) ~ x + (1 + log(x) | g)",
        "y ~ I(x > 0) + I(-x / 2) + I(x**-1) + (1 | g)",
        "y ~ poly(x, degree=2, raw=True) + (1 | g)",
        "y ~ x + (1 + I(x**2) || g)",
    ],
)
def test_allowed_expressions_parse(formula):
    parse_formula(formula)


@pytest.mark.parametrize(
    "formula, named",
    [
        ('y ~ x + {__import__("os").system("echo hi")}', "__import__"),
        ("y ~ __import__('os').system('x')", "__import__"),
        ("y ~ np.log(x)", "np.log"),
        ("y ~ x.__class__", "__class__"),
        ("y ~ (lambda: 1)()", "lambda"),
        ("y ~ [x][0]", "["),
        ("y ~ I(open('f'))", "open"),
        ("y ~ {eval('1')}", "eval"),
        ("y ~ getattr(x, 'y')", "getattr"),
        ("y ~ I(x if x else x)", "if"),
        ("y ~ {x; y}", ";"),
        ("y ~ {(x := 1)}", ":="),
        ("y ~ I('a' * 10)", "'a'"),
        ("y ~ I(9**9**9)", "9 ** 9 ** 9"),
        ("y ~ I(x^2)", "'**'"),
        ("y ~ log(x)(x)", "log(x)"),
        ("y ~ I(f'{x}')", "JoinedStr"),
        ("y ~ I(x and x)", "and"),
        ("y ~ I({1: x})", "Dict"),
        ("y ~ C(g, **opts)", "**"),
        ("y ~ I(b'x')", "b'x'"),
        ("y ~ I(x.real)", "x.real"),
    ],
)
@pytest.mark.parametrize("where", ["fixed", "bar", "double bar", "response"])
def test_refused_expressions_name_what_is_refused(formula, named, where):
    rhs = formula.split("~", 1)[1].strip()
    text = {
        "fixed": f"y ~ {rhs} + (1 | g)",
        "bar": f"y ~ x + (1 + {rhs} | g)",
        "double bar": f"y ~ x + (1 + {rhs} || g)",
        "response": f"{rhs} ~ x + (1 | g)",
    }[where]
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    assert named in str(info.value)
    assert "not allowed" in str(info.value) or "allowed only" in str(info.value)


def test_refused_grouping_factor_expression():
    with pytest.raises(FormulaError, match="__import__"):
        parse_formula('y ~ x + (1 | {__import__("os").system("x")})')


CODE_RUNNING_FORMULAS = [
    "y ~ x + {__import__('os').system('touch MARKER')} + (1 | g)",
    "y ~ __import__('os').system('touch MARKER') + (1 | g)",
    "y ~ x + I(__import__('os').system('touch MARKER')) + (1 | g)",
    "y ~ x + (1 + {__import__('os').system('touch MARKER')} | g)",
    "y ~ x + (1 + {__import__('os').system('touch MARKER')} || g)",
    "y ~ x + (1 | {__import__('os').system('touch MARKER')})",
    "y ~ x + log(x) + {exec(\"import os; os.system('touch MARKER')\")} + (1 | g)",
    "{__import__('os').system('touch MARKER')} ~ x + (1 | g)",
    "__import__('os').system('touch MARKER') ~ x + (1 | g)",
    "y ~ x + {x.__class__.__base__.__subclasses__()} + (1 | g)",
]


@pytest.mark.parametrize("formula", CODE_RUNNING_FORMULAS)
def test_formula_never_runs_code(tmp_path, formula):
    """The refused formula is refused before formulaic evaluates anything: the file the
    expression would create does not exist afterwards, through parse and through fit."""
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    formula = formula.replace("MARKER", str(marker))
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"y": rng.normal(size=30), "x": rng.normal(size=30), "g": np.repeat(list("abc"), 10)}
    )
    raised = []
    for attempt in (parse_formula, lambda f: multilevel.fit(f, df)):
        try:
            attempt(formula)
        except Exception as e:  # noqa: BLE001 - checked below, after the marker
            raised.append(e)
    assert not marker.exists(), "the formula ran code"
    assert not os.path.exists(str(marker))
    assert len(raised) == 2
    assert all(isinstance(e, FormulaError) for e in raised), raised


def test_the_same_code_would_run_without_the_check(tmp_path):
    """Guards the test above: formulaic itself does run such an expression."""
    from formulaic import model_matrix

    marker = tmp_path / "ran"
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    model_matrix(f"x + {{__import__('os').system('touch {marker}')}}", df)
    assert marker.exists()


def test_check_expression_directly():
    check_expression("log(x + 1) * 2")
    check_expression("C(g, contr.treatment)")
    with pytest.raises(FormulaError, match="function 'os.system'"):
        check_expression("os.system('x')")
    with pytest.raises(FormulaError, match="name '__builtins__'"):
        check_expression("__builtins__")
    with pytest.raises(FormulaError, match="not a valid expression"):
        check_expression("x +")


def test_parse_factors_checks_both_sides():
    with pytest.raises(FormulaError, match="np.exp"):
        parse_factors("np.exp(y) ~ x")
    with pytest.raises(FormulaError, match="np.exp"):
        parse_factors("y ~ np.exp(x)")


def test_strings_inside_quotes_are_not_scanned():
    # keywords and dunders inside a string argument or a backticked name are data, not code
    parse_formula("y ~ C(h, Treatment('lambda')) + `__odd name__` + (1 | g)")


# -- contrasts in C() --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sleep3():
    d = multilevel.datasets.load("sleepstudy")
    d["a"] = (d.Days % 3).astype(str)
    return d


def _fixef(formula, data):
    return multilevel.fit(f"Reaction ~ {formula} + (1 | Subject)", data).fixef


@pytest.mark.parametrize(
    "spelling, working",
    [
        # patsy's bare Treatment is a function in formulaic: it is called
        ("C(a, Treatment)", "C(a, Treatment())"),
        ("C(a, contrasts=Treatment)", "C(a, contrasts=Treatment())"),
        # the reference level under the other package's name
        ("C(a, Treatment(base='1'))", "C(a, Treatment(reference='1'))"),
        ('C(a, Treatment(base="1"))', "C(a, Treatment(reference='1'))"),
        ("C(a, contr.treatment(reference='1'))", "C(a, contr.treatment(base='1'))"),
        ("C(a, contr.SAS(reference='0'))", "C(a, contr.SAS(base='0'))"),
        # names as strings
        ('C(a, "sum")', "C(a, contr.sum)"),
        ("C(a, 'Sum')", "C(a, contr.sum)"),
        ("C(a, 'contr.sum')", "C(a, contr.sum)"),
        ("C(a, contrasts='sum')", "C(a, contrasts=contr.sum)"),
        ("C(a, 'treatment')", "C(a, contr.treatment)"),
        ("C(a, 'Treatment')", "C(a, contr.treatment)"),
        ("C(a, 'helmert')", "C(a, contr.helmert)"),
        ("C(a, 'poly')", "C(a, contr.poly)"),
        ("C(a, 'diff')", "C(a, contr.diff)"),
        ("C(a, 'SAS')", "C(a, contr.SAS)"),
        # R's short names (stats::C)
        ("C(a, sum)", "C(a, contr.sum)"),
        ("C(a, treatment)", "C(a, contr.treatment)"),
        ("C(a, helmert)", "C(a, contr.helmert)"),
        ("C(a, poly)", "C(a, contr.poly)"),
        ("C(a, SAS)", "C(a, contr.SAS)"),
        # patsy's name of C's argument
        ("C(a, contrast=Sum)", "C(a, contrasts=Sum)"),
        # in an interaction and inside {...}
        ("C(a, Treatment):Days", "C(a, Treatment()):Days"),
        ("{C(a, 'sum')}", "{C(a, contr.sum)}"),
    ],
)
def test_contrast_spellings_fit_as_their_working_equivalent(sleep3, spelling, working):
    got, want = _fixef(spelling, sleep3), _fixef(working, sleep3)
    assert len(got) >= 3
    pd.testing.assert_series_equal(got, want)


@pytest.mark.parametrize(
    "spelling, same_values_as",
    [
        ("C(a, Treatment)", "C(a)"),
        ("C(a, Treatment(base='1'))", "C(a, Treatment('1'))"),
        ("C(a, 'sum')", "C(a, Sum)"),
        ("C(a, helmert)", "C(a, Helmert)"),
        ("C(a, 'poly')", "C(a, Poly)"),
        ("C(a, 'diff')", "C(a, Diff)"),
        # SAS coding: treatment coding against the last level
        ("C(a, SAS)", "C(a, Treatment('2'))"),
    ],
)
def test_contrast_spellings_give_the_coefficients_of_the_coding(sleep3, spelling, same_values_as):
    got, want = _fixef(spelling, sleep3), _fixef(same_values_as, sleep3)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-9)


def test_contrast_rewrites_are_formulaic_spellings_and_working_ones_are_kept():
    mf = parse_formula("y ~ C(a,Sum) + C(b, Treatment) + x:C(h, 'sum') + (C(a, sum) || g)")
    assert mf.fixed == "C(a,Sum) + C(b, Treatment()) + x:C(h, contr.sum)"
    assert [rt.expr for rt in mf.random] == ["1", "0 + {C(a, contr.sum)}"]
    assert parse_formula("y ~ x + (1 + C(a, Treatment) | g)").random[0].expr == (
        "1 + C(a, Treatment())"
    )
    # nested: the C() inside is rewritten with the outer one
    assert parse_formula("y ~ C(C(a, Treatment), 'sum') + (1 | g)").fixed == (
        "C(C(a, Treatment()), contr.sum)"
    )


def test_reference_level_is_the_level_not_its_position(sleep3):
    # formulaic's base= / patsy's reference= name the level (R's base= is a position)
    names = list(_fixef("C(Days, contr.treatment(base=2))", sleep3).index)
    assert "C(Days, contr.treatment(base=2))[T.0]" in names
    assert not any(n.endswith("[T.2]") for n in names)
    assert list(_fixef("C(Days, Treatment(base=2))", sleep3).index) == [
        n.replace("contr.treatment(base=2)", "Treatment(reference=2)") for n in names
    ]


ACCEPTED = ("Treatment", "contr.SAS", "contr.treatment", "'sum'")


@pytest.mark.parametrize(
    "spelling, named",
    [
        ("C(a, Deviation)", "unknown contrast 'Deviation'"),
        ("C(a, 'deviation')", "unknown contrast 'deviation'"),
        ("C(a, Deviation())", "unknown contrast 'Deviation'"),
        ("C(a, contr.custom)", "unknown contrast 'contr.custom'"),
        ("C(a, contr.deviation(1))", "unknown contrast 'contr.deviation'"),
        ("C(a, Days)", "unknown contrast 'Days'"),  # a column is no contrast
        ("C(a, log(Days))", "unknown contrast 'log'"),
        ("C(a, 3)", "unknown contrast '3'"),
        ("C(a, sas)", "did you mean 'SAS'?"),
        ("C(a, SUM)", "did you mean 'sum'?"),
    ],
)
def test_unknown_contrast_is_named_with_the_accepted_ones(sleep3, spelling, named):
    for formula in (
        f"Reaction ~ {spelling} + (1 | Subject)",
        f"Reaction ~ Days + (1 + {spelling} | Subject)",
        f"Reaction ~ Days + ({spelling} || Subject)",
    ):
        with pytest.raises(FormulaError) as info:
            multilevel.fit(formula, sleep3)
        message = str(info.value)
        assert named in message
        assert all(a in message for a in ACCEPTED), message


@pytest.mark.parametrize(
    "spelling, named",
    [
        ("C(a, Treatment(bse='1'))", "Treatment() has no argument 'bse'"),
        ("C(a, Treatment(bse='1'))", "reference="),
        ("C(a, contr.treatment(ref='1'))", "contr.treatment() has no argument 'ref'"),
        ("C(a, Sum(omit='1'))", "Sum() has no argument 'omit'"),
        ("C(a, Helmert(rev=True))", "Helmert() has no argument 'rev'"),
        ("C(a, Treatment('1', '2'))", "Treatment() in 'C(a, Treatment('1', '2'))' takes"),
        ("C(a, Treatment('1', base='2'))", "given 'reference' twice"),
        ("C(a, Treatment(Days))", "must be a level written as a constant"),
        ("C(a, Treatment(reference=Days))", "'Days' is not one"),
        ("C(a, Helmert(reverse=1))", "'reverse' of the contrast Helmert() in"),
        ("C(a, Poly(scores=Days))", "Poly(scores=...)"),
        ("C(a, base='1')", "C() has no argument 'base'"),
        ("C(a, reference='1')", "the reference level goes in the contrast"),
        ("C(a, Sum, Sum)", "C() takes the column and one contrast"),
        ("C(a, Sum, contrasts=Sum)", "gives the contrast twice"),
        ("C(a, contrast=Sum, contrasts=Sum)", "gives the contrast twice"),
        ("C()", "'C()' needs the column"),
        ("Sum(a)", "the contrast Sum in 'Sum(a)' belongs inside C()"),
        ("Treatment(a)", "the contrast Treatment in 'Treatment(a)' belongs inside C()"),
        ("I(contr.sum)", "the contrast contr.sum in 'contr.sum' belongs inside C()"),
    ],
)
def test_wrong_contrast_arguments_are_named(sleep3, spelling, named):
    with pytest.raises(FormulaError) as info:
        multilevel.fit(f"Reaction ~ {spelling} + (1 | Subject)", sleep3)
    assert named in str(info.value)
    with pytest.raises(FormulaError, match=re.escape(named)):
        parse_formula(f"y ~ x + (1 + {spelling} | g)")


def test_contrast_table_is_what_formulaic_takes():
    """CONTRASTS lists, for each contrast name, the arguments formulaic's object takes."""
    import dataclasses
    import inspect

    from formulaic.transforms import TRANSFORMS
    from formulaic.transforms.contrasts import Contrasts

    for name, params in CONTRASTS.items():
        obj = TRANSFORMS[name] if "." not in name else getattr(TRANSFORMS["contr"], name[6:])
        if inspect.isclass(obj):
            assert issubclass(obj, Contrasts)
            assert tuple(f.name for f in dataclasses.fields(obj)) == params, name
        else:  # patsy's Treatment: a function returning a Contrasts
            assert tuple(inspect.signature(obj).parameters) == params, name
            assert isinstance(obj(), Contrasts)
        assert name in ALLOWED_FUNCTIONS
    registry = {k for k, v in vars(TRANSFORMS["contr"]).items() if inspect.isclass(v)}
    assert {f"contr.{k}" for k in registry - {"custom"}} <= set(CONTRASTS)


@pytest.mark.parametrize(
    "spelling",
    [
        "C(a, contr.treatment(base=open('MARKER', 'w')))",
        "C(a, Treatment(base=open('MARKER', 'w')))",
        "C(a, contrast=open('MARKER', 'w'))",
        "C(a, contrasts=Treatment(reference=open('MARKER', 'w')))",
        "C(open('MARKER', 'w'), Treatment)",
        "C(a, 'sum' if open('MARKER', 'w') else 'sum')",
        "C(a, contr.sum(open('MARKER', 'w')))",
        "C(a, Sum, levels=open('MARKER', 'w'))",
        "C(a, SAS, spans_intercept=open('MARKER', 'w'))",
        "C(a, contr.custom(open('MARKER', 'w')))",
    ],
)
def test_contrast_rewrites_never_run_code(tmp_path, sleep3, spelling):
    # the rewrites rename and replace leaves only: code in a contrast is refused as before
    marker = tmp_path / "ran"
    spelling = spelling.replace("MARKER", str(marker))
    for formula in (
        f"Reaction ~ {spelling} + (1 | Subject)",
        f"Reaction ~ ({spelling} || Subject)",
    ):
        with pytest.raises(FormulaError, match="open|if"):
            multilevel.fit(formula, sleep3)
    assert not marker.exists()
