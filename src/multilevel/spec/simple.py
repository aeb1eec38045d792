"""Simple formula parts, read without formulaic: a fast path that gives what formulaic gives.

A right-hand side is *simple* when it is a sum of bare column names, ``1``, ``0`` and ``-1``
and nothing else: ``Days``, ``1 + x + z``, ``0 + x``, ``x - 1``, ``-1 + x``, ``x + `a b```.
Formulaic reads such a part as an intercept (unless ``0`` or ``-1`` removes it) followed by
one numeric term per name, in the written order, each name once. :func:`simple_terms` gives
exactly that, so that a formula made only of simple parts is parsed (and, for numeric
columns, materialised by :mod:`multilevel.data.simple`) without importing formulaic.
Anything else, or anything in doubt, returns None and goes through formulaic as before:

* a name is ``[A-Za-z_][A-Za-z0-9_.]*``, or backtick-quoted ``[A-Za-z_.][A-Za-z0-9_. ]*``
  (not ending in a space); never a Python keyword, never ``Intercept`` (formulaic's name of
  the intercept column);
* ``1`` and ``0`` are the only numbers, ``-`` only removes ``1``, and at most one of ``1``,
  ``0``, ``-1`` appears (formulaic reads several from left to right; not needed here);
* no brackets, calls, ``:``, ``*``, ``/``, ``^``, ``%``, ``{}``, ``I()``, ``C()``, ``.``,
  offsets or removals of names.

A simple part has no Python factor, so the allow-list has nothing to check in it.
"""

from __future__ import annotations

import functools
import keyword
import re
from dataclasses import dataclass

#: Set to False to send every formula through formulaic (the tests compare both paths).
FAST_PATH = True

_TOKEN = re.compile(
    r"\s*(?:(?P<quoted>`[A-Za-z_.][A-Za-z0-9_. ]*`)|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<number>[0-9][A-Za-z0-9_.]*)|(?P<op>[+-]))"
)
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_RESERVED = frozenset({"Intercept"})


@dataclass(frozen=True)
class SimpleTerms:
    """A simple right-hand side as formulaic reads it: the intercept (first when present),
    then one numeric term per column in ``names`` (unquoted, each once, in formulaic's order)."""

    intercept: bool
    names: tuple[str, ...]


def _column(token: str) -> str | None:
    """The column a name token reads, or None when it is not a simple name."""
    name = token[1:-1] if token.startswith("`") else token
    if not name or name.endswith(" ") or name in _RESERVED or keyword.iskeyword(name):
        return None
    return name


def _tokens(rhs: str) -> list[tuple[str, str]] | None:
    """(kind, text) of each token of ``rhs``: ``quoted``, ``name``, ``number`` or ``op``;
    None at anything else."""
    tokens: list[tuple[str, str]] = []
    pos, end = 0, len(rhs.rstrip())
    while pos < end:
        m = _TOKEN.match(rhs, pos)
        if m is None:
            return None
        tokens.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return tokens


@functools.lru_cache(maxsize=512)
def _parse(rhs: str) -> SimpleTerms | None:
    tokens = _tokens(rhs)
    if not tokens:
        return None
    # [-1] atom (op atom)*: '-' only before 1, and only 0 and 1 as numbers
    terms: list[tuple[str, str, str]] = []  # (sign, kind, text)
    sign, expect_atom = "+", True
    for i, (kind, text) in enumerate(tokens):
        if not expect_atom:
            if kind != "op":
                return None
            sign, expect_atom = text, True
        elif kind == "op":
            if i != 0 or text != "-":
                return None
            sign = "-"
        else:
            if kind == "number" and text not in ("0", "1") or sign == "-" and text != "1":
                return None
            terms.append((sign, kind, text))
            expect_atom = False
    if expect_atom:  # ends with an operator
        return None
    intercept, switches, names = True, 0, []
    for sign, kind, text in terms:
        if kind == "number":
            switches += 1
            intercept = text == "1" and sign == "+"
            continue
        name = _column(text)
        if name is None:
            return None
        if name not in names:
            names.append(name)
    if switches > 1:
        return None
    return SimpleTerms(intercept, tuple(names))


def simple_terms(rhs: str) -> SimpleTerms | None:
    """The terms of the right-hand side ``rhs`` when it is simple (see the module), else None."""
    if not FAST_PATH:
        return None
    return _parse(rhs)


def simple_name(text: str) -> str | None:
    """The column a response reads when it is one simple name (``y``, `` `my y` ``), else None."""
    if not FAST_PATH:
        return None
    tokens = _tokens(text)
    if tokens is None or len(tokens) != 1 or tokens[0][0] not in ("name", "quoted"):
        return None
    return _column(tokens[0][1])


def quoted(name: str) -> str:
    """A column name written as formula text: bare when it can be, else in backticks (as
    :func:`multilevel.spec.grammar` writes formulaic's factors back)."""
    return name if _NAME.match(name) else f"`{name}`"


def split_simple(rhs: str) -> list[str] | None:
    """lme4's expandDoubleVerts of a simple ``rhs`` (``1 + x`` -> ``["1", "0 + x"]``), each
    term's expression as formulaic's parse would give it; None when ``rhs`` is not simple."""
    terms = simple_terms(rhs)
    if terms is None:
        return None
    return (["1"] if terms.intercept else []) + [f"0 + {quoted(n)}" for n in terms.names]


def simple_columns(
    response: str, fixed: str, random_exprs: list[str]
) -> tuple[frozenset[str], frozenset[str], frozenset[str]] | None:
    """(response, fixed, random) columns of a formula whose response, fixed part and random
    expressions are all simple, as the formulaic parse would give them (the fixed columns
    without the response's); None when any part is not simple."""
    y = simple_name(response)
    fixed_terms = simple_terms(fixed)
    if y is None or fixed_terms is None:
        return None
    random: set[str] = set()
    for expr in random_exprs:
        terms = simple_terms(expr)
        if terms is None:
            return None
        random.update(terms.names)
    response_columns = frozenset({y})
    return response_columns, frozenset(fixed_terms.names) - response_columns, frozenset(random)
