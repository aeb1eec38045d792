"""Property-based tests of the formula language: every formula from lme4's grammar parses
into the blocks it spells, and any formula at all, however malformed or hostile, either
fits or fails with a :class:`~multilevel.errors.MultilevelError`, and never runs code."""

import functools
import warnings

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from strategies import (
    MARKER,
    PAYLOAD_IDS,
    PAYLOADS,
    NamedDesign,
    TookTooLong,
    formula_data,
    grammar_formulas,
    hostile_formulas,
    named_designs,
    random_formula_strings,
    returns_within,
)

import multilevel
from multilevel.errors import FormulaError, MultilevelError
from multilevel.spec import parse_formula

DATA = formula_data()


def fit_or_error(formula: str, data=DATA):
    """The fit, or the MultilevelError it raised. Any other exception fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return multilevel.fit(formula, data)
    except MultilevelError as e:
        check_message(e)
        return e


def check_message(e: MultilevelError) -> None:
    """A user-facing error: a message, which the command line can show on one line."""
    assert str(e).strip()
    line = e.one_line()
    assert line.strip() and "\n" not in line
    if currently_in_test_context():
        event(f"{type(e).__name__}: {getattr(e, 'reason', str(e)).split(':')[0][:50]}")


@pytest.fixture(autouse=True)
def no_marker():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a formula ran code"


@given(grammar_formulas())
def test_grammar_formulas_parse_to_the_blocks_they_spell(f):
    mf = parse_formula(f.text)
    assert mf.response == f.response
    # one block per bar and grouping factor, in order ('a/b' gives a, then b:a), '||' one
    # uncorrelated block per term
    assert tuple((rt.group, rt.correlated) for rt in mf.random) == f.blocks


@given(grammar_formulas())
def test_grammar_formulas_fit_or_fail_with_our_error(f):
    out = fit_or_error(f.text)
    if isinstance(out, MultilevelError):
        return
    event("fitted")
    assert np.isfinite(out.objective)
    assert out.objective == pytest.approx(out.optim.objective, rel=1e-12, abs=1e-12)
    assert np.all(np.isfinite(out.fixef.to_numpy()))
    assert np.all(np.isfinite(out.theta))
    assert out.nobs + out.n_dropped == len(DATA)
    assert {g for g, _ in f.blocks} == set(out.ngroups)


@given(hostile_formulas())
@example("y ~ x + (1 | g")
@example("y ~ x + 1 | g)")
@example("y ~ x + ( | g)")
@example("y ~ x + (1 | )")
@example("y ~ x + (1 || )")
@example("y ~ x + (1 | g | h)")
@example("y ~ x + | g")
@example("y ~ x + foo(x) + (1 | g)")
@example("y ~ x + (1 | g) + (1 | g/)")
@example("y ~ x + (1 | g::h)")
@example("y ~ (1 | g) + x.real")
@example("y ~ (1 | g) + I(x[0])")
@example("y ~ (1 | g) + I((lambda: 1)())")
def test_hostile_formulas_fit_or_fail_with_our_error_and_never_run_code(text):
    out = fit_or_error(text)
    assert not MARKER.exists(), f"{text!r} ran code"
    if not isinstance(out, MultilevelError):
        event("fitted")
        assert np.isfinite(out.objective)


@pytest.mark.parametrize("payload", PAYLOADS, ids=PAYLOAD_IDS)
@pytest.mark.parametrize(
    "template", ["y ~ {p} + (1 | g)", "{p} ~ x + (1 | g)", "y ~ x + ({p} | g)", "y ~ (x || {p})"]
)
def test_every_payload_is_refused_everywhere(payload, template):
    # the payloads the mutations draw from, each in every place a formula has an expression
    out = fit_or_error(template.format(p=payload))
    assert isinstance(out, FormulaError | multilevel.DataError)
    assert not MARKER.exists()


def test_test_ids_are_the_same_in_every_process(request):
    # pytest -n (xdist) needs every worker to collect the same ids: none may hold MARKER,
    # whose name is random in each process
    ids = [item.nodeid for item in request.session.items]
    assert len(set(PAYLOAD_IDS)) == len(PAYLOADS)
    assert not [i for i in ids if MARKER.name in i]


# -- issue 14: any string, any nesting, names in every language, in bounded time ------------

#: every call returns within this (seconds): a fit of these small data sets takes a fraction
SECONDS = 5


@functools.cache
def warm_up() -> None:
    """One fit before any is timed: the first imports formulaic and scipy's parts."""
    fit_or_error("y ~ log(z) + poly(x, 2) + C(a) + (1 + x | g)")


@given(st.one_of(random_formula_strings(), named_designs(), named_designs(), named_designs()))
@example("y ~ bs(x, df=1000000) + (1 | g)")
@example("y ~ poly(x, 100000) + (1 | g)")
@example("y ~ " + "(" * 3000 + "x" + ")" * 3000 + " + (1 | g)")
@example("y ~ (x + z)^1000000 + (1 | g)")
@example("y ~ I(" + "+".join(["x"] * 2000) + ") + (1 | g)")
@example("y ~ " + "*".join(["x", "z", "u", "a", "b", "g", "h"] * 3) + " + (1 | g)")
@example("y ~ x + (1 | g)" + " " * 20_000)
def test_any_formula_answers_in_bounded_time_with_a_fit_or_our_error(case):
    # every call returns within SECONDS with a fit, a FormulaError or a DataError; a formula
    # in names of any language, bare or backticked, fits and shows the names as they are
    named = isinstance(case, NamedDesign)
    text, data = (case.formula, case.data) if named else (case, DATA)
    warm_up()
    try:
        with returns_within(SECONDS):
            out = fit_or_error(text, data)
    except TookTooLong:
        pytest.fail(f"{text[:200]!r} did not return within {SECONDS} s")
    assert not MARKER.exists(), f"{text!r} ran code"
    if isinstance(out, MultilevelError):
        assert isinstance(out, FormulaError | multilevel.DataError), type(out)
        assert not named, f"{text!r}: {out.one_line()}"
        return
    event("fitted (names)" if named else "fitted")
    assert np.isfinite(out.objective)
    if named:
        assert sorted(out.ngroups) == sorted(case.groups)
        assert set(case.fixef_names) <= set(out.fixef.index)
        summary = out.summary()
        assert all(g in summary for g in case.groups)
