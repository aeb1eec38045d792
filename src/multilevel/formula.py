"""lme4's formula language: a fixed part for formulaic and bar terms ``(expr | g)`` around it.

``parse_formula("y ~ x + (1 + x | g)")`` returns a :class:`ModelFormula` with the response,
the fixed-effects right-hand side and one :class:`RandomTerm` per random-effects block.
The grammar follows lme4's ``findbars``/``expandDoubleVerts``/``expandSlash``:

* ``(expr | g)``    one block, correlated effects for the columns of ``expr``;
* ``(expr || g)``   one block per term of ``expr`` (uncorrelated);
* ``(expr | a/b)``  nesting: the blocks ``(expr | a)`` and ``(expr | b:a)``;
* ``(expr | a:b)``  the interaction of ``a`` and ``b`` as one grouping factor.

Every Python expression that formulaic would evaluate is checked first against an allow-list
(:func:`check_expression`): a formula never runs code.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from .errors import FormulaError

#: Functions a formula may call. Each is provided by formulaic's default context or by numpy.
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
_ALLOWED_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.FloorDiv, ast.Mod)
_ALLOWED_UNARY = (ast.UAdd, ast.USub)
_ALLOWED_CMP = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


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


def _matching(text: str, start: int) -> int:
    """Index of the bracket closing the one opened at ``text[start]``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[start]]]
    i = start + 1
    while i < len(text):
        c = text[i]
        if c in "'\"`":
            end = text.find(c, i + 1)
            if end < 0:
                raise FormulaError("unterminated quote", text, i)
            i = end
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
        elif c in "'\"`":
            end = text.find(c, i + 1)
            if end < 0:
                raise FormulaError("unterminated quote", text, i)
            i = end
        i += 1


def _top_level_split(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` where it is not inside brackets or quotes."""
    parts, depth, last, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "'\"`":
            i = text.find(c, i + 1)
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


def _expand_group(spec: str, formula: str) -> list[tuple[str, ...]]:
    """``"a/b/c"`` -> ``[(a,), (b, a), (c, b, a)]``; ``"a:b"`` -> ``[(a, b)]`` (lme4's names)."""
    spec = spec.strip()
    if not spec:
        raise FormulaError("a random-effects term has no grouping factor after '|'", formula)
    out: list[tuple[str, ...]] = []
    nested: tuple[str, ...] = ()
    for part in spec.split("/"):
        names = tuple(_clean_name(p, formula) for p in part.split(":"))
        if not all(names):
            raise FormulaError(f"empty grouping factor in '{spec}'", formula)
        nested = names + nested
        out.append(nested)
    return out


_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


def _clean_name(name: str, formula: str) -> str:
    name = name.strip()
    if name.startswith("`") and name.endswith("`") and len(name) > 1:
        return name[1:-1]
    if name and not _NAME.match(name):
        raise FormulaError(
            f"grouping factor '{name}' must be a column name (quote odd names with backticks)",
            formula,
        )
    return name


def parse_formula(text: str) -> ModelFormula:
    """Split an lme4 formula into response, fixed part and random-effects blocks."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the formula is empty")
    _check_balanced(text)
    sides = _top_level_split(text, "~")
    if len(sides) != 2:
        raise FormulaError(
            "a formula needs exactly one '~' with the response on its left, e.g. 'y ~ x + (1 | g)'",
            text,
            text.find("~") if "~" in text else len(text),
        )
    lhs, rhs = sides[0].strip(), sides[1]
    if not lhs:
        raise FormulaError("the formula has no response on the left of '~'", text, 0)
    offset = len(sides[0]) + 1
    fixed_parts: list[str] = []
    random: list[RandomTerm] = []
    for raw in _split_terms(rhs):
        term = raw.strip()
        if not term:
            continue
        sign = ""
        if term[0] in "+-":
            sign, term = term[0], term[1:].strip()
        bar = _bar_term(term)
        if bar is None:
            fixed_parts.append(f"{sign} {term}" if sign == "-" else term)
            continue
        if sign == "-":
            raise FormulaError(f"a random-effects term cannot be removed: '-{term}'", text)
        expr, double, group = bar
        if not expr.strip():
            pos = text.find(term, offset)
            raise FormulaError(f"empty left-hand side in random-effects term '{term}'", text, pos)
        for factors in _expand_group(group, text):
            if double:
                random.extend(_split_double(expr, factors, text))
            else:
                random.append(RandomTerm(expr.strip(), factors, True))
    fixed = " + ".join(p for p in fixed_parts if not p.startswith("-"))
    removals = " ".join(p for p in fixed_parts if p.startswith("-"))
    fixed = (fixed or "1") + (f" {removals}" if removals else "")
    if "|" in fixed:
        raise FormulaError(
            "a '|' outside a parenthesised random-effects term: write '(expr | group)'",
            text,
            text.find("|"),
        )
    return ModelFormula(text=text.strip(), response=lhs, fixed=fixed, random=tuple(random))


def _split_terms(rhs: str) -> list[str]:
    """Split a right-hand side at top-level '+' and '-', keeping each '-' with its term."""
    parts: list[str] = []
    depth, last, i = 0, 0, 0
    while i < len(rhs):
        c = rhs[i]
        if c in "'\"`":
            i = rhs.find(c, i + 1)
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c in "+-":
            prev = rhs[last:i]
            # a '-' right after an operator or '**' belongs to a number, e.g. 'x ** -1'
            if c == "-" and prev.rstrip().endswith(("*", "/", "^", "(")):
                i += 1
                continue
            parts.append(prev)
            last = i if c == "-" else i + 1
        i += 1
    parts.append(rhs[last:])
    return parts


def _bar_term(term: str) -> tuple[str, bool, str] | None:
    """``"(1 + x | g)"`` -> ``("1 + x", False, "g")``; None for a fixed-effects term."""
    if not (term.startswith("(") and _matching(term, 0) == len(term) - 1):
        return None
    inner = term[1:-1]
    double = _top_level_split(inner, "||")
    if len(double) == 2:
        return double[0], True, double[1]
    single = _top_level_split(inner, "|")
    if len(single) == 2:
        return single[0], False, single[1]
    if len(single) > 2 or len(double) > 2:
        raise FormulaError(f"more than one '|' in random-effects term '{term}'")
    nested = _bar_term(inner.strip()) if inner.strip().startswith("(") else None
    return nested


def _split_double(expr: str, factors: tuple[str, ...], formula: str) -> list[RandomTerm]:
    """lme4's expandDoubleVerts: ``(1 + x || g)`` -> ``(1 | g) + (0 + x | g)``."""
    from formulaic import Formula  # local: formulaic import is slow and rarely needed here

    check_formula_expressions(expr, formula)
    try:
        terms = [str(t) for t in Formula(expr)]
    except Exception as e:  # noqa: BLE001 - formulaic raises several types
        raise FormulaError(f"cannot parse '{expr}' in a '||' term: {e}", formula) from None
    out = []
    for t in terms:
        if t == "1":
            out.append(RandomTerm("1", factors, False))
        else:
            out.append(RandomTerm(f"0 + {t}", factors, False))
    return out


def check_expression(expr: str, formula: str | None = None) -> None:
    """Refuse any Python expression that is not column names, numbers, arithmetic or an
    allowed function (:data:`ALLOWED_FUNCTIONS`). Raises :class:`FormulaError` naming it."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise FormulaError(f"'{expr}' is not a valid expression", formula) from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fname = _dotted(node.func)
            if fname not in ALLOWED_FUNCTIONS:
                raise FormulaError(
                    f"function '{fname or ast.unparse(node.func)}' is not allowed in a formula "
                    f"(allowed: {', '.join(sorted(ALLOWED_FUNCTIONS))})",
                    formula,
                )
        elif isinstance(node, ast.Attribute):
            # only 'contr.xxx' inside a call's func position is allowed; checked via _dotted
            if _dotted(node) not in ALLOWED_FUNCTIONS:
                raise FormulaError(
                    f"attribute access '{ast.unparse(node)}' is not allowed in a formula", formula
                )
        elif isinstance(node, ast.Name):
            if node.id.startswith("__"):
                raise FormulaError(f"name '{node.id}' is not allowed in a formula", formula)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float | str | bool) or node.value is None:
                raise FormulaError(f"constant {node.value!r} is not allowed in a formula", formula)
        elif isinstance(node, ast.BinOp):
            if not isinstance(node.op, _ALLOWED_BINOPS):
                raise FormulaError(
                    f"operator in '{ast.unparse(node)}' is not allowed in a formula", formula
                )
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, _ALLOWED_UNARY):
                raise FormulaError(
                    f"operator in '{ast.unparse(node)}' is not allowed in a formula", formula
                )
        elif isinstance(node, ast.Compare):
            if not all(isinstance(op, _ALLOWED_CMP) for op in node.ops):
                raise FormulaError(
                    f"comparison in '{ast.unparse(node)}' is not allowed in a formula", formula
                )
        elif isinstance(
            node, ast.Expression | ast.Load | ast.keyword | ast.operator | ast.unaryop | ast.cmpop
        ):
            continue
        else:
            raise FormulaError(
                f"'{ast.unparse(node)}' ({type(node).__name__}) is not allowed in a formula",
                formula,
            )


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def check_formula_expressions(rhs: str, formula: str | None = None) -> None:
    """Parse a formulaic right-hand side (without evaluating it) and check every factor that
    formulaic would evaluate as Python."""
    from formulaic import Formula
    from formulaic.parser.types.factor import Factor

    if "{" in rhs or "}" in rhs:
        # formulaic's {...} evaluates arbitrary Python; we accept it only through the same check
        pass
    try:
        parsed = Formula(rhs)
    except Exception as e:  # noqa: BLE001
        raise FormulaError(f"cannot parse '{rhs}': {e}", formula) from None
    sides = [parsed] if not hasattr(parsed, "lhs") else [parsed.lhs, parsed.rhs]
    for side in sides:
        for term in side:
            for factor in term.factors:
                if factor.eval_method == Factor.EvalMethod.PYTHON:
                    check_expression(factor.expr, formula)
