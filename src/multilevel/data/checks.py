"""Checks of the model matrices before a fit: finite values of a safe magnitude, aliased
columns dropped (lme4's rank check), fixed factors of a size that fits in memory, and
designs whose fixed and random effects fit every observation exactly."""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pandas as pd

from ..errors import DataError, FormulaError
from ..spec import offset_formula
from ..spec.parsing import term_shapes


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


#: The memory budget of one model matrix (bytes): the fixed effects' X, each random-effects
#: term's Z, an offset or a response, and of each term's columns in them. Every matrix is
#: sized before it is built (:func:`check_design_size`) and refused beyond the budget. Set it
#: here or with the environment variable ``MULTILEVEL_MAX_MATRIX_BYTES`` (which wins; for
#: the command line and services).
MAX_MATRIX_BYTES = 2 * 1024**3
#: largest fixed-effects matrix (bytes) that one factor's indicator columns may make (also
#: bounded by :func:`matrix_budget`)
MAX_FIXED_BYTES = MAX_MATRIX_BYTES
_BUDGET_VARIABLE = "MULTILEVEL_MAX_MATRIX_BYTES"


def matrix_budget() -> int:
    """The memory budget of a model matrix in bytes: ``MULTILEVEL_MAX_MATRIX_BYTES`` when
    set, else :data:`MAX_MATRIX_BYTES`."""
    text = os.environ.get(_BUDGET_VARIABLE, "").strip()
    if not text:
        return int(MAX_MATRIX_BYTES)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value >= 1):
        raise DataError(
            f"the environment variable {_BUDGET_VARIABLE} must be a number of bytes (e.g. "
            f"2e9), not {text!r}"
        )
    return int(value)


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
        if size > min(MAX_FIXED_BYTES, matrix_budget()):
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


# -- the size of every model matrix, before it is built -----------------------------------


def _gb(size: float) -> str:
    if size >= 1e8:
        return f"{size / 1e9:.1f} GB"
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def _is_categorical(col) -> bool:
    """Whether formulaic codes ``col`` with one column per level (text, object, category)."""
    if not isinstance(col, pd.Series):
        return False
    dtype = col.dtype
    return isinstance(dtype, pd.CategoricalDtype) or not (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
    )


class _Counter:
    """Levels and distinct values of the data's columns, each counted once."""

    def __init__(self, sub: pd.DataFrame):
        self.sub = sub
        self.n = len(sub)
        self._distinct: dict[tuple[str, ...], int] = {}

    def has(self, name: str) -> bool:
        return name in self.sub.columns

    def categorical(self, name: str) -> bool:
        return self.has(name) and _is_categorical(self.sub[name])

    def distinct(self, names) -> int:
        """Distinct rows of the columns ``names``: at least the distinct values of anything
        computed from them (1 for none)."""
        key = tuple(sorted(c for c in names if self.has(c)))
        if not key:
            return 1
        if key not in self._distinct:
            if len(key) == 1:
                count = self.sub[key[0]].nunique(dropna=False)
            else:
                count = len(self.sub[list(key)].drop_duplicates())
            self._distinct[key] = int(count)
        return self._distinct[key]


def _check_basis(basis, counter: _Counter) -> None:
    """``poly(x, d)`` needs d < the distinct values of x (R's rule; formulaic's polynomials
    are then NaN), ``bs(x, df=k)`` k < them (the spline is not identified)."""
    d = counter.distinct(basis.reads)
    size = basis.degree if basis.function == "poly" else basis.width
    if size < d:
        return
    reads = sorted(basis.reads)
    if len(reads) == 1:
        what = f"'{reads[0]}' has only {d:,} distinct value{'s' if d != 1 else ''}"
    elif reads:
        what = f"the columns {', '.join(map(repr, reads))} have only {d:,} distinct rows"
    else:
        what = "its argument is a constant"
    most = f"at most {d - 1:,} here" if d > 1 else "there is nothing to expand"
    if basis.function == "poly":
        asks = f"a polynomial of degree {size:,}"
        rule = "the degree must be less than the number of distinct values"
    else:
        asks = f"a spline of {size:,} degrees of freedom"
        rule = "a spline needs fewer degrees of freedom than distinct values"
    raise DataError(f"the term '{basis.text}' asks for {asks}, but {what}: {rule} ({most})")


#: how a count is known: exactly, as the fewest columns formulaic can make, or the most
EXACT, AT_LEAST, UP_TO = "", "at least ", "up to "


def _factor_columns(shape, counter: _Counter) -> tuple[int, str, str | None]:
    """(columns, how it is known (:data:`EXACT`, :data:`AT_LEAST`, :data:`UP_TO`), a note on
    the count) of one factor: exact for numeric columns and bases; a factor of L levels
    makes L - 1 or L; an expression that may be categorical at most its inputs' distinct
    values."""
    for basis in shape.bases:
        _check_basis(basis, counter)
    if shape.bases:
        return max(b.width for b in shape.bases), EXACT, None
    if shape.kind in ("column", "contrast") and shape.column is not None:
        name = shape.column
        if shape.kind == "contrast" or counter.categorical(name):
            levels = counter.distinct([name])
            return max(levels - 1, 0), AT_LEAST, f"'{name}' has {levels:,} levels"
        return 1, EXACT, None
    if shape.kind == "contrast" or (
        shape.kind == "python" and any(counter.categorical(c) for c in shape.reads)
    ):
        return counter.distinct(shape.reads), UP_TO, None
    return 1, EXACT, None


def _sized_terms(rhs: str, counter: _Counter) -> list[tuple[str, int, str, str]]:
    """(term, columns, how it is known, note) of each term of ``rhs``; none when formulaic
    cannot parse it (building the matrix then says why)."""
    try:
        parsed = term_shapes(rhs)
    except FormulaError:
        raise
    except Exception:  # noqa: BLE001 - formulaic raises several types
        return []
    out = []
    for term, shapes in parsed:
        columns, known, notes = 1, EXACT, []
        for shape in shapes:
            c, how, note = _factor_columns(shape, counter)
            columns = columns * c
            known = UP_TO if UP_TO in (known, how) else known or how
            if note:
                notes.append(note)
        out.append((term, columns, known, f" ({', '.join(notes)})" if notes else ""))
    return out


def _check_budget(what: str, columns: int, known: str, note: str, n: int, budget: int) -> None:
    size = 8 * n * columns
    if size > budget:
        raise DataError(
            f"{what} would make {known}{columns:,} columns of {n:,} rows ({_gb(size)}){note}, "
            f"more than the memory budget of {_gb(budget)} for a model matrix: use fewer "
            f"levels or terms (a grouping factor as a random effect), or raise the budget "
            f"({_BUDGET_VARIABLE})"
        )


def _check_part(rhs: str, what: str, counter: _Counter, budget: int):
    """Size the model matrix of one part against the budget; returns (the columns it makes
    at least, how that is known, the terms)."""
    terms = _sized_terms(rhs, counter)
    for term, columns, known, note in terms:
        _check_budget(f"the term '{term}' of {what}", columns, known, note, counter.n, budget)
    total = sum(t[1] for t in terms)
    known = UP_TO if any(t[2] == UP_TO for t in terms) else ""
    known = known or (AT_LEAST if any(t[2] == AT_LEAST for t in terms) else EXACT)
    _check_budget(what, total, known, "", counter.n, budget)
    certain = [t for t in terms if t[2] != UP_TO]
    least = EXACT if all(t[2] == EXACT for t in certain) else AT_LEAST
    return sum(t[1] for t in certain), least, certain


def check_design_size(
    mf, sub: pd.DataFrame, response_is_built: bool = False, linear: bool = True
) -> None:
    """Know the size of every model matrix before any is built, from the parsed formula and
    the data: refuse, naming the term, its size and the limit, a polynomial or spline of at
    least as many columns as its argument has distinct values, fixed effects of more columns
    than observations, a random-effects term of as many random effects as observations, and
    any matrix or term beyond the memory budget (:func:`matrix_budget`). Counts are exact for
    numeric columns, ``poly()``, ``bs()``; a factor of L levels counts L - 1, so an
    interaction the product; an expression that may be categorical counts its inputs'
    distinct values against the budget only. ``response_is_built``: the response is an
    expression formulaic builds (then sized too); ``linear``: a linear model, whose random
    effects must be fewer than the observations (a GLMM's need not: σ is not estimated)."""
    counter = _Counter(sub)
    n, budget = counter.n, matrix_budget()
    if response_is_built:  # by formulaic, as an expression
        _check_part(f"{mf.response} ~ 0", f"the response '{mf.response}'", counter, budget)
    p, known, terms = _check_part(mf.fixed, "the fixed effects", counter, budget)
    if p > n:
        term, columns, how, note = max(terms, key=lambda t: t[1])
        raise DataError(
            f"the fixed effects would have {known}{p:,} columns (the term '{term}' alone "
            f"{how}{columns:,}{note}) but there {'are only' if n > 1 else 'is only'} {n:,} "
            f"observation{'s' if n > 1 else ''}; they need fewer columns than observations: "
            "use fewer terms, levels or interactions"
        )
    for rt in mf.random:
        k, known, terms = _check_part(rt.expr, f"the random-effects term {rt}", counter, budget)
        if not linear or k < 2:  # one column is cheap: the frame checks it once built
            continue
        levels = counter.distinct(rt.factors)
        if k * levels >= n and levels > 1:  # the frame's check (lme4's), before the build
            notes = "".join(t[3] for t in terms)
            has = "has" if known == EXACT else "would have at least"
            raise DataError(
                f"the term {rt} {has} {k * levels} random effects ({levels} levels x {k}"
                f"{notes}), not fewer than the {n} observations; the random-effects "
                "parameters and the residual variance are unidentifiable"
            )
    for expr in mf.offsets:
        _check_part(offset_formula(expr), f"offset({expr})", counter, budget)
