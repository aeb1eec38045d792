"""The size of what each factor of a formula makes, known from the formula alone.

``poly(x, degree)`` makes ``degree`` columns and ``bs(x, df=..., degree=3)`` ``df`` (or
``degree``, plus one with ``include_intercept=True``): :func:`check_bases` refuses, with the
allow-list, any call whose size is not written as a whole number in the formula, and
:func:`factor_shape` describes what a factor makes, so that the data layer can bound every
model matrix before formulaic builds it (:mod:`multilevel.data.checks`): the number of
columns of a basis, the column whose levels ``C(g)`` codes, the columns an expression reads.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass

from .functions import NUMERIC_FUNCTIONS, dotted
from .names import aliased_column, quoted_aliases, restore_aliases, restore_names

#: Highest degree of a B-spline: formulaic's recursion costs degree x (df + 2 degree)
#: passes over the data, and beyond a few degrees a spline is a polynomial in disguise.
MAX_SPLINE_DEGREE = 10

#: the parameters of poly() and bs(), in order (formulaic's signatures)
_PARAMS = {
    "poly": ("x", "degree", "raw"),
    "bs": (
        "x",
        "df",
        "knots",
        "degree",
        "include_intercept",
        "lower_bound",
        "upper_bound",
        "extrapolation",
    ),
}


@dataclass(frozen=True)
class Basis:
    """A ``poly()`` or ``bs()`` call: the columns it makes (``width``), its ``degree`` and
    the data columns its argument reads."""

    text: str
    function: str
    width: int
    degree: int
    reads: frozenset[str]


@dataclass(frozen=True)
class FactorShape:
    """What one formulaic factor makes. ``kind``: ``"column"`` (a data column: one numeric
    column, or one per level), ``"literal"`` (``1``), ``"basis"`` (``poly``/``bs``: see
    ``bases``), ``"contrast"`` (``C(column, ...)``: one per level of ``column``, or of what
    the expression in it takes, at most the distinct values of ``reads``), ``"numeric"``
    (one numeric column) or ``"python"`` (any other expression: numeric, or categorical
    with at most the distinct values of ``reads``)."""

    text: str
    kind: str
    column: str | None = None
    reads: frozenset[str] = frozenset()
    bases: tuple[Basis, ...] = ()


def _whole(node: ast.expr | None) -> int | None:
    """The value of a whole number written as a constant (``3``, ``-1``, ``10**5``,
    ``2 * 3``), else None. Exponents are small: the allow-list limits them."""
    if isinstance(node, ast.Constant):
        v = node.value
        return v if isinstance(v, int) and not isinstance(v, bool) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _whole(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Pow):
        a, b = _whole(node.left), _whole(node.right)
        if a is None or b is None or (isinstance(node.op, ast.Pow) and not 0 <= b <= 64):
            return None
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        return a * b if isinstance(node.op, ast.Mult) else a**b
    return None


def _arguments(call: ast.Call, name: str, refuse) -> dict[str, ast.expr]:
    params = _PARAMS[name]
    text = ast.unparse(call)
    if len(call.args) > len(params):
        refuse(f"'{text}' has {len(call.args)} arguments; {name}() takes at most {len(params)}")
    given = dict(zip(params, call.args, strict=False))
    for k in call.keywords:
        if k.arg not in params:
            refuse(
                f"{name}() has no argument '{k.arg}' in '{text}' (it takes "
                + ", ".join(f"{p}=" for p in params[1:])
                + ")",
                f"{k.arg}=",
            )
        if k.arg in given:
            refuse(f"'{text}' gives '{k.arg}' twice", f"{k.arg}=")
        given[k.arg] = k.value
    if "x" not in given:
        refuse(f"'{text}' needs the column to expand, e.g. '{name}(x, 3)'")
    return given


def _bool(node: ast.expr | None) -> bool | None:
    if node is None:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    return None


def basis_size(call: ast.Call, refuse) -> tuple[int, int]:
    """(columns, degree) of a ``poly()`` or ``bs()`` call, each written as a whole number in
    the formula; refuses (``refuse(message, snippet)``) anything else."""
    name = dotted(call.func)
    given = _arguments(call, name, refuse)
    text = ast.unparse(call)
    if name == "poly":
        node = given.get("degree")
        degree = 1 if node is None else _whole(node)
        if degree is None or degree < 1:
            refuse(
                f"the degree of '{text}' must be a whole number of at least 1 written in the "
                "formula, e.g. 'poly(x, 3)'"
            )
        if _bool(given.get("raw")) is None:
            refuse(f"raw= of '{text}' must be True or False")
        return degree, degree
    knots = given.get("knots")
    if knots is not None and not (isinstance(knots, ast.Constant) and knots.value is None):
        refuse(
            f"knots= in '{text}' needs a list of numbers, which a formula cannot hold; give "
            "the degrees of freedom instead, e.g. 'bs(x, df=5)' (knots at quantiles)",
            "knots",
        )
    node = given.get("degree")
    degree = 3 if node is None else _whole(node)
    if degree is None or not 0 <= degree <= MAX_SPLINE_DEGREE:
        refuse(
            f"the degree of '{text}' must be a whole number from 0 to {MAX_SPLINE_DEGREE} "
            "written in the formula, e.g. 'bs(x, df=5, degree=3)' "
            "(multilevel.spec.bases.MAX_SPLINE_DEGREE)"
        )
    intercept = _bool(given.get("include_intercept"))
    if intercept is None:
        refuse(f"include_intercept= of '{text}' must be True or False")
    node = given.get("df")
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        width = degree + int(intercept)
    else:
        width = _whole(node)
        if width is None or width < 1:
            refuse(
                f"the degrees of freedom of '{text}' must be a whole number of at least 1 "
                "written in the formula, e.g. 'bs(x, df=5)'"
            )
        if width < degree + int(intercept):
            refuse(
                f"'{text}' asks for {width} degrees of freedom, fewer than its degree "
                f"{degree}{' + 1 (the intercept)' if intercept else ''} needs"
            )
    return width, degree


def check_bases(tree: ast.AST, refuse) -> None:
    """The basis part of the allow-list: every ``poly()`` and ``bs()`` call has a size
    written as a whole number (:func:`basis_size`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and dotted(node.func) in _PARAMS:
            basis_size(node, refuse)


def _names(node: ast.AST, aliases: dict[str, str]) -> frozenset[str]:
    """The names ``node`` reads as values (not functions), aliases as the names they are."""
    skip = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            skip.update(id(m) for m in ast.walk(n.func))
    return frozenset(
        aliased_column(n.id) or aliases.get(n.id, n.id)
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and id(n) not in skip
    )


class _Refused(Exception):
    pass


def _refuse(message: str, snippet: str | None = None):
    raise _Refused(message)


@functools.lru_cache(maxsize=1024)
def factor_shape(expr: str) -> FactorShape:
    """What a Python factor (already checked by the allow-list) makes."""
    code, aliases = quoted_aliases(expr)
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return FactorShape(expr, "python")
    bases = []
    try:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and dotted(node.func) in _PARAMS:
                width, degree = basis_size(node, _refuse)
                arg = (
                    node.args[0]
                    if node.args
                    else next(k.value for k in node.keywords if k.arg == "x")
                )
                text = restore_names(restore_aliases(ast.unparse(node), aliases))
                bases.append(Basis(text, dotted(node.func), width, degree, _names(arg, aliases)))
    except _Refused:
        bases = []
    reads = _names(tree, aliases)
    body = tree.body
    fname = dotted(body.func) if isinstance(body, ast.Call) else None
    if fname in _PARAMS:
        return FactorShape(expr, "basis", reads=reads, bases=tuple(bases))
    if fname == "C" and body.args:
        arg = body.args[0]
        column = None
        if isinstance(arg, ast.Name):
            column = aliased_column(arg.id) or aliases.get(arg.id, arg.id)
        reads = _names(arg, aliases)
        return FactorShape(expr, "contrast", column, reads, tuple(bases))
    if fname in NUMERIC_FUNCTIONS:
        return FactorShape(expr, "numeric", reads=reads, bases=tuple(bases))
    return FactorShape(expr, "python", reads=reads, bases=tuple(bases))
