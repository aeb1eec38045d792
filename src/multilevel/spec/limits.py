"""Bounded work: limits on a formula, checked before any of it is parsed, expanded or
evaluated, each by a loop over the text or its tokens (no recursion that Python's stack could
overflow). A formula from an untrusted source can then cost no more than these allow:

* :data:`MAX_FORMULA_LENGTH` characters;
* brackets nested at most :data:`MAX_NESTING_DEPTH` deep;
* each Python expression (``log(...)``, ``I(...)``, ``{...}``) at most
  :data:`MAX_EXPRESSION_SIZE` operators and nested brackets: Python's parser, formulaic's
  and the allow-list's walk nest one level per operator;
* formulaic's term algebra may expand a part into at most :data:`MAX_TERMS` terms,
  counting repeats: ``a*b*c`` is 7 terms, ``(a + b + c)^2`` 9 products (``x1*...*x20``,
  a million terms, or ``(a + b)^1000000``, would take formulaic minutes or forever).

Each is a module attribute: set it (e.g. ``multilevel.spec.limits.MAX_TERMS = 50_000``)
to change it. The size of the model matrices is bounded by the data layer
(:mod:`multilevel.data.checks`), which knows the data.
"""

from __future__ import annotations

import keyword
import re

from ..errors import FormulaError
from .names import identifiers
from .text import QUOTES

#: Longest formula (characters).
MAX_FORMULA_LENGTH = 10_000
#: Deepest nesting of brackets ``( [ {``.
MAX_NESTING_DEPTH = 50
#: Most operators and nested brackets in one Python expression.
MAX_EXPRESSION_SIZE = 100
#: Most terms formulaic's algebra may expand a part of a formula into (counting repeats).
MAX_TERMS = 10_000

_OPERATOR_CHARS = frozenset("+-*/%<>=!~&|^@.")


def check_text(text: str, slack: int = 1) -> None:
    """Refuse a formula longer than :data:`MAX_FORMULA_LENGTH` (times ``slack``, for text
    derived from a formula) or with brackets nested more than :data:`MAX_NESTING_DEPTH` deep
    (outside quotes). The messages do not repeat the formula, which may be huge."""
    if len(text) > MAX_FORMULA_LENGTH * slack:
        raise FormulaError(
            f"the formula has {len(text):,} characters; a formula may have at most "
            f"{MAX_FORMULA_LENGTH:,} (multilevel.spec.limits.MAX_FORMULA_LENGTH)"
        )
    depth, i = 0, 0
    while i < len(text):
        c = text[i]
        if c in QUOTES:
            end = text.find(c, i + 1)
            if end < 0:
                return  # unterminated: check_balanced says where
            i = end
        elif c in "([{":
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                raise FormulaError(
                    f"brackets are nested more than {MAX_NESTING_DEPTH} deep (at column "
                    f"{i + 1}); a formula may nest them at most {MAX_NESTING_DEPTH} deep "
                    "(multilevel.spec.limits.MAX_NESTING_DEPTH)"
                )
        elif c in ")]}":
            depth = max(depth - 1, 0)
        i += 1


def expression_size(expr: str) -> int:
    """An upper bound on how deep Python's parser nests ``expr``: its operator characters,
    keywords (``not``, ``lambda``...) and the depth of its brackets."""
    size = sum(1 for c in expr if c in _OPERATOR_CHARS)
    size += sum(1 for w, _, _ in identifiers(expr) if keyword.iskeyword(w))
    depth = top = 0
    for c in expr:
        if c in "([{":
            depth += 1
            top = max(top, depth)
        elif c in ")]}":
            depth -= 1
    return size + top


def check_expression_size(expr: str) -> None:
    """Refuse a Python expression larger than :data:`MAX_EXPRESSION_SIZE`."""
    size = expression_size(expr)
    if size > MAX_EXPRESSION_SIZE:
        shown = expr if len(expr) <= 60 else expr[:57] + "..."
        raise FormulaError(
            f"the expression '{shown}' has {size:,} operators and nested brackets; an "
            f"expression in a formula may have at most {MAX_EXPRESSION_SIZE} "
            "(multilevel.spec.limits.MAX_EXPRESSION_SIZE)"
        )


# -- formulaic's term algebra, counted ---------------------------------------------------

#: formulaic's binary operators: precedence, right-associative
_BINARY = {
    "~": (-100, False),
    "|": (-50, False),
    "+": (100, False),
    "-": (100, False),
    "*": (200, False),
    "/": (200, False),
    "in": (200, False),
    ":": (300, False),
    "**": (500, True),
    "^": (500, True),
}
_UNARY = {"+": 100, "-": 100, "~": -100}
#: counts saturate here, so that no count becomes a huge integer
_CAP = 10**15
_SIGNS = re.compile(r"[+\-]{2,}")


def _symbols(token: str) -> list[str]:
    """The operators of one operator token, as formulaic's resolver splits it (``+-`` is
    ``-``, ``*-`` is ``*`` then ``-``)."""
    if token in _BINARY or token == ".":
        return [token]
    symbol = token
    while True:  # runs of '+' and '-': formulaic's DefaultOperatorResolver, as it is
        m = _SIGNS.search(symbol)
        if not m:
            break
        odd = len(m.group(0).replace("+", "")) % 2
        symbol = symbol[: m.start(0)] + "-" if odd else "+" + symbol[m.end(0) :]
    if symbol in _BINARY:
        return [symbol]
    return list(symbol)


def _power(a: int, k: int) -> int:
    if a <= 1 or k <= 0:
        return a if k > 0 else 1
    out = 1
    for _ in range(k):
        out *= a
        if out >= _CAP:
            return _CAP
    return out


def _combine(symbol: str, a: int, b: int, power: int | None) -> int:
    """An upper bound on the terms formulaic makes of ``A symbol B`` (with repeats)."""
    if symbol in ("^", "**"):
        return _power(a, power) if power is not None else a
    if symbol == ":":
        out = a * b
    elif symbol in ("+", "-", "~", "|", "/", "in"):
        out = a + b
    else:  # '*', and anything formulaic would not take: the most it could mean
        out = a + b + a * b
    return min(out, _CAP)


def check_expansion(tokens, spec: str) -> int:
    """Refuse a formula part whose term algebra formulaic would expand into more than
    :data:`MAX_TERMS` terms; returns the bound on its terms. ``tokens`` are formulaic's
    tokens of ``spec`` as ``(kind, text, start, end)`` (kinds: ``operator``, ``name``,
    ``value``, ``python``, ``context``); the count is an upper bound, computed by operator
    precedence with two stacks (no recursion). Python tokens are checked by
    :func:`check_expression_size`."""
    # operands: [count, literal int or None, start, end]; operators: (symbol, arity, start)
    values: list[list] = []
    ops: list[tuple[str, int, int]] = []
    expect_operand = True

    def fail(count: int, start: int, end: int) -> None:
        part = " ".join(spec[start:end].split())
        shown = part if len(part) <= 60 else part[:57] + "..."
        many = "more than 1e15" if count >= _CAP else f"{count:,}"
        raise FormulaError(
            f"'{shown}' expands into {many} terms of formulaic's algebra (counting "
            f"repeats); a formula may expand into at most {MAX_TERMS:,} "
            "(multilevel.spec.limits.MAX_TERMS): write the interactions you need"
        )

    def push(count: int, literal: int | None, start: int, end: int) -> None:
        nonlocal expect_operand
        if not expect_operand and values:  # two operands in a row: formulaic refuses
            prev = values.pop()
            count = _combine("*", prev[0], count, None)
            start, literal = prev[2], None
        if count > MAX_TERMS:
            fail(count, start, end)
        values.append([count, literal, start, end])
        expect_operand = False

    def apply() -> None:
        symbol, arity, start = ops.pop()
        if arity == 1:
            if values:
                values[-1][1] = None
                values[-1][2] = min(values[-1][2], start)
            return
        if len(values) < 2:
            return  # formulaic refuses it
        b, a = values.pop(), values.pop()
        count = _combine(symbol, a[0], b[0], b[1])
        if count > MAX_TERMS:
            fail(count, a[2], b[3])
        values.append([count, None, a[2], b[3]])

    def precedence(op: tuple[str, int, int]) -> int:
        return _UNARY[op[0]] if op[1] == 1 else _BINARY.get(op[0], (200, False))[0]

    for kind, text, start, end in tokens:
        if kind == "context":
            if text in "([":
                if not expect_operand and values:  # 'f (x)': formulaic refuses it
                    ops.append(("*", 2, start))
                ops.append((text, 0, start))
                expect_operand = True
            else:
                while ops and ops[-1][1] != 0:
                    apply()
                if ops:
                    opened = ops.pop()[2]
                    if values:
                        values[-1][2] = min(values[-1][2], opened)
                        values[-1][3] = end
                expect_operand = False
        elif kind == "operator":
            for symbol in _symbols(text):
                if symbol == ".":
                    push(1, None, start, end)
                elif expect_operand:
                    if symbol in _UNARY:
                        ops.append((symbol, 1, start))
                else:
                    prec, right = _BINARY.get(symbol, (200, False))
                    while ops and ops[-1][1] != 0:
                        top = precedence(ops[-1])
                        if top > prec or (top == prec and not right):
                            apply()
                        else:
                            break
                    ops.append((symbol, 2, start))
                    expect_operand = True
        else:
            literal = None
            if kind == "value" and text.isdigit() and len(text) < 18:
                literal = int(text)
            push(1, literal, start, end)
    while ops:
        if ops[-1][1] == 0:
            ops.pop()
        else:
            apply()
    return sum(v[0] for v in values)
