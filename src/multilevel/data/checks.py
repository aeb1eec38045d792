"""Checks of the model matrices before a fit: finite values of a safe magnitude, aliased
columns dropped (lme4's rank check), fixed factors of a size that fits in memory, and
designs whose fixed and random effects fit every observation exactly."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from ..errors import DataError


def _column_ranges(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p,) column minima and maxima of ``M`` (n, p): NaN where a column has a NaN.
    Reductions, so the checks below make no n x p temporaries."""
    return M.min(axis=0, initial=np.inf), M.max(axis=0, initial=-np.inf)


def check_finite(M: np.ndarray, names: list[str], what: str, rows: pd.Index) -> None:
    """Name the first column of ``M`` with NaN or infinite values, with counts."""
    if M.shape[0] == 0:
        return
    lo, hi = _column_ranges(M)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.all():
        return
    j = int(np.argmax(~ok))
    col = M[:, j]
    nan, inf = int(np.isnan(col).sum()), int(np.isinf(col).sum())
    parts = []
    if inf:
        parts.append(f"{inf} infinite value{'s' if inf > 1 else ''}")
    if nan:
        parts.append(
            f"{nan} NaN value{'s' if nan > 1 else ''} after evaluation (e.g. the log or square "
            "root of a negative number)"
        )
    row = rows[int(np.argmax(~np.isfinite(col)))]
    row = row.item() if isinstance(row, np.generic) else row
    raise DataError(f"{what} '{names[j]}' has {' and '.join(parts)}, the first in row {row!r}")


#: Values of this magnitude or more are refused: their squares, summed over the rows, would
#: overflow double precision (about 1.8e308) in the cross-products.
MAX_MAGNITUDE = 1e150


def check_magnitude(M: np.ndarray, names: list[str], what: str, rows: pd.Index) -> None:
    """Name the first column of ``M`` with a value too large to square: without this a
    predictor at 1e160 overflowed to a column 'dropped as rank deficient' and a response at
    1e160 to an internal error. (Runs after :func:`check_finite`.)"""
    if M.shape[0] == 0:
        return
    lo, hi = _column_ranges(M)
    big = np.maximum(-lo, hi) >= MAX_MAGNITUDE
    if not big.any():
        return
    j = int(np.argmax(big))
    i = int(np.argmax(np.abs(M[:, j]) >= MAX_MAGNITUDE))
    row = rows[i].item() if isinstance(rows[i], np.generic) else rows[i]
    raise DataError(
        f"{what} '{names[j]}' has a value too large for double precision arithmetic "
        f"({M[i, j]:.3g} in row {row!r}; squares of values beyond {MAX_MAGNITUDE:.0e} "
        "overflow): rescale it"
    )


#: Largest [X Z] (entries) that :func:`check_exact_fit` factors densely.
EXACT_FIT_CHECK_SIZE = 4_000_000


def check_exact_fit(X: np.ndarray, reterms, n: int) -> None:
    """Refuse a model whose fixed and random effects together can fit every observation
    exactly: rank [X Z] = n. Then the ML deviance falls without bound as the variances grow
    (σ → 0) and the REML criterion does not depend on them, so there is no estimate, only
    whatever point an optimiser stops at. lme4 checks each term alone (nobs vs. nRE, as we
    do above) and rank(Z) only on request. The rank can reach n only when the columns
    number n or more; then [X Z] is factored densely when it is small enough (larger
    designs with so many random effects are left unchecked)."""
    p = X.shape[1]
    q = sum(rt.nlevels * rt.k for rt in reterms)
    if p + q < n or n * (p + q) > EXACT_FIT_CHECK_SIZE:
        return
    M = np.zeros((n, p + q))
    M[:, :p] = X
    o = p
    rows = np.arange(n)
    for rt in reterms:
        for a in range(rt.k):
            M[rows, o + rt.codes * rt.k + a] = rt.Z[:, a]
        o += rt.nlevels * rt.k
    norms = np.linalg.norm(M, axis=0)
    M = M[:, norms > 0] / norms[norms > 0]
    rank = int(np.linalg.matrix_rank(M))
    if rank >= n:
        terms = ", ".join(str(rt.term) for rt in reterms)
        raise DataError(
            f"the fixed effects ({p} column{'s' if p != 1 else ''}) and the random effects "
            f"{terms} ({q}) together fit all {n} observations exactly (rank {rank}); the "
            "random-effects parameters and the residual variance are unidentifiable: use "
            "fewer terms or more data"
        )


#: largest fixed-effects matrix (bytes) that one factor's indicator columns may make
MAX_FIXED_BYTES = 2 * 1024**3
#: a factor with more levels than this among the fixed effects gets a warning
MANY_LEVELS = 1000


def check_fixed_factors(sub: pd.DataFrame, names: set[str], fixed: str, n: int) -> None:
    """A factor with very many levels among the fixed effects (an id column, say) makes one
    dense column per level: refuse it before building X when those columns alone would
    exceed :data:`MAX_FIXED_BYTES` (it would end in a MemoryError), and warn when it has
    more than :data:`MANY_LEVELS` levels (the fit's time grows with the square of the number
    of columns). Either way a random effect is the likely intent."""
    for name in sorted(names):
        col = sub[name]
        in_c = re.search(rf"\bC\(\s*`?{re.escape(name)}`?\s*[,)]", fixed)
        if pd.api.types.is_numeric_dtype(col) and not in_c:
            continue
        levels = int(col.nunique())
        size = n * max(levels - 1, 0) * 8
        hint = f"did you mean a random effect '(1 | {name})'?"
        if size > MAX_FIXED_BYTES:
            raise DataError(
                f"the factor '{name}' has {levels:,} levels: as a fixed effect it makes "
                f"{levels - 1:,} columns of {n:,} rows ({size / 1e9:.1f} GB); {hint}"
            )
        if levels > MANY_LEVELS:
            warnings.warn(
                f"the factor '{name}' has {levels:,} levels: as a fixed effect it makes "
                f"{levels - 1:,} columns, and the fit's time grows with the square of the "
                f"number of columns; {hint}",
                stacklevel=4,
            )


def _r_factor(X: np.ndarray, chunk: int = 1 << 17) -> np.ndarray:
    """R of X = QR (Householder), from the rows in chunks: R = qr([R_prev; X_chunk])."""
    R = np.zeros((0, X.shape[1]))
    for s in range(0, X.shape[0], chunk):
        R = np.linalg.qr(np.vstack([R, X[s : s + chunk]]), mode="r")[: X.shape[1]]
    return R


def drop_aliased(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop columns of X that are linear combinations of earlier ones, keeping the earlier
    ones (lme4's rank check, LINPACK's limited pivoting: a column is aliased when what is
    left of it after projecting out the kept columns before it is below 1e-7 of its norm)."""
    n, p = X.shape
    if p == 0:
        return X, names, []
    # X = QR with orthonormal Q: norms and projections of the columns of R are those of X,
    # so the check runs on the p x p factor, built chunk by chunk (no n x p temporaries)
    R = _r_factor(X)
    Q = np.empty((R.shape[0], 0))
    keep: list[int] = []
    for j in range(p):
        v = R[:, j]
        norm = np.linalg.norm(v)
        r = v - Q @ (Q.T @ v)
        r = r - Q @ (Q.T @ r)  # twice is enough (Kahan-Parlett)
        rn = np.linalg.norm(r)
        if norm == 0 or rn <= 1e-7 * norm:
            continue
        keep.append(j)
        Q = np.column_stack([Q, r / rn])
    if len(keep) == p:
        return X, names, []
    if not keep:
        raise DataError("the fixed-effects matrix is all zeros")
    dropped = [names[j] for j in range(p) if j not in set(keep)]
    warnings.warn(
        f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
        f"column{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
        stacklevel=3,
    )
    return np.asfortranarray(X[:, keep]), [names[j] for j in keep], dropped


def unquoted(response: str) -> str:
    """The response as written, without surrounding space and backquotes."""
    name = response.strip()
    return name[1:-1] if len(name) > 1 and name[0] == name[-1] == "`" else name


def check_response_not_predictor(response: str, names: list[str], where: str) -> None:
    """``y ~ y + ...``: the response among its own predictors fits every row exactly."""
    name = unquoted(response)
    if name in names:
        raise DataError(
            f"the response '{name}' also appears among the {where}; a model cannot predict "
            "a variable from itself: remove it from the right-hand side"
        )
