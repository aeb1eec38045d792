"""Model matrices through formulaic: the fixed effects, each random-effects term's Z, the
offsets, evaluated with only the allowed functions in scope (the formula was checked by
:mod:`multilevel.spec` before anything reaches here).

Simple parts (sums of ``1`` and plain numeric columns, :mod:`multilevel.data.simple`) are
built without formulaic, with the same values and names; their spec for new data
(:class:`LazySpec`) runs formulaic on the fit's rows only when first used."""

from __future__ import annotations

import re
from functools import cache, cached_property

import numpy as np
import pandas as pd

from ..errors import DataError, FormulaError
from ..spec import ModelFormula, RandomTerm, offset_formula
from ..spec.functions import EXTRA_FUNCTIONS
from ..spec.names import aliased_column, column_alias, restore_names
from ..spec.parsing import first_line, formulaic_formula
from .checks import (
    check_design_size,
    check_finite,
    check_magnitude,
    check_response_not_predictor,
    unquoted,
)
from .simple import INTERCEPT, simple_design
from .table import level_label


@cache
def eval_context() -> dict:
    """The names formulaic may use besides the data and its own transforms: the allowed
    functions it lacks. Passed explicitly so that nothing else leaks into evaluation."""
    return {name: getattr(np, fn) for name, fn in EXTRA_FUNCTIONS.items()}


def name_aliases(data) -> dict:
    """The columns under the aliases by which expressions read them (a backticked name such
    as `` `my x` `` or `` `class` ``, a name Python reads in another form such as ``µg``:
    :func:`~multilevel.spec.names.alias_names`), for formulaic's evaluation."""
    if not isinstance(data, pd.DataFrame):
        return {}
    if data.columns.duplicated().any():
        return {}  # refused by the frame (or by formulaic, for new data)
    return {column_alias(c): data[c] for c in data.columns if isinstance(c, str)}


def _restored(mm):
    """formulaic's model matrix ``mm`` with aliases in its column names written back."""
    names = [restore_names(str(c)) for c in mm.columns]
    if names != [str(c) for c in mm.columns]:
        mm.columns = names
    return mm


class BoundSpec:
    """A formulaic ModelSpec that evaluates with :func:`eval_context` (e.g. for ``predict``)."""

    def __init__(self, spec):
        self.spec = spec

    def get_model_matrix(self, data, context=None, **kwargs):
        ctx = {**eval_context(), **name_aliases(data), **(context or {})}
        return _restored(self.spec.get_model_matrix(data, context=ctx, **kwargs))

    @cached_property
    def structure(self):
        """formulaic's term structure, the terms and columns named as :func:`column_names`
        names them (aliases of columns written back)."""
        out = []
        for st in self.spec.structure:
            columns = [restore_names(str(c)) for c in st.columns]
            term = st.term if restore_names(str(st.term)) == str(st.term) else ShownTerm(st.term)
            out.append(type(st)(term, st.scoped_terms, columns))
        return out

    def __getattr__(self, name):
        if name == "spec":
            raise AttributeError(name)
        return getattr(self.spec, name)


class ShownTerm:
    """A formulaic term that prints as written: the aliases of columns in its expressions
    written back (:func:`~multilevel.spec.names.restore_names`); all else is the term's."""

    def __init__(self, term):
        self.term = term

    def __str__(self) -> str:
        return restore_names(str(self.term))

    def __getattr__(self, name):
        if name == "term":
            raise AttributeError(name)
        return getattr(self.term, name)


class LazySpec:
    """The :class:`BoundSpec` of formulaic's model matrix of ``rhs`` on ``data`` (the rows it
    was built from without formulaic), made the first time anything of it is used: new data,
    ``structure``, ``encoder_state``... Every attribute is the formulaic spec's own."""

    def __init__(self, rhs: str, data: pd.DataFrame):
        self._rhs = rhs
        self._data = data
        self._bound: BoundSpec | None = None

    def bound(self) -> BoundSpec:
        """formulaic's spec, built on first use."""
        if self._bound is None:
            self._bound = BoundSpec(model_matrix(self._rhs, self._data).model_spec)
            self._data = None  # no longer needed
        return self._bound

    def get_model_matrix(self, data, context=None, **kwargs):
        return self.bound().get_model_matrix(data, context=context, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_rhs", "_data", "_bound"):
            raise AttributeError(name)
        return getattr(self.bound(), name)


def explain_formulaic(message: str, expr: str, sub: pd.DataFrame) -> str:
    """formulaic's message, with the levels a contrast's reference level must be one of
    when that is what went wrong (formulaic names the value, not the column)."""
    if "is not among the provided levels" not in message:
        return message
    shown = []
    for name in dict.fromkeys(re.findall(r"\bC\(\s*`?([^,`)]+?)`?\s*,", expr)):
        name = aliased_column(name) or name
        if name in sub.columns:
            levels = sorted(map(level_label, sub[name].dropna().unique()))
            more = f", ... ({len(levels)} levels)" if len(levels) > 20 else ""
            shown.append(f"'{name}' has levels " + ", ".join(map(repr, levels[:20])) + more)
    return message + (f" ({'; '.join(shown)})" if shown else "")


def response_column(response: str, sub: pd.DataFrame) -> str | None:
    """The column a response that is a plain numeric column name reads, else None."""
    name = unquoted(response)
    if name not in sub.columns or not pd.api.types.is_numeric_dtype(sub[name]):
        return None
    return name


def shared_columns(Z, names: list[str], X: np.ndarray, xnames: list[str]) -> np.ndarray | None:
    """``X[:, j:j+k]`` (a view) when the k columns ``names`` of ``Z`` (formulaic's model
    matrix or an array) are, by name and value, the consecutive columns j..j+k-1 of X:
    ``(1 + x | g)`` beside ``y ~ x`` then costs no copy of x or of the column of ones."""
    if not names or names[0] not in xnames:
        return None
    j = xnames.index(names[0])
    if xnames[j : j + len(names)] != names:
        return None
    for a in range(len(names)):
        column = Z.iloc[:, a] if isinstance(Z, pd.DataFrame) else Z[:, a]
        if not np.array_equal(np.asarray(column, dtype=float), X[:, j + a]):
            return None
    return X[:, j : j + len(names)]


def column_names(columns) -> list[str]:
    """formulaic's column names as lme4 writes them (``(Intercept)``)."""
    return [INTERCEPT if c == "Intercept" else restore_names(str(c)) for c in columns]


def model_matrix(spec: str, sub: pd.DataFrame):
    """formulaic's model matrix of an (already checked) formula, with the allowed functions."""
    from formulaic import model_matrix as materialize

    context = {**eval_context(), **name_aliases(sub)}
    return materialize(formulaic_formula(spec), sub, context=context, na_action="ignore")


def fixed_matrices(mf: ModelFormula, sub: pd.DataFrame, with_response: bool = True):
    """(y (n,), X (n, p) column-major, names, a spec for new data) of the fixed part.

    A plain numeric response is read from its column (a view, no copy); formulaic then
    evaluates only the predictors, unless they are simple (:func:`simple_design`). With
    ``with_response`` False only the predictors are built and y is None (a GLMM's response
    is made by :mod:`multilevel.data.response`)."""
    column = response_column(mf.response, sub) if with_response else None
    rhs_only = column is not None or not with_response
    # every model matrix (X, each Z, the offsets) is sized before any is built
    check_design_size(mf, sub, response_is_built=not rhs_only, linear=with_response)
    simple = simple_design(mf.fixed, sub) if rhs_only else None
    if simple is not None:
        X, names = simple
        y = np.asarray(sub[column], dtype=float) if column is not None else None
        return y, X, names, LazySpec(mf.fixed, sub)
    try:
        spec = mf.fixed if rhs_only else mf.fixed_formula
        mm = model_matrix(spec, sub)
    except Exception as e:  # noqa: BLE001
        raise FormulaError(
            f"cannot build the fixed-effects matrix of '{mf.fixed_formula}': "
            + explain_formulaic(first_line(e), mf.fixed, sub),
            mf.text,
        ) from None
    if rhs_only:
        y, rhs = (np.asarray(sub[column], dtype=float) if column is not None else None), mm
    else:
        if not hasattr(mm, "lhs"):  # formulaic found no response, e.g. in '() ~ x'
            raise DataError(f"the response '{mf.response}' must be one numeric column")
        lhs, rhs = mm.lhs, mm.rhs
        if lhs.ndim != 2 or lhs.shape[1] != 1:
            raise DataError(f"the response '{mf.response}' must be one numeric column")
        y = np.asarray(lhs.iloc[:, 0], dtype=float)
    del mm
    # X column-major: each column contiguous, as the blocks and the Z views read it
    X = np.asfortranarray(np.asarray(rhs, dtype=float))
    return y, X, column_names(rhs.columns), BoundSpec(rhs.model_spec)


def random_matrix(
    rt: RandomTerm,
    sub: pd.DataFrame,
    mf: ModelFormula,
    rows: pd.Index,
    X: np.ndarray,
    xnames: list[str],
):
    """(Z (n, k), names, a spec for new data) of one random-effects term: a view of X where
    the columns are X's (see :func:`shared_columns`)."""
    simple = simple_design(rt.expr, sub)
    if simple is not None:
        Zs, names = simple
        if not names:
            raise FormulaError(f"the random-effects term {rt} has no columns", mf.text)
        Zm = shared_columns(Zs, names, X, xnames)
        if Zm is None:
            Zm = Zs
            check_finite(Zm, names, f"in the random-effects term {rt}, the column", rows)
            check_magnitude(Zm, names, f"in the random-effects term {rt}, the column", rows)
            check_response_not_predictor(mf.response, names, f"random effects of {rt}")
        return Zm, names, LazySpec(rt.expr, sub)
    try:
        Z = model_matrix(rt.expr, sub)
    except Exception as e:  # noqa: BLE001
        raise FormulaError(
            f"cannot build the random-effects matrix of the term {rt}: {first_line(e)}", mf.text
        ) from None
    names = column_names(Z.columns)
    if Z.shape[1] == 0:
        raise FormulaError(f"the random-effects term {rt} has no columns", mf.text)
    spec = BoundSpec(Z.model_spec)
    Zm = shared_columns(Z, names, X, xnames)
    if Zm is None:
        Zm = np.asfortranarray(np.asarray(Z, dtype=float))
        check_finite(Zm, names, f"in the random-effects term {rt}, the column", rows)
        check_magnitude(Zm, names, f"in the random-effects term {rt}, the column", rows)
        check_response_not_predictor(mf.response, names, f"random effects of {rt}")
    return Zm, names, spec


def offset_matrices(mf: ModelFormula, sub: pd.DataFrame, rows: pd.Index):
    """(sum of the formula's ``offset(expr)`` terms (n,) or None, one spec per term)."""
    if not mf.offsets:
        return None, ()
    total = np.zeros(len(sub))
    specs = []
    for expr in mf.offsets:
        try:
            mm = model_matrix(offset_formula(expr), sub)
        except Exception as e:  # noqa: BLE001
            raise FormulaError(
                f"cannot evaluate offset({expr}): {first_line(e)}", mf.text
            ) from None
        if mm.shape[1] != 1:
            raise FormulaError(
                f"offset({expr}) must be one numeric column, not {mm.shape[1]} columns (a factor?)",
                mf.text,
            )
        values = np.asarray(mm.iloc[:, 0], dtype=float)
        check_finite(values[:, None], [f"offset({expr})"], "the offset", rows)
        check_magnitude(values[:, None], [f"offset({expr})"], "the offset", rows)
        total += values
        specs.append(BoundSpec(mm.model_spec))
    return total, tuple(specs)
