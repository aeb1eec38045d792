"""The in-memory model frame: from a parsed formula and a data table to the arrays of a fit.

Rows with a missing value in any column the model uses are dropped and counted; rows with
a prior weight of 0 likewise (counted apart). Shapes: ``y`` (n,), ``X`` (n, p), per
random-effects term ``Z`` (n, k) and ``codes`` (n,) in ``range(nlevels)``, ``weights`` and
``offset`` (n,) or None (weights that are all 1 are None: no weights, as in lme4). Terms
are ordered by decreasing number of levels, as lme4 orders them. What is known of the data
besides these numbers is the frame's :class:`~multilevel.data.schema.Schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..errors import DataError
from ..spec import ModelFormula, parse_formula
from .checks import (
    check_exact_fit,
    check_finite,
    check_fixed_factors,
    check_magnitude,
    check_response_not_predictor,
    drop_aliased,
)
from .materialize import fixed_matrices, offset_matrices, random_matrix
from .response import FAMILIES, glm_response
from .schema import Schema, TermSchema
from .table import (
    check_columns,
    check_numbers_as_text,
    check_values,
    group_codes,
    looks_numeric,
    to_pandas,
)


@dataclass
class ReTerm:
    """One random-effects term's arrays: ``Z`` (n, k) and the level ``codes`` (n,), with its
    schema (names, levels)."""

    schema: TermSchema
    Z: np.ndarray
    codes: np.ndarray

    term = property(lambda self: self.schema.term)
    group = property(lambda self: self.schema.group)
    names = property(lambda self: list(self.schema.names))
    levels = property(lambda self: self.schema.levels)
    nlevels = property(lambda self: self.schema.nlevels)
    k = property(lambda self: self.schema.k)
    correlated = property(lambda self: self.schema.correlated)


@dataclass
class ModelFrame:
    """The numbers a fit needs, after missing values (and zero weights) are dropped, with
    the :class:`Schema` that names them. ``data`` holds the rows and columns used (for saving
    a fit); ``index`` the caller's labels of those rows."""

    schema: Schema
    y: np.ndarray
    X: np.ndarray
    reterms: list[ReTerm]
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    data: pd.DataFrame | None = None
    index: pd.Index | None = None

    @property
    def n(self) -> int:
        return len(self.y)

    formula = property(lambda self: self.schema.formula)
    xnames = property(lambda self: list(self.schema.xnames))
    response_name = property(lambda self: self.schema.response)
    n_dropped = property(lambda self: self.schema.n_dropped)
    dropped_columns = property(lambda self: list(self.schema.dropped_columns))
    fixed_spec = property(lambda self: self.schema.fixed_spec)

    def with_response(self, y: np.ndarray) -> ModelFrame:
        """The same frame with another response (n,) (bootstrap replicates, simulations)."""
        y = np.asarray(y, dtype=float)
        if y.shape != self.y.shape:
            raise DataError(f"a response for this model has length {self.n}, not {y.shape}")
        return replace(self, y=y)


def _column_of(name, df: pd.DataFrame, what: str) -> str:
    """The name of the column given as ``weights=`` or ``offset=``, checked."""
    if not isinstance(name, str):
        raise DataError(
            f"{what}= takes the name of a column of the data, not {type(name).__name__}"
        )
    if name not in df.columns:
        shown = ", ".join(map(str, df.columns[:30]))
        raise DataError(f"the {what} column '{name}' is not in the data (columns: {shown})")
    return name


def _check_numeric(col: pd.Series, name: str, what: str) -> None:
    """A weights or offset column must hold numbers: else an error naming a row at fault
    (the first value that is not a number, or the first value of a boolean column)."""
    if col.dtype != bool and pd.api.types.is_numeric_dtype(col):
        return
    values = col.dropna()
    if not len(values):
        raise DataError(f"the {what} column '{name}' has only missing values")
    hint = ""
    if col.dtype == bool:
        row = values.index[0]
    else:
        as_number = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
        text = as_number.isna().to_numpy()
        row = values.index[int(np.argmax(text))] if text.any() else values.index[0]
        if not text.any():
            hint = "; convert it with pandas.to_numeric"
    value = values[row]
    value = value.item() if isinstance(value, np.generic) else value
    raise DataError(
        f"the {what} column '{name}' must be numeric, not {col.dtype} "
        f"(e.g. {value!r} in row {_row(row)}){hint}"
    )


def _check_weights(w: pd.Series, name: str) -> np.ndarray:
    """Prior weights: numeric, finite, not missing, not negative. Returns them as floats."""
    _check_numeric(w, name, "weights")
    values = w.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        what = "missing" if np.isnan(values[i]) else "infinite"
        raise DataError(
            f"the weights column '{name}' has {int(bad.sum())} missing or infinite value"
            f"{'s' if bad.sum() > 1 else ''} (the first, {what}, in row {_row(w.index[i])}); "
            "prior weights must be given for every row"
        )
    neg = values < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise DataError(
            f"the weights column '{name}' has {int(neg.sum())} negative value"
            f"{'s' if neg.sum() > 1 else ''} (e.g. {values[i]:g} in row {_row(w.index[i])}); "
            "prior weights must be positive (a weight of 0 drops the row)"
        )
    return values


def _row(label):
    return repr(label.item() if isinstance(label, np.generic) else label)


def build_frame(
    formula: str | ModelFormula,
    data,
    weights: str | None = None,
    offset: str | None = None,
    family: str = "gaussian",
) -> ModelFrame:
    """Check ``formula`` against ``data`` and build y, X, the random-effects terms, the prior
    weights (``weights``: a column name; for a binomial ``cbind`` response, times the trials)
    and the offset (the formula's ``offset(expr)`` terms
    plus the column ``offset``, if given)."""
    # every expression is checked by the parse; nothing is evaluated before this
    mf = formula if isinstance(formula, ModelFormula) else parse_formula(formula)
    df = to_pandas(data)
    if df.shape[1] == 0:
        raise DataError("the data has no columns")
    if df.shape[0] == 0:
        raise DataError(f"the data has no rows (columns: {', '.join(map(str, df.columns))})")
    if not all(isinstance(c, str) for c in df.columns):
        df = df.set_axis([str(c) for c in df.columns], axis=1)  # a new frame: never the caller's
    wname = _column_of(weights, df, "weights") if weights is not None else None
    oname = _column_of(offset, df, "offset") if offset is not None else None
    used = set(mf.columns)
    check_columns(used, df, mf.text)
    extra = [c for c in (wname, oname) if c is not None and c not in used]
    columns = [c for c in df.columns if c in used or c in extra]
    sub = check_values(df[columns])
    for name in sorted(mf.predictor_columns | ({oname} if oname else set())):
        check_numbers_as_text(sub[name], name)
    if family not in FAMILIES:
        raise DataError(f"unknown family {family!r}: use one of {', '.join(FAMILIES)}")
    glm = family != "gaussian"
    for name in sorted(mf.response_columns):
        col = sub[name]
        if glm:
            continue  # checked by glm_response (a binomial response may be a factor)
        if col.dtype == bool:
            sub[name] = col = col.astype(float)
        if not pd.api.types.is_numeric_dtype(col):
            check_numbers_as_text(col, name, response=True)
            values = col.dropna()
            text = values[pd.to_numeric(values.astype(str), errors="coerce").isna()]
            example = (text if len(text) else values).iloc[0] if len(values) else None
            raise DataError(
                f"the response '{mf.response}' must be numeric, but the column '{name}' has "
                f"type {col.dtype} (e.g. {example!r})"
                + ("; convert it with pandas.to_numeric" if looks_numeric(col) else "")
            )
    model_cols = [c for c in columns if c != wname or c in used]
    keep = sub[model_cols].notna().all(axis=1).to_numpy().copy()
    n_dropped = int((~keep).sum())
    if not keep.any():
        counts = ", ".join(f"'{c}' {int(sub[c].isna().sum())}" for c in model_cols)
        raise DataError(
            f"no rows left: all {len(sub)} rows have a missing value in at least one of the "
            f"columns the model uses (missing values per column: {counts})"
        )
    n_zero = 0
    if wname is not None:
        w_all = _check_weights(sub[wname][keep], wname)
        zero = np.zeros(len(sub), dtype=bool)
        zero[np.flatnonzero(keep)[w_all == 0]] = True
        n_zero = int(zero.sum())
        if n_zero and family == "binomial":
            label = sub.index[int(np.argmax(zero))]
            label = label.item() if isinstance(label, np.generic) else label
            raise DataError(
                f"the weights column '{wname}' (the number of trials of a binomial proportion) "
                f"is 0 in {n_zero} row{'s' if n_zero > 1 else ''}, the first row "
                f"{label!r}: such rows say nothing about the probability; drop them"
            )
        if n_zero == int(keep.sum()):
            raise DataError(f"every row has a weight of 0 in the weights column '{wname}'")
        keep &= ~zero
    rows = sub.index[keep]  # the caller's row labels, for messages
    if n_dropped or n_zero:
        sub = sub.loc[keep].reset_index(drop=True)
    n = len(sub)
    w = _check_weights(sub[wname], wname) if wname is not None else None
    if w is not None and (w == 1.0).all():
        w = None  # weights of 1 are no weights (as lme4's default): the very same fit

    check_fixed_factors(sub, mf.fixed_columns, mf.fixed, n)
    if glm:
        _, X, xnames, fixed_spec = fixed_matrices(mf, sub, with_response=False)
        y, w = glm_response(mf, sub, family, w, rows)
    elif mf.binomial is not None:
        raise DataError(
            f"the response '{mf.response}' (successes, failures) is for a binomial model: "
            "use family='binomial'"
        )
    else:
        y, X, xnames, fixed_spec = fixed_matrices(mf, sub)
    check_finite(y[:, None], [mf.response], "the response", rows)
    check_finite(X, xnames, "the fixed-effects column", rows)
    check_magnitude(y[:, None], [mf.response], "the response", rows)
    check_magnitude(X, xnames, "the fixed-effects column", rows)
    off, offset_specs = offset_matrices(mf, sub, rows)
    if oname is not None:
        col = sub[oname].set_axis(rows)  # the caller's row labels, for messages
        _check_numeric(col, oname, "offset")
        values = col.to_numpy(dtype=float)
        check_finite(values[:, None], [oname], "the offset column", rows)
        check_magnitude(values[:, None], [oname], "the offset column", rows)
        off = values if off is None else off + values
    working = y if off is None else y - off
    if glm:
        _check_glm_variation(mf.response, y, family)
    elif n > 1 and np.ptp(working) == 0:
        what = "" if off is None else " less the offset"
        raise DataError(
            f"the response '{mf.response}'{what} has the same value ({working[0]:g}) in all "
            f"{n} rows; there is no variation to model"
        )
    X, xnames, dropped = drop_aliased(X, xnames)
    if X.shape[1] >= n:
        raise DataError(
            f"the fixed effects have {X.shape[1]} column{'s' if X.shape[1] > 1 else ''} but "
            f"there {'are only' if n > 1 else 'is only'} {n} observation{'s' if n > 1 else ''}; "
            "they need fewer columns than observations"
        )
    check_response_not_predictor(mf.response, xnames, "fixed effects")
    reterms = []
    for rt in mf.random:
        Z, names, spec = random_matrix(rt, sub, mf, rows, X, xnames)
        codes, levels = group_codes(sub, rt.factors)
        reterms.append(ReTerm(TermSchema(rt, tuple(names), levels, spec), Z, codes))
    reterms.sort(key=lambda t: -t.nlevels)  # stable: ties keep formula order
    for rt in reterms:
        _check_levels(rt)
        # a GLMM may have as many effects as observations (an observation-level random
        # effect for overdispersion, as lme4 allows): σ is not estimated there
        if not glm and rt.nlevels * rt.k >= n:
            raise DataError(
                f"the term {rt.term} has {rt.nlevels * rt.k} random effects "
                f"({rt.nlevels} levels x {rt.k}), not fewer than the {n} observations; "
                "the random-effects parameters and the residual variance are unidentifiable"
            )
    if not glm:  # σ is estimated only in the linear model
        check_exact_fit(X, reterms, n)
    schema = Schema(
        formula=mf,
        xnames=tuple(xnames),
        fixed_spec=fixed_spec,
        terms=tuple(rt.schema for rt in reterms),
        nobs=n,
        n_dropped=n_dropped,
        n_zero_weight=n_zero,
        dropped_columns=tuple(dropped),
        weights=wname,
        offset=oname,
        offset_specs=offset_specs,
        family=family,
    )
    return ModelFrame(schema, y, X, reterms, w, off, sub, rows)


def _check_glm_variation(response: str, y: np.ndarray, family: str) -> None:
    """A binomial response needs successes and failures; Poisson counts, one above 0."""
    if family == "binomial" and (np.all(y == 0) or np.all(y == 1)):
        which = "failures" if np.all(y == 0) else "successes"
        raise DataError(
            f"the response '{response}' has only {which} in all {len(y)} rows: a binomial model "
            "needs both successes and failures"
        )
    if family == "poisson" and np.all(y == 0):
        raise DataError(f"the counts '{response}' are 0 in all {len(y)} rows")


def _check_levels(rt: ReTerm) -> None:
    """A random effect needs at least two groups."""
    if rt.nlevels < 2:
        only = f" (only '{rt.levels[0]}')" if rt.nlevels == 1 else ""
        raise DataError(
            f"the grouping factor '{rt.group}' of the term {rt.term} has {rt.nlevels} "
            f"level{only}; a random effect needs at least 2 groups"
        )
