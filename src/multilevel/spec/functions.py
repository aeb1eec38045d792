"""The functions a formula may call, and the dotted name of a call's target."""

from __future__ import annotations

import ast

#: Allowed functions whose value is one numeric column (or an error).
NUMERIC_FUNCTIONS = frozenset(
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
    }
)
#: Functions a formula may call. Each is provided by formulaic's transforms or by
#: :data:`EXTRA_FUNCTIONS` (numpy ufuncs the frame passes to formulaic as evaluation context).
ALLOWED_FUNCTIONS = NUMERIC_FUNCTIONS | frozenset(
    {
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


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None
