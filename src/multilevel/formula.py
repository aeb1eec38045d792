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
            fixed_parts.append(f"- {term}" if sign == "-" else term)
            continue
        if sign == "-":
            raise FormulaError(f"a random-effects term cannot be removed: '-{term}'", text, pos)
        expr, double, group, group_pos = bar
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


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


#: Contrast classes that ``C()`` takes by name, as patsy does: ``C(g, Sum)``.
CONTRAST_NAMES = frozenset({"Treatment", "Sum", "Helmert", "Diff", "Poly"})


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
