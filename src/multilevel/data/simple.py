"""Model matrices of simple formula parts (:mod:`multilevel.spec.simple`) with numpy alone.

For a sum of ``1`` and names of plain numeric columns formulaic's model matrix is the column
of ones (named ``Intercept``, first) and the columns themselves, converted to float; here it
is built without formulaic, with the same values, names and column order. Columns of any
other type (bool, categorical, text, pandas' nullable types, complex...) return None and are
left to formulaic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec.simple import SimpleTerms, simple_terms

INTERCEPT = "(Intercept)"

#: float types whose conversion to float64 is exact; any integer type is taken too (numpy
#: rounds it to float64 as formulaic's conversion does)
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def plain_numeric(col) -> bool:
    """Whether formulaic takes ``col`` as one numeric column of its own values: a numpy
    integer (not bool) or float16/32/64 column."""
    if not isinstance(col, pd.Series):  # a duplicated column name: a DataFrame
        return False
    dtype = col.dtype
    return isinstance(dtype, np.dtype) and (dtype.kind in "iu" or dtype in _FLOATS)


def simple_design(rhs: str, sub: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
    """(M (n, p) float, column-major, names in lme4's spelling) of the right-hand side
    ``rhs`` on ``sub``, as formulaic's model matrix would give them; None when ``rhs`` is not
    simple or reads a column that is not plain numeric."""
    terms = simple_terms(rhs)
    if terms is None:
        return None
    return terms_design(terms, sub)


def terms_design(terms: SimpleTerms, sub: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
    """See :func:`simple_design`."""
    columns = []
    for name in terms.names:
        if name not in sub.columns:
            return None
        col = sub[name]
        if not plain_numeric(col):
            return None
        columns.append(col)
    names = ([INTERCEPT] if terms.intercept else []) + list(terms.names)
    M = np.empty((len(sub), len(names)), order="F")
    j = 0
    if terms.intercept:
        M[:, 0] = 1.0
        j = 1
    for col in columns:
        M[:, j] = col.to_numpy()
        j += 1
    return M, names
