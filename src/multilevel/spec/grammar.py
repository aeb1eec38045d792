"""lme4's formula language: a fixed part for formulaic and bar terms ``(expr | g)`` around it.

``parse_formula("y ~ x + (1 + x | g)")`` returns a :class:`ModelFormula`: the response, the
fixed-effects right-hand side, one :class:`RandomTerm` per random-effects block, the offsets,
and the data columns each part reads. It is parsed and checked once; everything downstream
reads this object. The grammar follows lme4's ``findbars``/``expandDoubleVerts``/
``expandSlash``:

* ``(expr | g)``    one block, correlated effects for the columns of ``expr``;
* ``(expr || g)``   one block per term of ``expr`` (uncorrelated);
* ``(expr | a/b)``  nesting: the blocks ``(expr | a)`` and ``(expr | b:a)``;
* ``(expr | a:b)``  the interaction of ``a`` and ``b`` as one grouping factor;
* ``offset(expr)``  a term of the fixed part with coefficient 1 (as lme4; several add up).

A formula never runs code: every expression formulaic would evaluate as Python, in the
response, the fixed part, the offsets and inside the bars, is checked against the allow-list
(:mod:`multilevel.spec.allowlist`) before anything is evaluated. ``C(g, contrast)`` takes the
contrast as patsy, formulaic and R write it (:mod:`multilevel.spec.contrasts`). A formula
whose parts are only sums of column names, ``1`` and ``0`` (:mod:`multilevel.spec.simple`)
is read without formulaic, to the same result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import FormulaError
from .allowlist import scan_refused
from .contrasts import rewrite_contrasts
from .limits import check_text
from .names import alias_names, is_bare_name, quote_unreadable
from .parsing import columns_read, first_line, formulaic_formula, parse_factors
from .simple import simple_columns, split_simple
from .text import (
    check_balanced,
    code_only,
    matching,
    skip_quoted,
    split_terms,
    top_level_bars,
    top_level_split,
)


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects block: the columns of ``expr`` varying over the levels of ``group``.

    ``factors`` are the data columns whose interaction forms the grouping factor;
    ``group`` is its display name (``"b:a"`` for ``a/b``), as lme4 names it.
    ``correlated`` is False for the blocks that ``||`` produced (one column each).
    """

    expr: str
    factors: tuple[str, ...]
    correlated: bool = True

    @property
    def group(self) -> str:
        return ":".join(self.factors)

    def __str__(self) -> str:
        return f"({self.expr} | {self.group})"


@dataclass(frozen=True)
class ModelFormula:
    """A parsed mixed-model formula: ``response ~ fixed + offsets + random terms``, with the
    data columns each part reads (``columns``: all of them)."""

    text: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]
    offsets: tuple[str, ...] = ()
    #: lme4's ``cbind(successes, failures)`` response: the two expressions, else None
    binomial: tuple[str, str] | None = None
    response_columns: frozenset[str] = frozenset()
    fixed_columns: frozenset[str] = frozenset()
    random_columns: frozenset[str] = frozenset()
    offset_columns: frozenset[str] = frozenset()

    @property
    def fixed_formula(self) -> str:
        return f"{self.response} ~ {self.fixed}"

    @property
    def group_columns(self) -> frozenset[str]:
        return frozenset(f for rt in self.random for f in rt.factors)

    @property
    def predictor_columns(self) -> frozenset[str]:
        """Columns read as predictors (fixed, random and offsets), the response's apart."""
        used = self.fixed_columns | self.random_columns | self.offset_columns
        return used - self.response_columns

    @property
    def columns(self) -> frozenset[str]:
        return (
            self.response_columns
            | self.fixed_columns
            | self.random_columns
            | self.offset_columns
            | self.group_columns
        )


_OFFSET = re.compile(r"^offset\s*\(")


def _offset_term(term: str, formula: str, pos: int) -> str | None:
    """``"offset(log(t))"`` -> ``"log(t)"``; None for any other term."""
    m = _OFFSET.match(term)
    if m is None or matching(term, m.end() - 1) != len(term) - 1:
        return None
    inner = term[m.end() : -1].strip()
    if not inner:
        raise FormulaError(
            "offset() needs an expression, e.g. 'offset(log(exposure))'", formula, pos
        )
    return inner


def parse_formula(text: str) -> ModelFormula:
    """Split an lme4 formula into response, fixed part and random-effects blocks, and check
    every expression in it against the allow-list. Raises
    :class:`FormulaError` saying what is wrong and where.

    The work is bounded before any is done (:mod:`multilevel.spec.limits`): the length and
    the nesting of the text here, the expansion of each part where formulaic parses it."""
    if not isinstance(text, str):
        raise FormulaError(f"the formula must be a string, not {type(text).__name__}")
    if not text.strip():
        raise FormulaError("the formula is empty")
    check_text(text)
    try:
        mf = _parse(text)
    except (RecursionError, MemoryError):  # the limits keep these away; never an internal error
        raise FormulaError(
            "the formula is too complex to parse: write it with fewer nested brackets and operators"
        ) from None
    return mf


def _parse(text: str) -> ModelFormula:
    check_balanced(text)
    scan_refused(text)
    sides = top_level_split(text, "~")
    if len(sides) != 2:
        second = text.find("~", text.find("~") + 1)
        raise FormulaError(
            "a formula needs exactly one '~' with the response on its left, e.g. 'y ~ x + (1 | g)'",
            text,
            second if second >= 0 else len(text),
        )
    inner = [i for i, c in enumerate(code_only(text)) if c == "~" and i != len(sides[0])]
    if inner:
        raise FormulaError(
            "a formula has one '~', between the response and the terms; this one is inside "
            "brackets",
            text,
            inner[0],
        )
    # names in every language: one with a combining accent is read whole (formulaic's
    # tokenizer would split it); inside an expression one Python would read in another form
    # (µg, a decomposed accent) or not at all (`class`) by an alias the data layer evaluates
    lhs = alias_names(quote_unreadable(sides[0].strip()))
    rhs = alias_names(quote_unreadable(sides[1]))
    offset = len(sides[0]) + 1
    if not lhs:
        raise FormulaError("the formula has no response on the left of '~'", text, 0)
    if "|" in code_only(sides[0]):
        raise FormulaError(
            f"the response '{lhs}' cannot contain '|': random-effects terms go on the right of '~'",
            text,
            code_only(text).find("|"),
        )
    _check_response(sides[0], text)
    if not rhs.strip():
        raise FormulaError(
            "nothing on the right of '~': write e.g. 'y ~ 1 + (1 | g)'", text, len(text.rstrip())
        )
    last = rhs.rstrip()[-1]
    if last in "+-*/:^~|%,":
        raise FormulaError(
            f"the formula ends with the operator '{last}', which needs a term after it",
            text,
            offset + len(rhs.rstrip()) - 1,
        )
    fixed_parts: list[str] = []
    random: list[RandomTerm] = []
    offsets: list[str] = []
    for start, raw in split_terms(rhs):
        term = raw.strip()
        if not term:
            continue
        pos = offset + start + (len(raw) - len(raw.lstrip()))
        sign = ""
        if term[0] in "+-":
            sign, term = term[0], term[1:].strip()
            pos = text.find(term, pos)
        inner_offset = _offset_term(term, text, pos)
        if inner_offset is not None:
            if sign == "-":
                raise FormulaError(f"an offset cannot be removed: '-{term}'", text, pos)
            offsets.append(inner_offset)
            continue
        bar = _bar_term(term, text, pos)
        if bar is None:
            if "|" in code_only(term):
                bar_pos = pos + code_only(term).find("|")
                raise FormulaError(
                    "a '|' must be inside a random-effects term in parentheses, added with '+',"
                    f" e.g. 'y ~ x + (1 | g)'; found it in '{term}'",
                    text,
                    bar_pos,
                )
            term = rewrite_contrasts(term)
            fixed_parts.append(f"- {term}" if sign == "-" else term)
            continue
        if sign == "-":
            raise FormulaError(f"a random-effects term cannot be removed: '-{term}'", text, pos)
        expr, double, group, group_pos = bar
        expr = rewrite_contrasts(expr)
        for factors in _expand_group(group, text, group_pos):
            if double:
                random.extend(_split_double(expr, factors, text))
            else:
                random.append(RandomTerm(expr.strip(), factors, True))
    fixed = " + ".join(p for p in fixed_parts if not p.startswith("-"))
    removals = " ".join(p for p in fixed_parts if p.startswith("-"))
    fixed = (fixed or "1") + (f" {removals}" if removals else "")
    simple = None if offsets else simple_columns(lhs, fixed, [rt.expr for rt in random])
    if simple is not None:  # names, 1 and 0 only: the columns without formulaic's parse
        return ModelFormula(
            text=text.strip(),
            response=lhs,
            fixed=fixed,
            random=tuple(random),
            response_columns=simple[0],
            fixed_columns=simple[1],
            random_columns=simple[2],
        )
    binomial = _cbind(lhs, text)
    if binomial is None:
        response_factors = parse_factors(f"{lhs} ~ 1", text)
        response_columns = columns_read(response_factors)
    else:
        response_columns = frozenset()
        for part in binomial:
            response_columns |= columns_read(parse_factors(offset_formula(part), text))
    fixed_factors = parse_factors(f"1 ~ {fixed}" if binomial else f"{lhs} ~ {fixed}", text)
    random_columns: frozenset[str] = frozenset()
    for rt in random:
        random_columns |= columns_read(parse_factors(rt.expr, text))
    offset_columns: frozenset[str] = frozenset()
    for expr in offsets:
        offset_columns |= columns_read(parse_factors(offset_formula(expr), text))
    return ModelFormula(
        text=text.strip(),
        response=lhs,
        fixed=fixed,
        random=tuple(random),
        offsets=tuple(offsets),
        response_columns=response_columns,
        fixed_columns=columns_read(fixed_factors) - response_columns,
        random_columns=random_columns,
        offset_columns=offset_columns,
        binomial=binomial,
    )


_CBIND = re.compile(r"^cbind\s*\(")


def _cbind(lhs: str, formula: str) -> tuple[str, str] | None:
    """``"cbind(s, n - s)"`` -> ``("s", "n - s")``: lme4's binomial response of successes
    and failures; None for any other response."""
    m = _CBIND.match(lhs)
    if m is None or matching(lhs, m.end() - 1) != len(lhs) - 1:
        return None
    parts = [p.strip() for p in top_level_split(lhs[m.end() : -1], ",")]
    if len(parts) != 2 or not all(parts):
        raise FormulaError(
            f"cbind() in the response takes two expressions, the successes and the failures, "
            f"e.g. 'cbind(s, n - s)'; found {len(parts)} in '{lhs}'",
            formula,
            formula.find("cbind"),
        )
    return parts[0], parts[1]


def offset_formula(expr: str) -> str:
    """The formulaic right-hand side that evaluates one offset as a single column."""
    plain = _QUOTED.match(expr) or is_bare_name(expr)
    return f"0 + {expr}" if plain else f"0 + {{{expr}}}"


_QUOTED = re.compile(r"^`[^`]+`$")


_NUMBER_EXPONENT = re.compile(r"(?<![A-Za-z0-9_.])[0-9.]+[eE]$")


def _check_response(lhs: str, formula: str) -> None:
    """Refuse formula operators outside brackets in the response. On the left of '~' lme4
    computes them (``y - 1`` is y minus one, ``y^2`` the square, ``y:z`` the sequence) while
    formulaic reads them as term algebra (``y - 1`` and ``y^2`` are y, ``y:z`` the product),
    so the fit would silently differ from lme4's: arithmetic belongs inside ``I()``."""
    code = code_only(lhs)
    if not re.sub(r"[()\s]", "", code):
        raise FormulaError("the formula has no response on the left of '~'", formula, 0)
    # brackets of a call, I(...) or {...} hide operators; grouping parentheses do not
    hiding: list[bool] = []
    for i, c in enumerate(code):
        if c in "([{":
            before = code[:i].rstrip()
            hiding.append(
                c != "(" or (bool(before) and (before[-1].isalnum() or before[-1] in "_.`"))
            )
        elif c in ")]}":
            if hiding:
                hiding.pop()
        elif not any(hiding) and c in "+-*/:^%":
            if c in "+-" and _NUMBER_EXPONENT.search(code[:i]):
                continue  # the exponent of a number such as 1e-5
            op = "**" if code.startswith("**", i) else c
            if c == "%":
                end = code.find("%", i + 1)
                op = code[i : end + 1] if end > i else c
            if op in ("+", "-", "*", "/", "^", "**") and re.search(r"\w", lhs):
                hint = f"for arithmetic write 'I({lhs.strip().replace('^', '**')})'"
            else:
                hint = (
                    "the response must be a column, a function of columns such as 'log(y)', "
                    "or arithmetic inside 'I()'"
                )
            raise FormulaError(
                f"the response '{lhs.strip()}' contains the operator '{op}', which on the "
                f"left of '~' is not computed; {hint}",
                formula,
                i,
            )


def _bar_term(term: str, formula: str, pos: int) -> tuple[str, bool, str, int] | None:
    """``"(1 + x | g)"`` -> ``("1 + x", False, "g", position of g)``; None for a fixed term.
    ``pos`` is the position of ``term`` in ``formula``, for messages."""
    if not (term.startswith("(") and matching(term, 0) == len(term) - 1):
        return None
    inner = term[1:-1]
    if not inner.strip():
        raise FormulaError("empty parentheses '()'", formula, pos)
    bars = top_level_bars(inner)
    if not bars:
        if inner.strip().startswith("("):  # ((1 | g))
            lead = len(inner) - len(inner.lstrip())
            return _bar_term(inner.strip(), formula, pos + 1 + lead)
        return None
    if len(bars) > 1:
        raise FormulaError(
            f"more than one '|' in the random-effects term '{term}'",
            formula,
            pos + 1 + bars[1][0],
        )
    at, width = bars[0]
    if width > 2:
        raise FormulaError(
            f"'{'|' * width}' in '{term}': use '|' (correlated) or '||' (uncorrelated)",
            formula,
            pos + 1 + at,
        )
    expr, group = inner[:at], inner[at + width :]
    if not expr.strip():
        raise FormulaError(
            f"nothing on the left of '{'|' * width}' in the random-effects term '{term}': "
            "write e.g. '(1 | g)'",
            formula,
            pos,
        )
    if "|" in code_only(expr):
        raise FormulaError(
            f"a random-effects term cannot contain another one: '{term}'",
            formula,
            pos + 1 + code_only(expr).find("|"),
        )
    if not group.strip():
        raise FormulaError(
            f"no grouping factor after '{'|' * width}' in the random-effects term '{term}': "
            "write e.g. '(1 | g)'",
            formula,
            pos + 1 + at + width + len(group),
        )
    return expr, width == 2, group, pos + 1 + at + width


def _expand_group(spec: str, formula: str, pos: int) -> list[tuple[str, ...]]:
    """``"a/b/c"`` -> ``[(a,), (b, a), (c, b, a)]``; ``"a:b"`` -> ``[(a, b)]`` (lme4's names).

    Names may be backtick-quoted. ``pos`` is the position of ``spec`` in ``formula``."""
    # tokens: names and the operators '/' and ':'
    tokens: list[tuple[str, int]] = []  # (token, position in formula)
    i = 0
    while i < len(spec):
        c = spec[i]
        if c.isspace():
            i += 1
        elif c == "`":
            end = skip_quoted(spec, i, formula, pos)
            if end == i + 1:
                raise FormulaError("an empty `` name as grouping factor", formula, pos + i)
            tokens.append((spec[i : end + 1], pos + i))
            i = end + 1
        elif c in "/:":
            tokens.append((c, pos + i))
            i += 1
        else:
            j = i
            while j < len(spec) and not spec[j].isspace() and spec[j] not in "/:`":
                j += 1
            word = spec[i:j]
            if not is_bare_name(word):
                whole = spec.strip()
                raise FormulaError(
                    f"the grouping factor '{whole}' must be a column name, an "
                    "interaction 'a:b' or a nesting 'a/b'; a column name that is not a Python "
                    f"name ('{word}' is not) goes in backticks: '{_backticked(whole, word)}'",
                    formula,
                    pos + i,
                )
            tokens.append((word, pos + i))
            i = j
    out: list[tuple[str, ...]] = []
    nested: tuple[str, ...] = ()
    names: list[str] = []
    expect_name = True
    for tok, tpos in [*tokens, ("/", -1)]:
        if tok in "/:":
            if expect_name:
                where = tpos if tpos >= 0 else pos + len(spec.rstrip())
                raise FormulaError(
                    f"a grouping-factor name is missing in '{spec.strip()}'", formula, where
                )
            expect_name = True
            if tok == "/":
                nested = tuple(names) + nested
                out.append(nested)
                names = []
            continue
        if not expect_name:
            whole = spec.strip()
            example = whole if not re.search(r"[/:`]", whole) else "my group"
            raise FormulaError(
                f"two grouping-factor names in a row in '{whole}': join them with ':' "
                "(interaction) or '/' (nesting); a column name with spaces "
                f"goes in backticks: `{example}`",
                formula,
                tpos,
            )
        expect_name = False
        names.append(tok[1:-1] if tok.startswith("`") else tok)
    return out


def _backticked(spec: str, word: str) -> str:
    """The grouping factor ``spec`` with ``word`` quoted, for messages: ``(1 | `a-b`)``."""
    if "`" in word:
        return spec
    return spec.replace(word, f"`{word}`", 1)


def _factor_text(factor) -> str:
    """A formulaic factor written back as formula text that parses to the same factor."""
    from formulaic.parser.types.factor import Factor

    if factor.eval_method == Factor.EvalMethod.PYTHON:
        return "{" + factor.expr + "}"
    if factor.eval_method == Factor.EvalMethod.LOOKUP and not is_bare_name(factor.expr):
        return f"`{factor.expr}`"
    return factor.expr


def _split_double(expr: str, factors: tuple[str, ...], formula: str) -> list[RandomTerm]:
    """lme4's expandDoubleVerts: ``(1 + x || g)`` -> ``(1 | g) + (0 + x | g)``."""
    simple = split_simple(expr)
    if simple is not None:  # names, 1 and 0 only: the terms without formulaic's parse
        return [RandomTerm(t, factors, False) for t in simple]
    parse_factors(expr, formula)
    try:
        terms = list(formulaic_formula(expr))
    except Exception as e:  # noqa: BLE001 - formulaic raises several types
        raise FormulaError(
            f"cannot parse '{expr.strip()}' in a '||' term: {first_line(e)}", formula
        ) from None
    out = []
    for t in terms:
        text = ":".join(_factor_text(f) for f in t.factors)
        if text == "1":
            out.append(RandomTerm("1", factors, False))
        else:
            out.append(RandomTerm(f"0 + {text}", factors, False))
    return out
