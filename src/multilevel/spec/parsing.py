"""formulaic's parse of a formula (never evaluated), cached, with every Python factor checked
against the allow-list, and the data columns a parsed formula reads."""

from __future__ import annotations

import functools

from ..errors import FormulaError
from .allowlist import check_expression, value_names


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type when the message is empty)."""
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


@functools.lru_cache(maxsize=512)
def formulaic_formula(spec: str):
    """formulaic's parse of ``spec`` (never evaluated), cached: parsing costs more than
    building a small model matrix."""
    from formulaic import Formula

    return Formula(spec)


def parse_factors(rhs: str, formula: str | None = None) -> list:
    """The formulaic factors of a formula or right-hand side, parsed (never evaluated), each
    Python factor checked by :func:`~multilevel.spec.allowlist.check_expression`."""
    from formulaic.parser.types.factor import Factor

    try:
        parsed = formulaic_formula(rhs)
    except Exception as e:  # noqa: BLE001 - formulaic raises several types
        msg = first_line(e)
        if "`.` operator" in msg:
            msg = "'.' (all other columns) is not supported: name the columns"
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
