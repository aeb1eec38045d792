"""lme4's formula language: a fixed part for formulaic and bar terms ``(expr | g)`` around it.

``parse_formula("y ~ x + (1 + x | g)")`` returns a :class:`ModelFormula` with the response,
the fixed-effects right-hand side and one :class:`RandomTerm` per random-effects block.
The grammar follows lme4's ``findbars``/``expandDoubleVerts``/``expandSlash``:

* ``(expr | g)``    one block, correlated effects for the columns of ``expr``;
* ``(expr || g)``   one block per term of ``expr`` (uncorrelated);
* ``(expr | a/b)``  nesting: the blocks ``(expr | a)`` and ``(expr | b:a)``;
* ``(expr | a:b)``  the interaction of ``a`` and ``b`` as one grouping factor.

A formula never runs code. formulaic evaluates as Python every factor written as a call
(``f(x)``), inside ``I(...)`` or inside ``{...}``; :func:`parse_formula` checks every such
expression, in the response, the fixed part and inside the bars, against an allow-list
(:func:`check_expression`) before anything is evaluated, and refuses Python keywords, dunder
names, indexing and statements anywhere in the formula (:func:`_scan_refused`).

``C(g, contrast)`` takes the contrast as patsy, formulaic and R write it (``Sum``,
``Treatment('b')``, ``contr.sum``, R's ``C(g, sum)``, a name as a string ``C(g, "sum")``...);
:func:`parse_formula` rewrites each to the spelling formulaic 1.2 evaluates (``Treatment`` ->
``Treatment()``, ``"sum"`` -> ``contr.sum``, ``Treatment(base=...)`` ->
``Treatment(reference=...)``) and refuses any other contrast, naming it, before anything is
evaluated (:data:`CONTRASTS`).
"""

from __future__ import annotations

import ast
import functools
import keyword
import re
from dataclasses import dataclass

from .errors import FormulaError

#: Functions a formula may call. Each is provided by formulaic's transforms or by
#: :data:`EXTRA_FUNCTIONS` (numpy ufuncs the frame passes to formulaic as evaluation context).
ALLOWED_FUNCTIONS = frozenset(
    {
        "log",
        "log2",
        "log10",
        "log1p",
        "exp",
        "expm1",
        "sqrt",
        "abs",
        "sin",
        "cos",
        "tan",
        "scale",
        "center",
        "standardize",
        "C",
        "I",
        "poly",
        "bs",
        "Treatment",
        "Sum",
        "Helmert",
        "Diff",
        "Poly",
        "contr.treatment",
        "contr.sum",
        "contr.helmert",
        "contr.poly",
        "contr.diff",
        "contr.SAS",
    }
)
#: Allowed functions that formulaic's transforms do not provide: name -> numpy function name.
EXTRA_FUNCTIONS = {
    "sqrt": "sqrt",
    "abs": "abs",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "log1p": "log1p",
    "expm1": "expm1",
}
_ALLOWED_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.FloorDiv, ast.Mod)
_ALLOWED_UNARY = (ast.UAdd, ast.USub)
_ALLOWED_CMP = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
#: Python keywords that may appear in a formula (as constants in an argument).
_ALLOWED_KEYWORDS = frozenset({"True", "False"})
_QUOTES = "'\"`"
_MAX_CONSTANT_EXPONENT = 64


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
    """A parsed mixed-model formula: ``response ~ fixed + random terms``."""

    text: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]

    @property
    def fixed_formula(self) -> str:
        return f"{self.response} ~ {self.fixed}"


# -- lexical helpers ---------------------------------------------------------------------


def _skip_quoted(text: str, i: int, formula: str | None = None, offset: int = 0) -> int:
    """Index of the quote closing the one at ``text[i]``."""
    end = text.find(text[i], i + 1)
    if end < 0:
        raise FormulaError(
            f"unterminated quote {text[i]}", formula or text, offset + i if formula else i
        )
    return end


def _matching(text: str, start: int) -> int:
    """Index of the bracket closing the one opened at ``text[start]``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[start]]]
    i = start + 1
    while i < len(text):
        c = text[i]
        if c in _QUOTES:
            i = _skip_quoted(text, i)
        elif c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack[-1]:
                raise FormulaError(f"unbalanced brackets: unexpected {c!r}", text, i)
            stack.pop()
            if not stack:
                return i
        i += 1
    raise FormulaError(f"unbalanced brackets: {text[start]!r} is never closed", text, start)


def _check_balanced(text: str) -> None:
    i = 0
    while i < len(text):
        c = text[i]
        if c in "([{":
            i = _matching(text, i)
        elif c in ")]}":
            raise FormulaError(f"unbalanced brackets: unexpected {c!r}", text, i)
        elif c in _QUOTES:
            i = _skip_quoted(text, i)
        i += 1


def _code_only(text: str) -> str:
    """``text`` with the contents of quotes and backticks blanked out (same length)."""
    out = list(text)
    i = 0
    while i < len(text):
        if text[i] in _QUOTES:
            end = _skip_quoted(text, i)
            for j in range(i + 1, end):
                out[j] = " "
            i = end
        i += 1
    return "".join(out)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _scan_refused(text: str) -> None:
    """Refuse, with its position, anything in the formula that is neither formula syntax nor
    an expression the allow-list could accept: Python keywords (``lambda``, ``import``...),
    dunder names (``__import__``, ``x.__class__``), indexing and lists (``[...]``),
    statements (``;``) and assignment expressions (``:=``)."""
    code = _code_only(text)
    code = re.sub(r"%[A-Za-z_]*%", lambda m: " " * len(m.group()), code)  # %in%
    for m in _IDENT.finditer(code):
        word, pos = m.group(), m.start()
        if pos > 0 and code[pos - 1].isdigit() and not word.startswith("_"):
            continue  # the exponent of a number such as 1e5
        if word.startswith("__"):
            raise FormulaError(f"name '{word}' is not allowed in a formula", text, pos)
        if keyword.iskeyword(word) and word not in _ALLOWED_KEYWORDS:
            raise FormulaError(
                f"the Python keyword '{word}' is not allowed in a formula", text, pos
            )
    for token, what in (
        ("[", "indexing and lists"),
        ("]", "indexing and lists"),
        (";", "statements"),
        (":=", "assignment ':='"),
    ):
        pos = code.find(token)
        if pos >= 0:
            raise FormulaError(f"'{token}' ({what}) is not allowed in a formula", text, pos)


def _top_level_split(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` where it is not inside brackets or quotes."""
    parts, depth, last, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in _QUOTES:
            i = _skip_quoted(text, i)
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[last:i])
            last = i + len(sep)
            i = last
            continue
        i += 1
    parts.append(text[last:])
    return parts


def _split_terms(rhs: str) -> list[tuple[int, str]]:
    """Split a right-hand side at top-level '+' and '-', keeping each '-' with its term.
    Returns ``(start, text)`` pairs, ``start`` being the index in ``rhs``."""
    parts: list[tuple[int, str]] = []
    depth, last, i = 0, 0, 0
    while i < len(rhs):
        c = rhs[i]
        if c in _QUOTES:
            i = _skip_quoted(rhs, i)
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c in "+-":
            prev = rhs[last:i]
            # a '-' right after an operator belongs to a number, e.g. 'x ** -1'
            if c == "-" and prev.rstrip().endswith(("*", "/", "^", "(", ":")):
                i += 1
                continue
            parts.append((last, prev))
            last = i if c == "-" else i + 1
        i += 1
    parts.append((last, rhs[last:]))
    return parts


def _top_level_bars(inner: str) -> list[tuple[int, int]]:
    """``(position, length)`` of each run of '|' outside brackets and quotes."""
    runs: list[tuple[int, int]] = []
    depth, i = 0, 0
    while i < len(inner):
        c = inner[i]
        if c in _QUOTES:
            i = _skip_quoted(inner, i)
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "|" and depth == 0:
            j = i
            while j < len(inner) and inner[j] == "|":
                j += 1
            runs.append((i, j - i))
            i = j
            continue
        i += 1
    return runs


# -- the grammar -------------------------------------------------------------------------


def parse_formula(text: str) -> ModelFormula:
    """Split an lme4 formula into response, fixed part and random-effects blocks, and check
    every expression in it (see :func:`check_formula_expressions`). Raises
    :class:`FormulaError` saying what is wrong and where."""
    if not isinstance(text, str):
        raise FormulaError(f"the formula must be a string, not {type(text).__name__}")
    if not text.strip():
        raise FormulaError("the formula is empty")
    _check_balanced(text)
    _scan_refused(text)
    sides = _top_level_split(text, "~")
    if len(sides) != 2:
        second = text.find("~", text.find("~") + 1)
        raise FormulaError(
            "a formula needs exactly one '~' with the response on its left, e.g. 'y ~ x + (1 | g)'",
            text,
            second if second >= 0 else len(text),
        )
    inner = [i for i, c in enumerate(_code_only(text)) if c == "~" and i != len(sides[0])]
    if inner:
        raise FormulaError(
            "a formula has one '~', between the response and the terms; this one is inside "
            "brackets",
            text,
            inner[0],
        )
    lhs, rhs = sides[0].strip(), sides[1]
    offset = len(sides[0]) + 1
    if not lhs:
        raise FormulaError("the formula has no response on the left of '~'", text, 0)
    if "|" in _code_only(sides[0]):
        raise FormulaError(
            f"the response '{lhs}' cannot contain '|': random-effects terms go on the right of '~'",
            text,
            _code_only(text).find("|"),
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
    for start, raw in _split_terms(rhs):
        term = raw.strip()
        if not term:
            continue
        pos = offset + start + (len(raw) - len(raw.lstrip()))
        sign = ""
        if term[0] in "+-":
            sign, term = term[0], term[1:].strip()
            pos = text.find(term, pos)
        bar = _bar_term(term, text, pos)
        if bar is None:
            if "|" in _code_only(term):
                bar_pos = pos + _code_only(term).find("|")
                raise FormulaError(
                    "a '|' must be inside a random-effects term in parentheses, added with '+',"
                    f" e.g. 'y ~ x + (1 | g)'; found it in '{term}'",
                    text,
                    bar_pos,
                )
            term = _rewrite_contrasts(term)
            fixed_parts.append(f"- {term}" if sign == "-" else term)
            continue
        if sign == "-":
            raise FormulaError(f"a random-effects term cannot be removed: '-{term}'", text, pos)
        expr, double, group, group_pos = bar
        expr = _rewrite_contrasts(expr)
        for factors in _expand_group(group, text, group_pos):
            if double:
                random.extend(_split_double(expr, factors, text))
            else:
                random.append(RandomTerm(expr.strip(), factors, True))
    fixed = " + ".join(p for p in fixed_parts if not p.startswith("-"))
    removals = " ".join(p for p in fixed_parts if p.startswith("-"))
    fixed = (fixed or "1") + (f" {removals}" if removals else "")
    mf = ModelFormula(text=text.strip(), response=lhs, fixed=fixed, random=tuple(random))
    check_formula_expressions(mf.fixed_formula, text)
    for rt in mf.random:
        check_formula_expressions(rt.expr, text)
    return mf


_NUMBER_EXPONENT = re.compile(r"(?<![A-Za-z0-9_.])[0-9.]+[eE]$")


def _check_response(lhs: str, formula: str) -> None:
    """Refuse formula operators outside brackets in the response. On the left of '~' lme4
    computes them (``y - 1`` is y minus one, ``y^2`` the square, ``y:z`` the sequence) while
    formulaic reads them as term algebra (``y - 1`` and ``y^2`` are y, ``y:z`` the product),
    so the fit would silently differ from lme4's: arithmetic belongs inside ``I()``."""
    code = _code_only(lhs)
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
    if not (term.startswith("(") and _matching(term, 0) == len(term) - 1):
        return None
    inner = term[1:-1]
    if not inner.strip():
        raise FormulaError("empty parentheses '()'", formula, pos)
    bars = _top_level_bars(inner)
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
    if "|" in _code_only(expr):
        raise FormulaError(
            f"a random-effects term cannot contain another one: '{term}'",
            formula,
            pos + 1 + _code_only(expr).find("|"),
        )
    if not group.strip():
        raise FormulaError(
            f"no grouping factor after '{'|' * width}' in the random-effects term '{term}': "
            "write e.g. '(1 | g)'",
            formula,
            pos + 1 + at + width + len(group),
        )
    return expr, width == 2, group, pos + 1 + at + width


_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


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
            end = _skip_quoted(spec, i, formula, pos)
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
            if not _NAME.match(word):
                raise FormulaError(
                    f"the grouping factor '{spec.strip()}' must be a column name, an "
                    "interaction 'a:b' or a nesting 'a/b' (quote odd names with backticks)",
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
            raise FormulaError(
                f"two grouping-factor names in a row in '{spec.strip()}': join them with ':' "
                "(interaction) or '/' (nesting)",
                formula,
                tpos,
            )
        expect_name = False
        names.append(tok[1:-1] if tok.startswith("`") else tok)
    return out


def _factor_text(factor) -> str:
    """A formulaic factor written back as formula text that parses to the same factor."""
    from formulaic.parser.types.factor import Factor

    if factor.eval_method == Factor.EvalMethod.PYTHON:
        return "{" + factor.expr + "}"
    if factor.eval_method == Factor.EvalMethod.LOOKUP and not _NAME.match(factor.expr):
        return f"`{factor.expr}`"
    return factor.expr


def _split_double(expr: str, factors: tuple[str, ...], formula: str) -> list[RandomTerm]:
    """lme4's expandDoubleVerts: ``(1 + x || g)`` -> ``(1 | g) + (0 + x | g)``."""
    check_formula_expressions(expr, formula)
    try:
        terms = list(formulaic_formula(expr))
    except Exception as e:  # noqa: BLE001 - formulaic raises several types
        raise FormulaError(
            f"cannot parse '{expr.strip()}' in a '||' term: {_first_line(e)}", formula
        ) from None
    out = []
    for t in terms:
        text = ":".join(_factor_text(f) for f in t.factors)
        if text == "1":
            out.append(RandomTerm("1", factors, False))
        else:
            out.append(RandomTerm(f"0 + {text}", factors, False))
    return out


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


# -- the allow-list ----------------------------------------------------------------------


def _has_name(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def check_expression(expr: str, formula: str | None = None) -> None:
    """Refuse any Python expression that is not column names, numbers, arithmetic,
    comparisons or a call of an allowed function (:data:`ALLOWED_FUNCTIONS`); string
    constants only as arguments of a call. Raises :class:`FormulaError` naming what it
    refused."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise FormulaError(f"'{expr}' is not a valid expression", formula) from None
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node

    def refuse(message: str, snippet: str | None = None):
        pos = None
        if formula is not None and snippet:
            found = formula.find(snippet)
            pos = found if found >= 0 else None
        raise FormulaError(message, formula, pos)

    for node in ast.walk(tree):
        owner = _c_call_of_contrast(node, parents)
        if owner is not None and not _contrast_names_allowed(node):
            # e.g. C(g, Deviation()) or C(g, contr.custom): refused as the allow-list would,
            # listing the contrasts C() takes
            func = node.func if isinstance(node, ast.Call) else node
            e = _unknown_contrast(
                _dotted(func) or ast.unparse(func),
                ast.unparse(owner),
                ", which is not allowed in a formula",
            )
            refuse(str(e), e.snippet)
        if isinstance(node, ast.Call):
            fname = _dotted(node.func)
            if fname not in ALLOWED_FUNCTIONS:
                shown = fname or ast.unparse(node.func)
                refuse(
                    f"function '{shown}' is not allowed in a formula "
                    f"(allowed: {', '.join(sorted(ALLOWED_FUNCTIONS))})",
                    shown,
                )
        elif isinstance(node, ast.Attribute):
            # only 'contr.xxx', as a function or a contrast argument
            if _dotted(node) not in ALLOWED_FUNCTIONS:
                refuse(
                    f"attribute access '{ast.unparse(node)}' is not allowed in a formula",
                    node.attr,
                )
        elif isinstance(node, ast.Name):
            if node.id.startswith("__"):
                refuse(f"name '{node.id}' is not allowed in a formula", node.id)
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str):
                if not isinstance(parents.get(id(node)), ast.Call | ast.keyword):
                    refuse(
                        f"the string {value!r} is allowed only as an argument of a function",
                        repr(value)[1:-1],
                    )
            elif not isinstance(value, int | float | bool):
                refuse(f"the constant {value!r} is not allowed in a formula")
        elif isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.BitXor):
                refuse(
                    f"'^' in '{ast.unparse(node)}' is not allowed in a formula: inside I(...) "
                    "and functions it is Python's bitwise xor; write '**' for a power, e.g. "
                    "'I(x**2)'",
                    "^",
                )
            if not isinstance(node.op, _ALLOWED_BINOPS):
                refuse(f"the operator in '{ast.unparse(node)}' is not allowed in a formula")
            if isinstance(node.op, ast.Pow) and not _has_name(node.left):
                # a power of constants is computed by Python exactly: 9**9**9 never ends
                ok = (
                    isinstance(node.left, ast.Constant)
                    and isinstance(node.right, ast.Constant)
                    and isinstance(node.right.value, int | float)
                    and abs(node.right.value) <= _MAX_CONSTANT_EXPONENT
                ) or _has_name(node.right)
                if not ok:
                    refuse(
                        f"the power of constants '{ast.unparse(node)}' is not allowed in a "
                        f"formula (exponents of a constant are limited to "
                        f"{_MAX_CONSTANT_EXPONENT}); write the number itself"
                    )
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, _ALLOWED_UNARY):
                refuse(f"the operator in '{ast.unparse(node)}' is not allowed in a formula")
        elif isinstance(node, ast.Compare):
            if not all(isinstance(op, _ALLOWED_CMP) for op in node.ops):
                refuse(f"the comparison '{ast.unparse(node)}' is not allowed in a formula")
        elif isinstance(
            node, ast.Expression | ast.Load | ast.keyword | ast.operator | ast.unaryop | ast.cmpop
        ):
            if isinstance(node, ast.keyword) and node.arg is None:
                refuse(f"'**' arguments in '{expr}' are not allowed in a formula", "**")
            continue
        else:
            refuse(
                f"'{ast.unparse(node)}' ({type(node).__name__}) is not allowed in a formula",
                ast.unparse(node),
            )
    _check_contrasts(tree, refuse)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


# -- contrasts in C() ---------------------------------------------------------------------

#: The contrast codings ``C(g, contrast)`` takes, as formulaic 1.2 spells them, with the
#: arguments each accepts (``tests/test_formula.py`` checks these against formulaic):
#: patsy's names (``Treatment`` is a function of ``reference``, the others are classes) and
#: formulaic's registry ``contr`` (the classes themselves; R's names plus ``diff``).
CONTRASTS: dict[str, tuple[str, ...]] = {
    "Treatment": ("reference",),
    "Sum": (),
    "Helmert": ("reverse", "scale"),
    "Diff": ("backward",),
    "Poly": ("scores",),
    "contr.treatment": ("base",),
    "contr.sum": (),
    "contr.helmert": ("reverse", "scale"),
    "contr.poly": ("scores",),
    "contr.diff": ("backward",),
    "contr.SAS": ("base",),
}
#: Other names of an argument, rewritten to the one formulaic takes: the reference level is
#: ``reference=`` in patsy's ``Treatment`` and ``base=`` in formulaic's ``contr.treatment``.
#: Either way it is the level itself (``'b'``, or ``2`` for a column of integers), never
#: R's position of the level.
_CONTRAST_ALIASES = {
    "Treatment": {"base": "reference"},
    "contr.treatment": {"reference": "base"},
    "contr.SAS": {"reference": "base"},
}
#: R's short names in ``C(g, sum)`` (see R's ``stats::C``) and formulaic's ``diff``: the same
#: codings as ``contr.xxx``. Also the names ``C(g, "sum")`` may give as a string (any case,
#: with or without ``contr.``).
_R_CONTRASTS = {
    "treatment": "contr.treatment",
    "sum": "contr.sum",
    "helmert": "contr.helmert",
    "poly": "contr.poly",
    "diff": "contr.diff",
    "SAS": "contr.SAS",
}
_STRING_CONTRASTS = {k.lower(): v for k, v in _R_CONTRASTS.items()}
#: The classes among :data:`CONTRASTS`, which formulaic takes uncalled: ``C(g, Sum)``.
_CONTRAST_CLASSES = frozenset(CONTRASTS) - {"Treatment"}
#: Names ``C()`` takes as its contrast (never columns): patsy's and R's.
CONTRAST_NAMES = frozenset({"Treatment", "Sum", "Helmert", "Diff", "Poly", *_R_CONTRASTS})
_C_KEYWORDS = ("contrasts", "levels", "spans_intercept")
_ACCEPTED_CONTRASTS = (
    "Treatment, Sum, Helmert, Diff, Poly (patsy's, e.g. C(g, Sum) or C(g, Treatment('b'))); "
    "contr.treatment, contr.sum, contr.helmert, contr.poly, contr.diff, contr.SAS "
    "(formulaic's, e.g. C(g, contr.treatment(base='b'))); treatment, sum, helmert, poly, diff, "
    "SAS (R's, e.g. C(g, sum)); or one of these names as a string, e.g. C(g, 'sum')"
)


class _BadContrast(Exception):
    """A ``C()`` call formulaic would not take: the message and the text at fault."""

    def __init__(self, message: str, snippet: str | None = None):
        super().__init__(message)
        self.snippet = snippet


def _c_call_of_contrast(node: ast.AST, parents: dict[int, ast.AST]) -> ast.Call | None:
    """The ``C(...)`` call whose contrast ``node`` is, or None."""
    parent = parents.get(id(node))
    if isinstance(parent, ast.keyword) and parent.arg in ("contrasts", "contrast"):
        parent = parents.get(id(parent))
    elif not (isinstance(parent, ast.Call) and len(parent.args) > 1 and parent.args[1] is node):
        return None
    return parent if isinstance(parent, ast.Call) and _dotted(parent.func) == "C" else None


def _contrast_names_allowed(node: ast.AST) -> bool:
    """Whether the function or attribute a contrast names is on the allow-list (a name or a
    constant names nothing that runs)."""
    if isinstance(node, ast.Call):
        return _dotted(node.func) in ALLOWED_FUNCTIONS
    if isinstance(node, ast.Attribute):
        return _dotted(node) in ALLOWED_FUNCTIONS
    return True


def _contrast_argument(call: ast.Call) -> ast.expr | None:
    """The contrast of a ``C(...)`` call (second argument or ``contrasts=``), or None."""
    if len(call.args) > 1:
        return call.args[1]
    for k in call.keywords:
        if k.arg in ("contrasts", "contrast"):
            return k.value
    return None


def _normalize_c_call(call: ast.Call) -> bool:
    """Check the arguments of a ``C(...)`` call and rewrite them in place into the spelling
    formulaic evaluates (see :data:`CONTRASTS`); True if anything changed. Only leaves are
    replaced (a name, a string, the name of a keyword): no part of the call is dropped.
    Raises :class:`_BadContrast` for a contrast or an argument formulaic would not take."""
    text = ast.unparse(call)
    if not call.args:
        raise _BadContrast(f"'{text}' needs the column to code, e.g. 'C(g)' or 'C(g, Sum)'")
    if len(call.args) > 2:
        raise _BadContrast(
            f"'{text}' has {len(call.args)} arguments; C() takes the column and one contrast, "
            "e.g. 'C(g, Sum)'",
            ast.unparse(call.args[2]),
        )
    changed = False
    for k in call.keywords:
        if k.arg == "contrast":  # patsy's name of the argument
            if len(call.args) > 1 or any(j.arg == "contrasts" for j in call.keywords):
                raise _BadContrast(f"'{text}' gives the contrast twice", "contrast")
            k.arg, changed = "contrasts", True
        elif k.arg == "contrasts" and len(call.args) > 1:
            raise _BadContrast(f"'{text}' gives the contrast twice", "contrasts")
        elif k.arg not in _C_KEYWORDS:
            hint = ""
            if k.arg in ("base", "reference", "ref"):
                hint = (
                    "; the reference level goes in the contrast, e.g. "
                    "'C(g, Treatment(reference='b'))' or 'C(g, contr.treatment(base='b'))'"
                )
            raise _BadContrast(
                f"C() has no argument '{k.arg}' in '{text}' (it takes C(column, contrast, "
                f"levels=..., spans_intercept=...)){hint}",
                f"{k.arg}=",
            )
    node = _contrast_argument(call)
    if node is None:
        return changed
    new = _normalize_contrast(node, text)
    if new is not None:
        if len(call.args) > 1:
            call.args[1] = new
        else:
            for k in call.keywords:
                if k.arg == "contrasts":
                    k.value = new
        changed = True
    return changed


def _unknown_contrast(shown: str, text: str, note: str = "") -> _BadContrast:
    import difflib

    known = [*CONTRASTS, *_R_CONTRASTS]
    close = difflib.get_close_matches(shown, known, n=1, cutoff=0.7)
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[shown.lower()]] if shown.lower() in lowered else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return _BadContrast(
        f"unknown contrast '{shown}' in '{text}'{hint}{note}; C() accepts: {_ACCEPTED_CONTRASTS}",
        shown,
    )


def _normalize_contrast(node: ast.expr, text: str) -> ast.expr | None:
    """The contrast ``node`` of the call ``text`` as formulaic takes it: a replacement node,
    or None if it is already so. Raises :class:`_BadContrast`."""
    if isinstance(node, ast.Name):
        if node.id == "Treatment":  # patsy's Treatment is a function in formulaic: call it
            return ast.Call(func=ast.Name("Treatment", ast.Load()), args=[], keywords=[])
        if node.id in _R_CONTRASTS:
            return _contr_attribute(_R_CONTRASTS[node.id])
        if node.id in _CONTRAST_CLASSES:
            return None
        raise _unknown_contrast(node.id, text)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        key = node.value.strip().lower().removeprefix("contr.")
        if key in _STRING_CONTRASTS:
            return _contr_attribute(_STRING_CONTRASTS[key])
        raise _unknown_contrast(node.value, text)
    name = _dotted(node)
    if name is not None and name in _CONTRAST_CLASSES:
        return None
    if isinstance(node, ast.Call) and _dotted(node.func) in CONTRASTS:
        return _normalize_contrast_call(node, _dotted(node.func), text)
    shown = name or (_dotted(node.func) if isinstance(node, ast.Call) else None)
    raise _unknown_contrast(shown or ast.unparse(node), text)


def _contr_attribute(dotted: str) -> ast.Attribute:
    base, attr = dotted.split(".")
    return ast.Attribute(value=ast.Name(base, ast.Load()), attr=attr, ctx=ast.Load())


def _normalize_contrast_call(node: ast.Call, name: str, text: str) -> ast.expr | None:
    """Check the arguments of a contrast such as ``Treatment('b')``; rename an alias of an
    argument (:data:`_CONTRAST_ALIASES`). Returns ``node`` if changed, else None."""
    params = CONTRASTS[name]
    aliases = _CONTRAST_ALIASES.get(name, {})
    takes = (
        "takes no arguments"
        if not params
        else "takes " + " or ".join(f"{p}=" for p in params) + f" (at most {len(params)})"
    )
    if len(node.args) > len(params):
        raise _BadContrast(
            f"the contrast {name}() in '{text}' {takes}; it was given {len(node.args)} "
            "positional arguments",
            ast.unparse(node),
        )
    given = {params[i]: a for i, a in enumerate(node.args)}
    changed = False
    for k in node.keywords:
        arg = k.arg
        if arg in aliases:
            arg = aliases[arg]
        if arg not in params:
            hint = ""
            if name in ("Sum", "contr.sum") and k.arg == "omit":
                hint = "; patsy's omit= is not supported: sum coding leaves out the last level"
            raise _BadContrast(
                f"the contrast {name}() has no argument '{k.arg}' in '{text}': it {takes}{hint}",
                f"{k.arg}=",
            )
        if arg in given:
            raise _BadContrast(
                f"the contrast {name}() in '{text}' is given '{arg}' twice", f"{k.arg}="
            )
        given[arg] = k.value
        if arg != k.arg:
            k.arg, changed = arg, True
    for arg, value in given.items():
        _check_contrast_value(name, arg, value, text)
    return node if changed else None


def _check_contrast_value(name: str, arg: str, value: ast.expr, text: str) -> None:
    shown = ast.unparse(value)
    if arg in ("reference", "base"):
        number = value
        if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub | ast.UAdd):
            number = value.operand
            if not (isinstance(number, ast.Constant) and isinstance(number.value, int | float)):
                number = None
        if not (isinstance(number, ast.Constant) and isinstance(number.value, str | int | float)):
            raise _BadContrast(
                f"the reference level in '{text}' must be a level written as a constant, e.g. "
                f"{name}('b') or {name}(2); '{shown}' is not one",
                shown,
            )
    elif arg == "scores":
        raise _BadContrast(
            f"{name}(scores=...) in '{text}' needs a list of numbers, which a formula cannot "
            f"hold; {name}() spaces the levels equally",
            shown,
        )
    elif not (isinstance(value, ast.Constant) and isinstance(value.value, bool)):
        raise _BadContrast(
            f"'{arg}' of the contrast {name}() in '{text}' must be True or False, not '{shown}'",
            shown,
        )


def _check_contrasts(tree: ast.AST, refuse) -> None:
    """The contrast part of :func:`check_expression`: every ``C()`` call takes a contrast
    :func:`_normalize_c_call` accepts (rewritten here in ``tree``), and contrasts appear
    nowhere else."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _dotted(n.func) == "C"]
    for call in calls:
        try:
            _normalize_c_call(call)
        except _BadContrast as e:
            refuse(str(e), e.snippet)
    inside: set[int] = set()
    for call in calls:
        contrast = _contrast_argument(call)
        if contrast is not None:
            inside.update(id(n) for n in ast.walk(contrast))
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call) and _dotted(node.func) in CONTRASTS:
            name = _dotted(node.func)
        elif isinstance(node, ast.Attribute) and _dotted(node) in CONTRASTS:
            name = _dotted(node)
        if name is not None and id(node) not in inside:
            refuse(
                f"the contrast {name} in '{ast.unparse(node)}' belongs inside C(), as its "
                f"second argument: e.g. 'C(g, {name})'",
                name,
            )


_C_CALL = re.compile(r"(?<![\w.`])C\s*\(")


def _rewrite_contrasts(text: str) -> str:
    """``text`` with each ``C(...)`` call that formulaic would not take as written but
    :func:`_normalize_c_call` can rewrite replaced by formulaic's spelling (written as
    formulaic writes the expression: ``ast.unparse``). Everything else is left as it is, for
    :func:`check_expression` to refuse; nothing is evaluated."""
    if "C" not in text:
        return text
    try:
        code = _code_only(text)
    except FormulaError:
        return text
    out: list[str] = []
    last = 0
    for m in _C_CALL.finditer(code):
        if m.start() < last:
            continue  # a C() inside the arguments of the previous one, rewritten with it
        try:
            close = _matching(text, m.end() - 1)
        except FormulaError:
            return text
        call = text[m.start() : close + 1]
        try:
            tree = ast.parse(call, mode="eval")
            calls = [
                n for n in ast.walk(tree) if isinstance(n, ast.Call) and _dotted(n.func) == "C"
            ]
            changed = [_normalize_c_call(c) for c in calls]
            new = ast.unparse(tree) if any(changed) else None
        except (SyntaxError, ValueError, RecursionError, MemoryError, _BadContrast):
            continue  # refused later, where the allow-list or formulaic says why
        if new is not None:
            out += [text[last : m.start()], new]
            last = close + 1
    return "".join([*out, text[last:]])


def value_names(expr: str) -> set[str]:
    """Names an allowed expression reads as values (columns): every name that is not the
    function of a call, the base of an allowed ``contr.xxx`` or a contrast named in
    ``C(g, Sum)``."""
    tree = ast.parse(expr.strip(), mode="eval")
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) or (
            isinstance(node, ast.Attribute) and _dotted(node) in ALLOWED_FUNCTIONS
        ):
            func = node.func if isinstance(node, ast.Call) else node
            skip.update(id(n) for n in ast.walk(func))
        if isinstance(node, ast.Call) and _dotted(node.func) == "C":
            for arg in [*node.args[1:], *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Name) and arg.id in CONTRAST_NAMES:
                    skip.add(id(arg))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in skip}


@functools.lru_cache(maxsize=512)
def formulaic_formula(spec: str):
    """formulaic's parse of ``spec`` (never evaluated), cached: parsing costs more than
    building a small model matrix."""
    from formulaic import Formula

    return Formula(spec)


def parse_factors(rhs: str, formula: str | None = None):
    """The formulaic factors of a formula or right-hand side, parsed (never evaluated), each
    Python factor checked by :func:`check_expression`."""
    from formulaic.parser.types.factor import Factor

    try:
        parsed = formulaic_formula(rhs)
    except Exception as e:  # noqa: BLE001 - formulaic raises several types
        msg = _first_line(e)
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


def check_formula_expressions(rhs: str, formula: str | None = None) -> None:
    """Parse a formulaic formula or right-hand side (without evaluating it) and check every
    factor that formulaic would evaluate as Python."""
    parse_factors(rhs, formula)
