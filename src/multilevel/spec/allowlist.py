"""The allow-list: a formula never runs code.

formulaic evaluates as Python every factor written as a call (``f(x)``), inside ``I(...)`` or
inside ``{...}``. :func:`check_expression` refuses any such expression that is not column
names, numbers, arithmetic, comparisons or a call of an allowed function
(:data:`~multilevel.spec.functions.ALLOWED_FUNCTIONS`); :func:`scan_refused` refuses Python
keywords, dunder names, indexing and statements anywhere in the formula text.
"""

from __future__ import annotations

import ast
import keyword
import re
import unicodedata

from ..errors import FormulaError
from .bases import check_bases
from .contrasts import (
    CONTRAST_NAMES,
    c_call_of_contrast,
    check_contrasts,
    contrast_names_allowed,
    unknown_contrast,
)
from .functions import ALLOWED_FUNCTIONS, dotted
from .limits import check_expression_size
from .names import aliased_column, identifiers, quoted_aliases, restore_aliases, restore_names
from .text import code_only

_ALLOWED_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.FloorDiv, ast.Mod)
_ALLOWED_UNARY = (ast.UAdd, ast.USub)
_ALLOWED_CMP = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
#: Python keywords that may appear in a formula (as constants in an argument).
_ALLOWED_KEYWORDS = frozenset({"True", "False"})
_MAX_CONSTANT_EXPONENT = 64


def scan_refused(text: str) -> None:
    """Refuse, with its position, anything in the formula that is neither formula syntax nor
    an expression the allow-list could accept: Python keywords (``lambda``, ``import``...),
    dunder names (``__import__``, ``x.__class__``), indexing and lists (``[...]``),
    statements (``;``) and assignment expressions (``:=``)."""
    code = code_only(text)
    code = re.sub(r"%[A-Za-z_]*%", lambda m: " " * len(m.group()), code)  # %in%
    for word, pos, _ in identifiers(code):
        if pos > 0 and code[pos - 1].isdigit() and not word.startswith("_"):
            continue  # the exponent of a number such as 1e5
        if unicodedata.normalize("NFKC", word).startswith("__"):  # Python reads ＿ as _
            raise FormulaError(f"name '{word}' is not allowed in a formula", text, pos)
        if keyword.iskeyword(word) and word not in _ALLOWED_KEYWORDS:
            raise FormulaError(
                f"the Python keyword '{word}' is not allowed in a formula (a column named "
                f"'{word}' goes in backticks: `{word}`)",
                text,
                pos,
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


def _has_name(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def check_expression(expr: str, formula: str | None = None) -> None:
    """Refuse any Python expression that is not column names, numbers, arithmetic,
    comparisons or a call of an allowed function (:data:`ALLOWED_FUNCTIONS`); string
    constants only as arguments of a call; ``poly()`` and ``bs()`` of a size written in the
    formula. Backticked names (`` `my x` ``) are column names. Raises :class:`FormulaError`
    naming what it refused."""
    check_expression_size(expr)
    code, aliases = quoted_aliases(expr)
    for name in aliases.values():
        if name.startswith("__"):
            raise FormulaError(f"name '{name}' is not allowed in a formula", formula)
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise FormulaError(f"'{expr}' is not a valid expression", formula) from None
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node

    def refuse(message: str, snippet: str | None = None):
        message = restore_names(restore_aliases(message, aliases))
        snippet = restore_names(restore_aliases(snippet, aliases)) if snippet else snippet
        pos = None
        if formula is not None and snippet:
            found = formula.find(snippet)
            pos = found if found >= 0 else None
        raise FormulaError(message, formula, pos)

    for node in ast.walk(tree):
        owner = c_call_of_contrast(node, parents)
        if owner is not None and not contrast_names_allowed(node):
            # e.g. C(g, Deviation()) or C(g, contr.custom): refused as the allow-list would,
            # listing the contrasts C() takes
            func = node.func if isinstance(node, ast.Call) else node
            e = unknown_contrast(
                dotted(func) or ast.unparse(func),
                ast.unparse(owner),
                ", which is not allowed in a formula",
            )
            refuse(str(e), e.snippet)
        if isinstance(node, ast.Call):
            fname = dotted(node.func)
            if fname == "offset":
                refuse(
                    "offset(...) is a term of its own in the fixed part, added with '+', e.g. "
                    "'y ~ x + offset(log(exposure)) + (1 | g)'; it cannot be used inside "
                    "another expression, the response or a random-effects term",
                    "offset",
                )
            if fname not in ALLOWED_FUNCTIONS:
                shown = fname or ast.unparse(node.func)
                refuse(
                    f"function '{shown}' is not allowed in a formula "
                    f"(allowed: {', '.join(sorted(ALLOWED_FUNCTIONS))})",
                    shown,
                )
        elif isinstance(node, ast.Attribute):
            # only 'contr.xxx', as a function or a contrast argument
            if dotted(node) not in ALLOWED_FUNCTIONS:
                hint = ""
                if dotted(node) is not None:
                    hint = f" (a column named '{dotted(node)}' goes in backticks: `{dotted(node)}`)"
                refuse(
                    f"attribute access '{ast.unparse(node)}' is not allowed in a formula{hint}",
                    node.attr,
                )
        elif isinstance(node, ast.Name):
            if (aliased_column(node.id) or node.id).startswith("__"):
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
    check_contrasts(tree, refuse)
    check_bases(tree, refuse)


def value_names(expr: str) -> set[str]:
    """Names an allowed expression reads as values (columns): every name that is not the
    function of a call, the base of an allowed ``contr.xxx`` or a contrast named in
    ``C(g, Sum)``."""
    code, aliases = quoted_aliases(expr)
    tree = ast.parse(code.strip(), mode="eval")
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) or (
            isinstance(node, ast.Attribute) and dotted(node) in ALLOWED_FUNCTIONS
        ):
            func = node.func if isinstance(node, ast.Call) else node
            skip.update(id(n) for n in ast.walk(func))
        if isinstance(node, ast.Call) and dotted(node.func) == "C":
            for arg in [*node.args[1:], *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Name) and arg.id in CONTRAST_NAMES:
                    skip.add(id(arg))
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in skip]
    return {aliased_column(n) or aliases.get(n, n) for n in names}
