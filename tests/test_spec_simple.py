"""The fast path of the formula layer (multilevel.spec.simple) against formulaic's parse:
the same terms in the same order, the same columns, the same ModelFormula, and no formulaic
import for a simple formula."""

import random
import re
import subprocess
import sys

import pytest
from formulaic import Formula
from formulaic.parser.types.factor import Factor

from multilevel.errors import FormulaError
from multilevel.spec import parse_formula
from multilevel.spec import simple as simple_module
from multilevel.spec.simple import SimpleTerms, simple_name, simple_terms, split_simple


def formulaic_terms(rhs: str) -> SimpleTerms | None:
    """What formulaic's parse says about ``rhs``, as SimpleTerms (None if a term is not the
    intercept or one looked-up column)."""
    intercept, names = False, []
    for term in Formula(rhs):
        factors = list(term.factors)
        literal = factors[0].eval_method == Factor.EvalMethod.LITERAL if factors else False
        if [f.expr for f in factors] == ["1"] and literal:
            assert not names, "formulaic puts the intercept first"
            intercept = True
        elif len(factors) == 1 and factors[0].eval_method == Factor.EvalMethod.LOOKUP:
            names.append(factors[0].expr)
        else:
            return None
    return SimpleTerms(intercept, tuple(names))


SIMPLE = [
    "x",
    "x + 1",
    "1 + x",
    "0 + x",
    "x + 0",
    "x - 1",
    "-1 + x",
    "x + x",
    "x + `x`",
    "z + x",
    "z + x + 1",
    "z + 1 + x",
    "1",
    "0",
    "-1",
    "`a b` + x",
    "`a.b` + c.d + e_f + _g + h1",
    "x.",
    "x..y",
    "match + case + type + _",
    "x\n + z",
    "x\t+z",
    "  x  +  z  ",
    "a + b + c + d + e + f + g + h + i + j + a + c",
    "j + i + h + g + f + e + d + c + b + a",
    "`Days` + Days",
]

NOT_SIMPLE = [
    "",
    "   ",
    "x:z",
    "x*z",
    "x / z",
    "x ^ 2",
    "x %in% z",
    "log(x)",
    "I(x)",
    "I(x ** 2)",
    "C(g)",
    "{x}",
    "{x + 1}",
    "(x)",
    "(x + z)",
    "x - z",
    "- x",
    "+ x",
    "x +",
    "x + + z",
    "x + - 1",
    "x - - 1",
    "1 - 1",
    "0 + 1 + x",
    "1 + 0 + x",
    "x - 1 + 1",
    "1 + 1",
    "2 + x",
    "1.0 + x",
    "01 + x",
    "x + 1e5",
    "1x",
    "`1`",
    "`0`",
    "``",
    "` x`",
    "`x `",
    "`a:b`",
    "`a(b)`",
    "`a-b`",
    "`a'b`",
    "Intercept",
    "`Intercept` + x",
    "True",
    "None + x",
    "`if`",
    "lambda",
    ".",
    ".x",
    "x + .",
    "offset(z)",
    "x + offset(z)",
    "é",
    "x | g",
    "x ~ z",
    "'x'",
    '"x"',
    "x, z",
]


@pytest.mark.parametrize("rhs", SIMPLE)
def test_simple_parts_read_as_formulaic_reads_them(rhs):
    got = simple_terms(rhs)
    assert got is not None
    assert got == formulaic_terms(rhs)


@pytest.mark.parametrize("rhs", NOT_SIMPLE)
def test_anything_else_is_left_to_formulaic(rhs):
    assert simple_terms(rhs) is None


def test_the_switch_turns_the_fast_path_off(monkeypatch):
    monkeypatch.setattr(simple_module, "FAST_PATH", False)
    assert simple_terms("x") is None
    assert simple_name("y") is None
    assert split_simple("1 + x") is None


@pytest.mark.parametrize(
    "lhs,expected",
    [
        ("y", "y"),
        (" y ", "y"),
        ("`my y`", "my y"),
        ("y.1", "y.1"),
        ("log(y)", None),
        ("I(y)", None),
        ("y + 1", None),
        ("1", None),
        ("Intercept", None),
        ("True", None),
        ("`a:b`", None),
    ],
)
def test_simple_response(lhs, expected):
    assert simple_name(lhs) == expected


BARE = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
NAMES = ["x", "z", "Days", "a.b", "x_1", "_u", "`a b`", "`x`", "`w.2 v`", "match", "q."]
SWITCHES = ["1", "0", "-1", None]


def random_rhs(rng: random.Random, names=NAMES) -> str:
    """A random sum of names with at most one of 1, 0, -1 somewhere."""
    atoms = [rng.choice(names) for _ in range(rng.randint(0, 6))]
    switch = rng.choice(SWITCHES)
    if switch is not None or not atoms:
        atoms.insert(rng.randint(0, len(atoms)), switch or "1")
    text = atoms[0]
    for a in atoms[1:]:
        text += f" - {a[1:]}" if a == "-1" else f" + {a}"
    return text


def test_random_simple_parts_match_formulaic():
    rng = random.Random(20240611)
    for _ in range(400):
        rhs = random_rhs(rng)
        got = simple_terms(rhs)
        assert got is not None, rhs
        assert got == formulaic_terms(rhs), rhs


def test_double_bar_split_matches_formulaic():
    rng = random.Random(7)
    exprs = ["1 + x", "x", "0 + x + z", "-1 + x", "z + x + 1", "`a b` + x", "`x`", "0", "1"]
    exprs += [random_rhs(rng) for _ in range(100)]
    for expr in exprs:
        parts = split_simple(expr)
        assert parts is not None
        expected = []
        for t in Formula(expr):
            text = ":".join(
                f"`{f.expr}`"
                if f.eval_method == Factor.EvalMethod.LOOKUP and not BARE.match(f.expr)
                else f.expr
                for f in t.factors
            )
            expected.append("1" if text == "1" else f"0 + {text}")
        assert parts == expected, expr


def random_formula(rng: random.Random) -> str:
    response = rng.choice(["y", "`my y`", "Reaction", "y.1"])
    parts = [random_rhs(rng)]
    for _ in range(rng.randint(1, 3)):
        bar = rng.choice(["|", "||"])
        group = rng.choice(["g", "h", "g/h", "g:h", "`my g`"])
        parts.append(f"({random_rhs(rng)} {bar} {group})")
    rng.shuffle(parts)
    return f"{response} ~ " + " + ".join(parts)


FORMULAS = [
    "Reaction ~ Days + (Days | Subject)",
    "Reaction ~ 1 + Days + (1 + Days | Subject)",
    "Reaction ~ Days + (Days || Subject)",
    "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
    "y ~ 1 + (1 | g)",
    "y ~ x + 1 + (x | g)",
    "y ~ 0 + x + (0 + x | g)",
    "y ~ x - 1 + (1 | g)",
    "y ~ -1 + x + (1 | g)",
    "y ~ x + x + (x + x | g)",
    "y ~ (1 + x || g) + z",
    "y ~ (x || g/h)",
    "y ~ x + (1 | g:h) + (1 | h)",
    "`my y` ~ `a b` + (`a b` | `my g`)",
    "y ~ y + x + (1 | g)",
    "y ~ x + ((1 | g))",
    "y ~ 0 + (1 | g)",
    "y ~ -1 + (1 | g)",
    "y ~ x + (0 || g)",
]


def parse_both(text: str, monkeypatch):
    fast = parse_formula(text)
    with monkeypatch.context() as m:
        m.setattr(simple_module, "FAST_PATH", False)
        slow = parse_formula(text)
    return fast, slow


@pytest.mark.parametrize("text", FORMULAS)
def test_parse_formula_is_the_same_on_both_paths(text, monkeypatch):
    fast, slow = parse_both(text, monkeypatch)
    assert fast == slow


def test_random_formulas_parse_the_same_on_both_paths(monkeypatch):
    rng = random.Random(42)
    for _ in range(300):
        text = random_formula(rng)
        fast, slow = parse_both(text, monkeypatch)
        assert fast == slow, text


@pytest.mark.parametrize(
    "text",
    [
        "y ~ log(x) + (1 | g)",
        "y ~ x + offset(z) + (1 | g)",
        "y ~ x:z + (1 | g)",
        "log(y) ~ x + (1 | g)",
        "y ~ C(g2) + (1 | g)",
        "y ~ x + (log(x) | g)",
    ],
)
def test_other_formulas_still_parse_the_same(text, monkeypatch):
    fast, slow = parse_both(text, monkeypatch)
    assert fast == slow


@pytest.mark.parametrize(
    "text",
    [
        "y ~ x + (1 | g) + {__import__('os')}",
        "y ~ x + (open(z) | g)",
        "y ~ x + (x || g) + eval(z)",
        "lambda ~ x + (1 | g)",
        "y ~ if + (1 | g)",
    ],
)
def test_the_allow_list_still_applies(text):
    with pytest.raises(FormulaError):
        parse_formula(text)


def test_a_simple_formula_is_parsed_without_formulaic():
    code = (
        "import sys\n"
        "from multilevel.spec import parse_formula\n"
        "mf = parse_formula('Reaction ~ Days + (Days || Subject) + (1 | g/h)')\n"
        "assert mf.fixed_columns == {'Days'}, mf\n"
        "assert 'formulaic' not in sys.modules\n"
        "parse_formula('Reaction ~ log(Days) + (1 | Subject)')\n"
        "assert 'formulaic' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
