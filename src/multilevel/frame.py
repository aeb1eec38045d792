"""The model frame: from a formula and a data table to y, X and one :class:`ReTerm` per block.

Rows with a missing value in any column the model uses are dropped and counted.
Shapes: ``y`` (n,), ``X`` (n, p), each ``ReTerm.Z`` (n, k) with ``ReTerm.codes`` (n,) in
``range(nlevels)``. Terms are ordered by decreasing number of levels, as lme4 orders them.
"""

from __future__ import annotations

import difflib
import numbers
import re
import warnings
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from .errors import DataError, FormulaError
from .formula import (
    ALLOWED_FUNCTIONS,
    CONTRAST_NAMES,
    EXTRA_FUNCTIONS,
    ModelFormula,
    RandomTerm,
    formulaic_formula,
    parse_factors,
    parse_formula,
    value_names,
)

INTERCEPT = "(Intercept)"


@dataclass
class ReTerm:
    """One random-effects block: ``Z`` (n, k) varying over the levels of a grouping factor.

    ``correlated`` False means Λ for this block is diagonal (from ``||``).
    """

    term: RandomTerm
    levels: pd.Index
    codes: np.ndarray
    Z: np.ndarray
    names: list[str]
    spec: object = None  # formulaic ModelSpec of Z, to rebuild it for new data

    @property
    def group(self) -> str:
        return self.term.group

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def k(self) -> int:
        return self.Z.shape[1]

    @property
    def correlated(self) -> bool:
        return self.term.correlated and self.k > 1


@dataclass
class ModelFrame:
    """The numbers a fit needs, after missing values are dropped."""

    formula: ModelFormula
    y: np.ndarray
    X: np.ndarray
    xnames: list[str]
    reterms: list[ReTerm]
    n_dropped: int
    dropped_columns: list[str] = field(default_factory=list)
    fixed_spec: object = None  # formulaic ModelSpec for new data
    response_name: str = ""
    data: pd.DataFrame | None = None  # the rows and columns used, for saving a fit

    @property
    def n(self) -> int:
        return len(self.y)


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
                f"cannot make a table of the dict of columns ({_first_line(e)}); "
                f"column lengths: {detail}"
            ) from None
    try:
        import narwhals as nw

        return nw.from_native(data, eager_only=True).to_pandas()
    except TypeError:
        raise DataError(
            f"data must be a table (pandas, polars or pyarrow), not {type(data).__name__}"
        ) from None


@cache
def eval_context() -> dict:
    """The names formulaic may use besides the data and its own transforms: the allowed
    functions it lacks. Passed explicitly so that nothing else leaks into evaluation."""
    return {name: getattr(np, fn) for name, fn in EXTRA_FUNCTIONS.items()}


class BoundSpec:
    """A formulaic ModelSpec that evaluates with :func:`eval_context` (e.g. for ``predict``)."""

    def __init__(self, spec):
        self.spec = spec

    def get_model_matrix(self, data, context=None, **kwargs):
        ctx = {**eval_context(), **(context or {})}
        return self.spec.get_model_matrix(data, context=ctx, **kwargs)

    def __getattr__(self, name):
        if name == "spec":
            raise AttributeError(name)
        return getattr(self.spec, name)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _explain(message: str, expr: str, sub: pd.DataFrame) -> str:
    """formulaic's message, with the levels a contrast's reference level must be one of
    when that is what went wrong (formulaic names the value, not the column)."""
    if "is not among the provided levels" not in message:
        return message
    shown = []
    for name in dict.fromkeys(re.findall(r"\bC\(\s*`?([^,`)]+?)`?\s*,", expr)):
        if name in sub.columns:
            levels = sorted(map(_label, sub[name].dropna().unique()))
            more = f", ... ({len(levels)} levels)" if len(levels) > 20 else ""
            shown.append(f"'{name}' has levels " + ", ".join(map(repr, levels[:20])) + more)
    return message + (f" ({'; '.join(shown)})" if shown else "")


def _names_used(factors) -> set[str]:
    """Column names the (already checked) factors read."""
    from formulaic.parser.types.factor import Factor

    used: set[str] = set()
    for f in factors:
        if f.eval_method == Factor.EvalMethod.LOOKUP:
            used.add(f.expr)
        elif f.eval_method == Factor.EvalMethod.PYTHON:
            used |= value_names(f.expr)
    return used


def _check_columns(names: set[str], df: pd.DataFrame, formula: str) -> None:
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
            f"'{formula}'; the data has columns: {shown}"
        )
    dup = set(df.columns[df.columns.duplicated()])
    bad = sorted(d for d in dup if d in names)
    if bad:
        n = int((df.columns == bad[0]).sum())
        raise DataError(f"column '{bad[0]}' appears {n} times in the data; rename the copies")


def build_frame(formula: str, data) -> ModelFrame:
    """Parse ``formula``, check it against ``data`` and build y, X and the random-effects terms."""
    from formulaic import model_matrix

    mf = parse_formula(formula)  # checks every expression; nothing is evaluated before this
    df = to_pandas(data)
    if df.shape[1] == 0:
        raise DataError("the data has no columns")
    if df.shape[0] == 0:
        raise DataError(f"the data has no rows (columns: {', '.join(map(str, df.columns))})")
    if not all(isinstance(c, str) for c in df.columns):
        df = df.set_axis([str(c) for c in df.columns], axis=1)  # a new frame: never the caller's
    response_factors = parse_factors(mf.response + " ~ 1", mf.text)
    response_used = _names_used(response_factors)
    fixed_used = _names_used(parse_factors(mf.fixed_formula, mf.text))
    used = set(fixed_used)
    for rt in mf.random:
        used |= _names_used(parse_factors(rt.expr, mf.text))
    predictors = used - response_used
    for rt in mf.random:
        used |= set(rt.factors)
    _check_columns(used, df, mf.text)
    columns = [c for c in df.columns if c in used]
    sub = _check_values(df[columns])
    for name in sorted(predictors):
        _check_numbers_as_text(sub[name], name)
    for name in sorted(response_used):
        col = sub[name]
        if col.dtype == bool:
            sub[name] = col = col.astype(float)
        if not pd.api.types.is_numeric_dtype(col):
            _check_numbers_as_text(col, name, response=True)
            values = col.dropna()
            text = values[pd.to_numeric(values.astype(str), errors="coerce").isna()]
            example = (text if len(text) else values).iloc[0] if len(values) else None
            raise DataError(
                f"the response '{mf.response}' must be numeric, but the column '{name}' has "
                f"type {col.dtype} (e.g. {example!r})"
                + ("; convert it with pandas.to_numeric" if _looks_numeric(col) else "")
            )
    keep = sub.notna().all(axis=1).to_numpy()
    n_dropped = int((~keep).sum())
    if not keep.any():
        counts = ", ".join(f"'{c}' {int(sub[c].isna().sum())}" for c in columns)
        raise DataError(
            f"no rows left: all {len(sub)} rows have a missing value in at least one of the "
            f"columns the model uses (missing values per column: {counts})"
        )
    rows = sub.index[keep]  # the caller's row labels, for messages
    if n_dropped:
        sub = sub.loc[keep].reset_index(drop=True)
    n = len(sub)

    _check_fixed_factors(sub, fixed_used - response_used, mf.fixed, n)
    column = _response_column(mf.response, sub)
    try:
        # a plain numeric response is read from its column (a view, no copy); formulaic
        # evaluates only the predictors then
        spec = mf.fixed if column is not None else mf.fixed_formula
        mm = model_matrix(formulaic_formula(spec), sub, context=eval_context(), na_action="ignore")
    except Exception as e:  # noqa: BLE001
        raise FormulaError(
            f"cannot build the fixed-effects matrix of '{mf.fixed_formula}': "
            + _explain(_first_line(e), mf.fixed, sub),
            mf.text,
        ) from None
    if column is not None:
        y, rhs = np.asarray(sub[column], dtype=float), mm
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
    xnames = [INTERCEPT if c == "Intercept" else str(c) for c in rhs.columns]
    fixed_spec = BoundSpec(rhs.model_spec)
    del rhs  # formulaic's copy of the columns: freed before the random-effects terms
    _check_finite(y[:, None], [mf.response], "the response", rows)
    _check_finite(X, xnames, "the fixed-effects column", rows)
    _check_magnitude(y[:, None], [mf.response], "the response", rows)
    _check_magnitude(X, xnames, "the fixed-effects column", rows)
    if n > 1 and np.ptp(y) == 0:
        raise DataError(
            f"the response '{mf.response}' has the same value ({y[0]:g}) in all {n} rows; "
            "there is no variation to model"
        )
    X, xnames, dropped = _drop_aliased(X, xnames)
    if X.shape[1] >= n:
        raise DataError(
            f"the fixed effects have {X.shape[1]} column{'s' if X.shape[1] > 1 else ''} but "
            f"there {'are only' if n > 1 else 'is only'} {n} observation{'s' if n > 1 else ''}; "
            "they need fewer columns than observations"
        )
    _check_response_not_predictor(mf.response, xnames, "fixed effects")
    reterms = [_reterm(rt, sub, mf, rows, X, xnames) for rt in mf.random]
    reterms.sort(key=lambda t: -t.nlevels)  # stable: ties keep formula order
    for rt in reterms:
        if rt.nlevels < 2:
            only = f" (only '{rt.levels[0]}')" if rt.nlevels == 1 else ""
            raise DataError(
                f"the grouping factor '{rt.group}' of the term {rt.term} has {rt.nlevels} "
                f"level{only}; a random effect needs at least 2 groups"
            )
        if rt.nlevels * rt.k >= n:
            raise DataError(
                f"the term {rt.term} has {rt.nlevels * rt.k} random effects "
                f"({rt.nlevels} levels x {rt.k}), not fewer than the {n} observations; "
                "the random-effects parameters and the residual variance are unidentifiable"
            )
    _check_exact_fit(X, reterms, n)
    return ModelFrame(
        formula=mf,
        y=y,
        X=X,
        xnames=xnames,
        reterms=reterms,
        n_dropped=n_dropped,
        dropped_columns=dropped,
        fixed_spec=fixed_spec,
        response_name=mf.response,
        data=sub,
    )


#: Largest [X Z] (entries) that :func:`_check_exact_fit` factors densely.
EXACT_FIT_CHECK_SIZE = 4_000_000


def _check_exact_fit(X: np.ndarray, reterms: list[ReTerm], n: int) -> None:
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


def _check_fixed_factors(sub: pd.DataFrame, names: set[str], fixed: str, n: int) -> None:
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


def _looks_numeric(col: pd.Series) -> bool:
    values = col.dropna().head(100)
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().all()


def _column_ranges(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p,) column minima and maxima of ``M`` (n, p): NaN where a column has a NaN.
    Reductions, so the checks below make no n x p temporaries."""
    return M.min(axis=0, initial=np.inf), M.max(axis=0, initial=-np.inf)


def _check_finite(M: np.ndarray, names: list[str], what: str, rows: pd.Index) -> None:
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


def _check_magnitude(M: np.ndarray, names: list[str], what: str, rows: pd.Index) -> None:
    """Name the first column of ``M`` with a value too large to square: without this a
    predictor at 1e160 overflowed to a column 'dropped as rank deficient' and a response at
    1e160 to an internal error. (Runs after :func:`_check_finite`.)"""
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


def _kind(v) -> str:
    if isinstance(v, bool | np.bool_):
        return "bool"
    if isinstance(v, numbers.Real):
        return "number"
    return type(v).__name__


def _check_values(sub: pd.DataFrame) -> pd.DataFrame:
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


def _check_numbers_as_text(col: pd.Series, name: str, response: bool = False) -> None:
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


def _r_factor(X: np.ndarray, chunk: int = 1 << 17) -> np.ndarray:
    """R of X = QR (Householder), from the rows in chunks: R = qr([R_prev; X_chunk])."""
    import scipy.linalg

    R = np.zeros((0, X.shape[1]))
    for s in range(0, X.shape[0], chunk):
        R = scipy.linalg.qr(np.vstack([R, X[s : s + chunk]]), mode="r")[0]
        R = R[: X.shape[1]]
    return R


def _drop_aliased(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
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


def _label(value) -> str:
    """A level's label: ``str``, but ``"3"`` for the float 3.0 (a column of integers read
    with missing values is float), so that labels match whatever the dtype."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _group_codes(sub: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of the (interaction of the) grouping columns; levels sorted, labels
    joined with ':' as lme4 does."""
    if len(factors) == 1:
        codes, uniques = pd.factorize(sub[factors[0]], sort=True)
        return codes.astype(np.intp, copy=False), pd.Index(
            [_label(u) for u in uniques], dtype=object
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
            pieces.append(_label(uniques[rem % len(uniques)]))
            rem //= len(uniques)
        labels.append(":".join(reversed(pieces)))
    return codes.astype(np.intp, copy=False), pd.Index(labels, dtype=object)


def _unquoted(response: str) -> str:
    """The response as written, without surrounding space and backquotes."""
    name = response.strip()
    return name[1:-1] if len(name) > 1 and name[0] == name[-1] == "`" else name


def _response_column(response: str, sub: pd.DataFrame) -> str | None:
    """The column a response that is a plain numeric column name reads, else None."""
    name = _unquoted(response)
    if name not in sub.columns or not pd.api.types.is_numeric_dtype(sub[name]):
        return None
    return name


def _check_response_not_predictor(response: str, names: list[str], where: str) -> None:
    """``y ~ y + ...``: the response among its own predictors fits every row exactly."""
    name = _unquoted(response)
    if name in names:
        raise DataError(
            f"the response '{name}' also appears among the {where}; a model cannot predict "
            "a variable from itself: remove it from the right-hand side"
        )


def _shared_columns(Zdf, X: np.ndarray, xnames: list[str]) -> np.ndarray | None:
    """``X[:, j:j+k]`` (a view) when the k columns of formulaic's ``Zdf`` are, by name and
    value, the consecutive columns j..j+k-1 of X: ``(1 + x | g)`` beside ``y ~ x`` then
    costs no copy of x or of the column of ones."""
    names = [INTERCEPT if c == "Intercept" else str(c) for c in Zdf.columns]
    if not names or names[0] not in xnames:
        return None
    j = xnames.index(names[0])
    if xnames[j : j + len(names)] != names:
        return None
    for a in range(len(names)):
        if not np.array_equal(np.asarray(Zdf.iloc[:, a], dtype=float), X[:, j + a]):
            return None
    return X[:, j : j + len(names)]


def _reterm(
    rt: RandomTerm,
    sub: pd.DataFrame,
    mf: ModelFormula,
    rows: pd.Index,
    X: np.ndarray,
    xnames: list[str],
) -> ReTerm:
    """One random-effects term: Z from formulaic (a view of X where the columns are X's,
    see :func:`_shared_columns`) and the integer codes of its grouping factor."""
    from formulaic import model_matrix

    try:
        Z = model_matrix(
            formulaic_formula(rt.expr), sub, context=eval_context(), na_action="ignore"
        )
    except Exception as e:  # noqa: BLE001
        raise FormulaError(
            f"cannot build the random-effects matrix of the term {rt}: {_first_line(e)}", mf.text
        ) from None
    names = [INTERCEPT if c == "Intercept" else str(c) for c in Z.columns]
    if Z.shape[1] == 0:
        raise FormulaError(f"the random-effects term {rt} has no columns", mf.text)
    spec = BoundSpec(Z.model_spec)
    Zm = _shared_columns(Z, X, xnames)
    if Zm is None:
        Zm = np.asfortranarray(np.asarray(Z, dtype=float))
        _check_finite(Zm, names, f"in the random-effects term {rt}, the column", rows)
        _check_magnitude(Zm, names, f"in the random-effects term {rt}, the column", rows)
        _check_response_not_predictor(mf.response, names, f"random effects of {rt}")
    del Z
    codes, levels = _group_codes(sub, rt.factors)
    return ReTerm(term=rt, levels=levels, codes=codes, Z=Zm, names=names, spec=spec)
