"""formulaic's parse of a formula (never evaluated), cached, with every Python factor checked
against the allow-list, and the data columns a parsed formula reads."""

from __future__ import annotations

import functools
import re

from ..errors import FormulaError
from .allowlist import check_expression, value_names
from .bases import FactorShape, factor_shape
from .limits import check_expansion, check_expression_size, check_text
from .names import quoted, restore_names


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type when the message is empty)."""
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def formulaic_tokens(spec: str) -> list[tuple[str, str, int, int]] | None:
    """formulaic's tokens of ``spec`` as ``(kind, text, start, end)``, by formulaic's own
    tokenizer (a loop over the characters); None when it refuses the text (formulaic's
    parse then says why)."""
    from formulaic.parser.algos.tokenize import tokenize

    try:
        return [
            (t.kind.value, t.token, t.source_start or 0, (t.source_end or 0) + 1)
            for t in tokenize(spec)
            if t.kind is not None
        ]
    except Exception:  # noqa: BLE001 - formulaic raises several types
        return None


def check_bounded(spec: str) -> None:
    """Refuse, before formulaic parses ``spec``, what would make its parse unbounded:
    length and nesting (:func:`~multilevel.spec.limits.check_text`), Python expressions
    too deep for Python's parser, a term algebra that expands into too many terms."""
    check_text(spec, slack=2)  # parts of a formula, rewritten, may be a little longer
    tokens = formulaic_tokens(spec)
    if tokens is None:
        return
    for kind, text, _, _ in tokens:
        if kind == "python":
            check_expression_size(text)
    check_expansion(tokens, spec)


@functools.lru_cache(maxsize=512)
def formulaic_formula(spec: str):
    """formulaic's parse of ``spec`` (never evaluated), cached: parsing costs more than
    building a small model matrix. The parse is bounded first (:func:`check_bounded`)."""
    from formulaic import Formula

    check_bounded(spec)
    try:
        return Formula(spec)
    except (RecursionError, MemoryError):
        raise FormulaError(f"'{spec.strip()[:60]}' is too complex to parse") from None


_CALL = re.compile(r"^(?:[^\W\d]|\.)[\w.]*\(.*\)$", re.S)
_MISSING_OPERATOR = re.compile(r"Missing operator between `([^`]*)` and `([^`]*)`")


def _quoting_hint(message: str) -> str:
    """How to quote a column name with spaces or other characters, when formulaic's message
    suggests one was written bare."""
    m = _MISSING_OPERATOR.search(message)
    if m:
        return f" (a column name with spaces goes in backticks: `{m.group(1)} {m.group(2)}`)"
    if message.startswith("invalid syntax") or "invalid decimal literal" in message:
        return " (a column name that is not a Python name goes in backticks, e.g. log(`my x`))"
    return ""


def parse_factors(rhs: str, formula: str | None = None) -> list:
    """The formulaic factors of a formula or right-hand side, parsed (never evaluated), each
    Python factor checked by :func:`~multilevel.spec.allowlist.check_expression`."""
    from formulaic.parser.types.factor import Factor

    try:
        parsed = formulaic_formula(rhs)
    except FormulaError as e:
        raise FormulaError(e.reason, formula) from None
    except Exception as e:  # noqa: BLE001 - formulaic raises several types
        msg = first_line(e)
        if "`.` operator" in msg:
            msg = "'.' (all other columns) is not supported: name the columns"
        msg += _quoting_hint(msg)
        raise FormulaError(f"cannot parse '{rhs.strip()}': {msg}", formula) from None
    sides = [parsed.lhs, parsed.rhs] if hasattr(parsed, "lhs") else [parsed]
    out = []
    for side in sides:
        for term in side:
            for factor in term.factors:
                if factor.eval_method == Factor.EvalMethod.PYTHON:
                    check_expression(factor.expr, formula)
                out.append(factor)
    return out


def columns_read(factors) -> frozenset[str]:
    """Column names the (already checked) formulaic factors read."""
    from formulaic.parser.types.factor import Factor

    used: set[str] = set()
    for f in factors:
        if f.eval_method == Factor.EvalMethod.LOOKUP:
            used.add(f.expr)
        elif f.eval_method == Factor.EvalMethod.PYTHON:
            used |= value_names(f.expr)
    return frozenset(used)


def term_shapes(rhs: str) -> tuple[tuple[str, tuple[FactorShape, ...]], ...]:
    """Each term of the right-hand side ``rhs`` (as formulaic expands it, never evaluated)
    with what each of its factors makes (:class:`~multilevel.spec.bases.FactorShape`):
    enough to count its columns on the data before formulaic builds them. A simple ``rhs``
    (:mod:`multilevel.spec.simple`) is read without formulaic."""
    from .simple import simple_terms

    simple = simple_terms(rhs)
    if simple is not None:
        out = [("1", (FactorShape("1", "literal"),))] if simple.intercept else []
        out += [(quoted(n), (FactorShape(n, "column", n),)) for n in simple.names]
        return tuple(out)
    from formulaic.parser.types.factor import Factor

    parsed = formulaic_formula(rhs)
    sides = [parsed.lhs, parsed.rhs] if hasattr(parsed, "lhs") else [parsed]
    out = []
    for side in sides:
        for term in side:
            shapes, texts = [], []
            for f in term.factors:
                if f.eval_method == Factor.EvalMethod.LOOKUP:
                    shapes.append(FactorShape(f.expr, "column", f.expr))
                    texts.append(quoted(f.expr))
                elif f.eval_method == Factor.EvalMethod.PYTHON:
                    shapes.append(factor_shape(f.expr))
                    texts.append(f.expr if _CALL.match(f.expr) else "{" + f.expr + "}")
                else:
                    shapes.append(FactorShape(f.expr, "literal"))
                    texts.append(f.expr)
            out.append((restore_names(":".join(texts)), tuple(shapes)))
    return tuple(out)
