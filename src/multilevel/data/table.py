"""The data table as given: conversion to pandas, the columns a formula names, value types,
and the integer codes of grouping factors. Every error names the column and a row at fault."""

from __future__ import annotations

import difflib
import numbers

import numpy as np
import pandas as pd

from ..errors import DataError
from ..spec.contrasts import CONTRAST_NAMES
from ..spec.functions import ALLOWED_FUNCTIONS
from ..spec.names import is_bare_name, unquoted_spans
from ..spec.parsing import first_line


def to_pandas(data) -> pd.DataFrame:
    """Accept pandas, polars, pyarrow (through narwhals) or a dict of columns."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        try:
            return pd.DataFrame(data)
        except (ValueError, TypeError) as e:
            lengths = {}
            for k, v in data.items():
                try:
                    lengths[k] = len(v)
                except TypeError:
                    lengths[k] = "a scalar"
            detail = ", ".join(f"'{k}': {n}" for k, n in lengths.items())
            raise DataError(
                f"cannot make a table of the dict of columns ({first_line(e)}); "
                f"column lengths: {detail}"
            ) from None
    try:
        import narwhals as nw

        return nw.from_native(data, eager_only=True).to_pandas()
    except TypeError:
        raise DataError(
            f"data must be a table (pandas, polars or pyarrow), not {type(data).__name__}"
        ) from None


def check_columns(names: set[str], df: pd.DataFrame, formula: str) -> None:
    cols = list(map(str, df.columns))
    missing = sorted(n for n in names if n not in set(cols))
    if missing:
        hints = []
        for m in missing:
            close = difflib.get_close_matches(m, cols, n=1)
            if not close:
                lowered = {c.lower(): c for c in cols}
                close = [lowered[m.lower()]] if m.lower() in lowered else []
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            if m in CONTRAST_NAMES or f"contr.{m}" in ALLOWED_FUNCTIONS:
                hint += f" ('{m}' is a contrast: use it inside C(), e.g. 'C(g, {m})')"
            elif m in ALLOWED_FUNCTIONS:
                hint += f" ('{m}' is a function: call it, e.g. '{m}(x)')"
            hints.append(f"'{m}'{hint}")
        shown = ", ".join(cols[:30]) + (f", ... ({len(cols)} columns)" if len(cols) > 30 else "")
        raise DataError(
            f"unknown column{'s' if len(missing) > 1 else ''} {', '.join(hints)} in formula "
            f"'{formula}'; the data has columns: {shown}" + _quoting_hint(cols, formula)
        )
    dup = set(df.columns[df.columns.duplicated()])
    bad = sorted(d for d in dup if d in names)
    if bad:
        n = int((df.columns == bad[0]).sum())
        raise DataError(f"column '{bad[0]}' appears {n} times in the data; rename the copies")


def _quoting_hint(cols: list[str], formula: str) -> str:
    """How to quote the columns that the formula writes bare but a formula cannot read bare
    (``a-b``, ``my x``, ``1x``: not Python names), for the unknown-column message."""
    bare = "".join(formula[a:b] for a, b in unquoted_spans(formula))
    odd = [
        c
        for c in cols
        if not is_bare_name(c) and any(ch.isalpha() for ch in c) and c.strip() in bare
    ]
    if not odd:
        return ""
    quoted = ", ".join(f"`{c}`" for c in odd[:5])
    return (
        f"; a column name that is not a Python name goes in backticks: {quoted}"
        f"{' (as in R)' if len(odd) == 1 else ''}"
    )


def _kind(v) -> str:
    if isinstance(v, bool | np.bool_):
        return "bool"
    if isinstance(v, numbers.Real):
        return "number"
    return type(v).__name__


def check_values(sub: pd.DataFrame) -> pd.DataFrame:
    """Refuse object columns that mix value types; make object columns of numbers numeric."""
    out = sub
    for c in sub.columns:
        col = sub[c]
        if col.dtype != object:
            continue
        values = col.dropna()
        kinds = values.map(_kind)
        counts = kinds.value_counts()
        if len(counts) > 1:
            rare = counts.index[-1]
            row = kinds.index[kinds.to_numpy() == rare][0]
            summary = ", ".join(f"{n} {k}" for k, n in counts.items())
            raise DataError(
                f"column '{c}' mixes value types ({summary}), e.g. {values[row]!r} in row "
                f"{row}; convert it to one type first"
            )
        if len(counts) == 1 and counts.index[0] == "number":
            if out is sub:
                out = sub.copy()
            out[c] = pd.to_numeric(col)
    return out


def looks_numeric(col: pd.Series) -> bool:
    values = col.dropna().head(100)
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().all()


def check_numbers_as_text(col: pd.Series, name: str, response: bool = False) -> None:
    """A text column of predictor values that are nearly all numbers ('1.5', '2.3', 'oops')
    is a numeric column with a typo, not a factor with a level per value: refuse it.
    (A ``category`` column is taken as an intended factor.) For the response, say which
    value stops it from being numeric."""
    if isinstance(col.dtype, pd.CategoricalDtype) or not (
        pd.api.types.is_string_dtype(col) or col.dtype == object
    ):
        return
    values = col.dropna()
    if values.empty:
        return
    numeric = pd.to_numeric(values.astype(str).str.strip(), errors="coerce").notna()
    n_text = int((~numeric).sum())
    if n_text == 0 or numeric.mean() < 0.9:
        return
    first = values.index[~numeric.to_numpy()][0]
    first = first.item() if isinstance(first, np.generic) else first
    raise DataError(
        f"column '{name}' holds numbers as text, and {n_text} value"
        f"{'s' if n_text > 1 else ''} that {'are' if n_text > 1 else 'is'} not a number "
        f"(e.g. {values[first]!r} in row {first!r}); fix or remove "
        f"{'them' if n_text > 1 else 'it'}"
        + ("" if response else ", or make the column categorical if it is a factor")
    )


def level_label(value) -> str:
    """A level's label: ``str``, but ``"3"`` for the float 3.0 (a column of integers read
    with missing values is float), so that labels match whatever the dtype."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def group_codes(sub: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of the (interaction of the) grouping columns; levels sorted, labels
    joined with ':' as lme4 does."""
    if len(factors) == 1:
        codes, uniques = pd.factorize(sub[factors[0]], sort=True)
        return codes.astype(np.intp, copy=False), pd.Index(
            [level_label(u) for u in uniques], dtype=object
        )
    parts = [pd.factorize(sub[f], sort=True) for f in factors]
    mult = 1
    combined = np.zeros(len(sub), dtype=np.int64)
    for codes, uniques in reversed(parts):
        combined += codes.astype(np.int64) * mult
        mult *= len(uniques)
    codes, uniq = pd.factorize(combined, sort=True)
    labels = []
    for u in uniq:
        rem, pieces = int(u), []
        for _, uniques in reversed(parts):
            pieces.append(level_label(uniques[rem % len(uniques)]))
            rem //= len(uniques)
        labels.append(":".join(reversed(pieces)))
    return codes.astype(np.intp, copy=False), pd.Index(labels, dtype=object)
