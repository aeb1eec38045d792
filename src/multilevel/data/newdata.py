"""Model matrices of new data (for prediction), rebuilt from a fit's schema."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from .schema import Schema
from .table import group_codes, to_pandas


def _formulaic_name(name: str) -> str:
    return "Intercept" if name == "(Intercept)" else name


def newdata_offset(schema: Schema, df: pd.DataFrame) -> np.ndarray | None:
    """The offset of new data: the formula's ``offset(expr)`` terms evaluated with the fit's
    specs, plus the ``offset=`` column; None when the model has none."""
    if not schema.has_offset:
        return None
    total = np.zeros(len(df))
    for expr, spec in zip(schema.formula.offsets, schema.offset_specs, strict=True):
        try:
            mm = spec.get_model_matrix(df, na_action="raise")
        except Exception as e:  # noqa: BLE001
            raise DataError(f"cannot evaluate offset({expr}) for newdata: {e}") from None
        total += np.asarray(mm.iloc[:, 0], dtype=float)
    if schema.offset is not None:
        if schema.offset not in df.columns:
            raise DataError(
                f"newdata has no column '{schema.offset}', the offset of the model "
                "(offsets are part of every prediction)"
            )
        values = pd.to_numeric(df[schema.offset], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all():
            raise DataError(
                f"newdata has missing or infinite values in the offset '{schema.offset}'"
            )
        total += values
    return total


def newdata_design(schema: Schema, newdata, new_groups: str = "population"):
    """Model matrices of ``newdata``: X (m, p), the offset (m,) or None, and per term
    (Z (m, k), codes (m,), new (m,)): codes -1 for levels not in the fit and ``new``
    numbering the distinct new levels (-1 for known ones)."""
    df = to_pandas(newdata)
    try:
        Xdf = schema.fixed_spec.get_model_matrix(df, na_action="raise")
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot build the fixed effects for newdata: {e}") from None
    X = np.asarray(Xdf[[_formulaic_name(c) for c in schema.xnames]], dtype=float)
    terms = []
    for ts in schema.terms:
        missing = [f for f in ts.factors if f not in df.columns]
        if missing:
            raise DataError(f"newdata has no column '{missing[0]}' (grouping factor)")
        if df[list(ts.factors)].isna().any().any():
            raise DataError(f"newdata has missing values in grouping factor '{ts.group}'")
        try:
            Z = ts.spec.get_model_matrix(df, na_action="raise")
        except Exception as e:  # noqa: BLE001
            raise DataError(f"cannot build the term {ts.term} for newdata: {e}") from None
        lab_codes, labels = group_codes(df, ts.factors)
        row_labels = labels[lab_codes]
        c = ts.levels.get_indexer(row_labels)
        if new_groups == "error" and (c < 0).any():
            bad = row_labels[c < 0][0]
            raise DataError(
                f"level '{bad}' of '{ts.group}' was not in the fitted data "
                f"({int((c < 0).sum())} rows with new levels)"
            )
        new = np.full(len(c), -1)
        if (c < 0).any():
            new[c < 0] = pd.factorize(pd.Index(row_labels[c < 0]))[0]
        terms.append((np.asarray(Z, dtype=float), c, new))
    return X, newdata_offset(schema, df), terms
