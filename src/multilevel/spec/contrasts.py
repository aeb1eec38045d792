"""Contrasts in ``C(g, contrast)``: every spelling patsy, formulaic and R use, rewritten to
the one formulaic 1.2 evaluates; any other contrast refused by name before evaluation."""

from __future__ import annotations

import ast
import re

from ..errors import FormulaError
from .functions import ALLOWED_FUNCTIONS, dotted
from .names import quoted_aliases, restore_aliases
from .text import code_only, matching

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


class BadContrast(Exception):
    """A ``C()`` call formulaic would not take: the message and the text at fault."""

    def __init__(self, message: str, snippet: str | None = None):
        super().__init__(message)
        self.snippet = snippet


def c_call_of_contrast(node: ast.AST, parents: dict[int, ast.AST]) -> ast.Call | None:
    """The ``C(...)`` call whose contrast ``node`` is, or None."""
    parent = parents.get(id(node))
    if isinstance(parent, ast.keyword) and parent.arg in ("contrasts", "contrast"):
        parent = parents.get(id(parent))
    elif not (isinstance(parent, ast.Call) and len(parent.args) > 1 and parent.args[1] is node):
        return None
    return parent if isinstance(parent, ast.Call) and dotted(parent.func) == "C" else None


def contrast_names_allowed(node: ast.AST) -> bool:
    """Whether the function or attribute a contrast names is on the allow-list (a name or a
    constant names nothing that runs)."""
    if isinstance(node, ast.Call):
        return dotted(node.func) in ALLOWED_FUNCTIONS
    if isinstance(node, ast.Attribute):
        return dotted(node) in ALLOWED_FUNCTIONS
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
    Raises :class:`BadContrast` for a contrast or an argument formulaic would not take."""
    text = ast.unparse(call)
    if not call.args:
        raise BadContrast(f"'{text}' needs the column to code, e.g. 'C(g)' or 'C(g, Sum)'")
    if len(call.args) > 2:
        raise BadContrast(
            f"'{text}' has {len(call.args)} arguments; C() takes the column and one contrast, "
            "e.g. 'C(g, Sum)'",
            ast.unparse(call.args[2]),
        )
    changed = False
    for k in call.keywords:
        if k.arg == "contrast":  # patsy's name of the argument
            if len(call.args) > 1 or any(j.arg == "contrasts" for j in call.keywords):
                raise BadContrast(f"'{text}' gives the contrast twice", "contrast")
            k.arg, changed = "contrasts", True
        elif k.arg == "contrasts" and len(call.args) > 1:
            raise BadContrast(f"'{text}' gives the contrast twice", "contrasts")
        elif k.arg not in _C_KEYWORDS:
            hint = ""
            if k.arg in ("base", "reference", "ref"):
                hint = (
                    "; the reference level goes in the contrast, e.g. "
                    "'C(g, Treatment(reference='b'))' or 'C(g, contr.treatment(base='b'))'"
                )
            raise BadContrast(
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


def unknown_contrast(shown: str, text: str, note: str = "") -> BadContrast:
    import difflib

    known = [*CONTRASTS, *_R_CONTRASTS]
    close = difflib.get_close_matches(shown, known, n=1, cutoff=0.7)
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[shown.lower()]] if shown.lower() in lowered else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return BadContrast(
        f"unknown contrast '{shown}' in '{text}'{hint}{note}; C() accepts: {_ACCEPTED_CONTRASTS}",
        shown,
    )


def _normalize_contrast(node: ast.expr, text: str) -> ast.expr | None:
    """The contrast ``node`` of the call ``text`` as formulaic takes it: a replacement node,
    or None if it is already so. Raises :class:`BadContrast`."""
    if isinstance(node, ast.Name):
        if node.id == "Treatment":  # patsy's Treatment is a function in formulaic: call it
            return ast.Call(func=ast.Name("Treatment", ast.Load()), args=[], keywords=[])
        if node.id in _R_CONTRASTS:
            return _contr_attribute(_R_CONTRASTS[node.id])
        if node.id in _CONTRAST_CLASSES:
            return None
        raise unknown_contrast(node.id, text)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        key = node.value.strip().lower().removeprefix("contr.")
        if key in _STRING_CONTRASTS:
            return _contr_attribute(_STRING_CONTRASTS[key])
        raise unknown_contrast(node.value, text)
    name = dotted(node)
    if name is not None and name in _CONTRAST_CLASSES:
        return None
    if isinstance(node, ast.Call) and dotted(node.func) in CONTRASTS:
        return _normalize_contrast_call(node, dotted(node.func), text)
    shown = name or (dotted(node.func) if isinstance(node, ast.Call) else None)
    raise unknown_contrast(shown or ast.unparse(node), text)


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
        raise BadContrast(
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
            raise BadContrast(
                f"the contrast {name}() has no argument '{k.arg}' in '{text}': it {takes}{hint}",
                f"{k.arg}=",
            )
        if arg in given:
            raise BadContrast(
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
            raise BadContrast(
                f"the reference level in '{text}' must be a level written as a constant, e.g. "
                f"{name}('b') or {name}(2); '{shown}' is not one",
                shown,
            )
    elif arg == "scores":
        raise BadContrast(
            f"{name}(scores=...) in '{text}' needs a list of numbers, which a formula cannot "
            f"hold; {name}() spaces the levels equally",
            shown,
        )
    elif not (isinstance(value, ast.Constant) and isinstance(value.value, bool)):
        raise BadContrast(
            f"'{arg}' of the contrast {name}() in '{text}' must be True or False, not '{shown}'",
            shown,
        )


def check_contrasts(tree: ast.AST, refuse) -> None:
    """The contrast part of :func:`check_expression`: every ``C()`` call takes a contrast
    :func:`_normalize_c_call` accepts (rewritten here in ``tree``), and contrasts appear
    nowhere else."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and dotted(n.func) == "C"]
    for call in calls:
        try:
            _normalize_c_call(call)
        except BadContrast as e:
            refuse(str(e), e.snippet)
    inside: set[int] = set()
    for call in calls:
        contrast = _contrast_argument(call)
        if contrast is not None:
            inside.update(id(n) for n in ast.walk(contrast))
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call) and dotted(node.func) in CONTRASTS:
            name = dotted(node.func)
        elif isinstance(node, ast.Attribute) and dotted(node) in CONTRASTS:
            name = dotted(node)
        if name is not None and id(node) not in inside:
            refuse(
                f"the contrast {name} in '{ast.unparse(node)}' belongs inside C(), as its "
                f"second argument: e.g. 'C(g, {name})'",
                name,
            )


_C_CALL = re.compile(r"(?<![\w.`])C\s*\(")


def rewrite_contrasts(text: str) -> str:
    """``text`` with each ``C(...)`` call that formulaic would not take as written but
    :func:`_normalize_c_call` can rewrite replaced by formulaic's spelling (written as
    formulaic writes the expression: ``ast.unparse``). Everything else is left as it is, for
    :func:`check_expression` to refuse; nothing is evaluated."""
    if "C" not in text:
        return text
    try:
        code = code_only(text)
    except FormulaError:
        return text
    out: list[str] = []
    last = 0
    for m in _C_CALL.finditer(code):
        if m.start() < last:
            continue  # a C() inside the arguments of the previous one, rewritten with it
        try:
            close = matching(text, m.end() - 1)
        except FormulaError:
            return text
        call = text[m.start() : close + 1]
        try:
            code, aliases = quoted_aliases(call)  # C(`my g`, sum)
            tree = ast.parse(code, mode="eval")
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and dotted(n.func) == "C"]
            changed = [_normalize_c_call(c) for c in calls]
            new = restore_aliases(ast.unparse(tree), aliases) if any(changed) else None
        except (SyntaxError, ValueError, RecursionError, MemoryError, BadContrast):
            continue  # refused later, where the allow-list or formulaic says why
        if new is not None:
            out += [text[last : m.start()], new]
            last = close + 1
    return "".join([*out, text[last:]])
