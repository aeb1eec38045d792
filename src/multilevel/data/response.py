"""The response of a generalized linear mixed model, as R's ``binomial()`` and ``poisson()``
take it, with every check naming the column and a row.

* binomial: a 0/1 numeric or logical column; a factor (text, categorical) with two levels,
  the second (in sorted order) the success, as R does; a proportion with ``weights=`` the
  number of trials; or lme4's ``cbind(successes, failures)``, whose trials s + f become the
  prior weights (times any ``weights=``). The response is then the proportion s / (s + f).
* poisson: non-negative whole counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from ..spec import ModelFormula, offset_formula
from ..spec.parsing import first_line
from .checks import unquoted
from .materialize import model_matrix
from .table import level_label

FAMILIES = ("gaussian", "binomial", "poisson")


def _row(rows: pd.Index, i: int):
    label = rows[i]
    return repr(label.item() if isinstance(label, np.generic) else label)


def _evaluate(expr: str, sub: pd.DataFrame, mf: ModelFormula, what: str) -> np.ndarray:
    try:
        mm = model_matrix(offset_formula(expr), sub)
    except Exception as e:  # noqa: BLE001
        raise DataError(
            f"cannot evaluate the {what} '{expr}' of '{mf.response}': {first_line(e)}"
        ) from None
    if mm.shape[1] != 1:
        raise DataError(f"the {what} '{expr}' of '{mf.response}' must be one numeric column")
    return np.asarray(mm.iloc[:, 0], dtype=float)


def _cbind(mf: ModelFormula, sub: pd.DataFrame, rows: pd.Index):
    succ_expr, fail_expr = mf.binomial
    s = _evaluate(succ_expr, sub, mf, "successes")
    f = _evaluate(fail_expr, sub, mf, "failures")
    for values, expr, what in ((s, succ_expr, "successes"), (f, fail_expr, "failures")):
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"the {what} '{expr}' of '{mf.response}' must be counts of at least 0, not "
                f"{values[i]:g} (row {_row(rows, i)}; {int(bad.sum())} such rows)"
            )
    trials = s + f
    zero = trials == 0
    if zero.any():
        i = int(np.argmax(zero))
        raise DataError(
            f"'{mf.response}' has 0 trials (successes plus failures) in {int(zero.sum())} "
            f"row{'s' if zero.sum() > 1 else ''}, the first row {_row(rows, i)}: such rows say "
            "nothing about the probability; drop them"
        )
    return s / trials, trials


def _binary(col: pd.Series, name: str, rows: pd.Index) -> np.ndarray:
    """0/1 from a logical or two-level column (R: the second level is the success)."""
    if col.dtype == bool:
        return col.to_numpy(dtype=float)
    levels = sorted(pd.unique(col.dropna()), key=level_label)
    if len(levels) != 2:
        shown = ", ".join(repr(level_label(v)) for v in levels[:10])
        raise DataError(
            f"the response '{name}' of a binomial model must have two levels (the second, "
            f"in sorted order, is the success), but it has {len(levels)}: {shown}"
        )
    return (col == levels[1]).to_numpy(dtype=float)


def glm_response(
    mf: ModelFormula, sub: pd.DataFrame, family: str, weights: np.ndarray | None, rows: pd.Index
):
    """(y (n,), prior weights (n,) or None) of a binomial or Poisson model."""
    if mf.binomial is not None:
        if family != "binomial":
            raise DataError(
                f"the response '{mf.response}' (successes, failures) is for a binomial model; "
                f"use family='binomial', not '{family}'"
            )
        y, trials = _cbind(mf, sub, rows)
        return y, trials if weights is None else trials * weights
    name = unquoted(mf.response)
    if name in sub.columns and not pd.api.types.is_numeric_dtype(sub[name]):
        if family != "binomial":
            raise DataError(
                f"the response '{name}' of a {family} model must be numeric counts, not "
                f"{sub[name].dtype}"
            )
        return _binary(sub[name], name, rows), weights
    if name in sub.columns and sub[name].dtype == bool:
        return sub[name].to_numpy(dtype=float), weights
    y = _evaluate(mf.response, sub, mf, "response")
    bad = ~np.isfinite(y)
    if family == "binomial":
        bad |= (y < 0) | (y > 1)
        if weights is None:
            bad |= (y != 0) & (y != 1)
        if bad.any():
            i = int(np.argmax(bad))
            need = "0 or 1" if weights is None else "a proportion between 0 and 1"
            raise DataError(
                f"the response '{mf.response}' of a binomial model must be {need}, not "
                f"{y[i]:g} in row {_row(rows, i)} ({int(bad.sum())} such rows); counts of "
                "successes out of trials go in cbind(successes, failures), proportions with "
                "weights= the trials"
            )
        return y, weights
    bad |= (y < 0) | (y != np.round(y))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"the response '{mf.response}' of a Poisson model must be whole counts of at "
            f"least 0, not {y[i]:g} in row {_row(rows, i)} ({int(bad.sum())} such rows)"
        )
    return y, weights
