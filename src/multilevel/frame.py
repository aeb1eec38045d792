"""The model frame: from a formula and a data table to y, X and one :class:`ReTerm` per block.

Rows with a missing value in any column the model uses are dropped and counted.
Shapes: ``y`` (n,), ``X`` (n, p), each ``ReTerm.Z`` (n, k) with ``ReTerm.codes`` (n,) in
``range(nlevels)``. Terms are ordered by decreasing number of levels, as lme4 orders them.
"""

from __future__ import annotations

import ast
import difflib
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import DataError, FormulaError
from .formula import (
    ALLOWED_FUNCTIONS,
    ModelFormula,
    RandomTerm,
    check_expression,
    parse_formula,
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

    @property
    def n(self) -> int:
        return len(self.y)


def to_pandas(data) -> pd.DataFrame:
    """Accept pandas, polars, pyarrow (through narwhals) or a dict of columns."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        return pd.DataFrame(data)
    try:
        import narwhals as nw

        return nw.from_native(data, eager_only=True).to_pandas()
    except TypeError:
        raise DataError(
            f"data must be a table (pandas, polars or pyarrow), not {type(data).__name__}"
        ) from None


def _factor_exprs(rhs: str, formula: str):
    """Factors of a formulaic right-hand side (parsed, not evaluated), each checked."""
    from formulaic import Formula
    from formulaic.parser.types.factor import Factor

    try:
        parsed = Formula(rhs)
    except Exception as e:  # noqa: BLE001 - formulaic raises many types
        raise FormulaError(f"cannot parse '{rhs}': {_first_line(e)}", formula) from None
    sides = [parsed.lhs, parsed.rhs] if hasattr(parsed, "lhs") else [parsed]
    out = []
    for side in sides:
        for term in side:
            for f in term.factors:
                if f.eval_method == Factor.EvalMethod.PYTHON:
                    check_expression(f.expr, formula)
                out.append(f)
    return out


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _names_used(factors) -> set[str]:
    from formulaic.parser.types.factor import Factor

    used: set[str] = set()
    for f in factors:
        if f.eval_method == Factor.EvalMethod.LOOKUP:
            used.add(f.expr)
        elif f.eval_method == Factor.EvalMethod.PYTHON:
            tree = ast.parse(f.expr.strip(), mode="eval")
            calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and id(node) not in calls:
                    used.add(node.id)
    return used


def _check_columns(names: set[str], df: pd.DataFrame, formula: str) -> None:
    cols = set(map(str, df.columns))
    dup = df.columns[df.columns.duplicated()].tolist()
    missing = sorted(n for n in names if n not in cols and n not in ALLOWED_FUNCTIONS)
    missing = [m for m in missing if m not in {"contr", "np", "True", "False"}]
    if missing:
        hints = []
        for m in missing:
            close = difflib.get_close_matches(m, sorted(cols), n=1)
            hints.append(f"'{m}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise DataError(
            f"unknown column{'s' if len(missing) > 1 else ''} {', '.join(hints)} in formula "
            f"'{formula}'; the data has columns: {', '.join(sorted(cols))}"
        )
    bad = [d for d in dup if d in names]
    if bad:
        raise DataError(f"column '{bad[0]}' appears more than once in the data")


def build_frame(formula: str, data) -> ModelFrame:
    """Parse ``formula``, check it against ``data`` and build y, X and the random-effects terms."""
    from formulaic import model_matrix

    mf = parse_formula(formula)
    df = to_pandas(data)
    df.columns = [str(c) for c in df.columns]
    fixed_factors = _factor_exprs(mf.fixed_formula, mf.text)
    used = _names_used(fixed_factors)
    for rt in mf.random:
        used |= _names_used(_factor_exprs(rt.expr, mf.text))
        used |= set(rt.factors)
    _check_columns(used, df, mf.text)
    columns = [c for c in df.columns if c in used]
    sub = df[columns]
    _check_values(sub, mf)
    keep = sub.notna().all(axis=1).to_numpy()
    n_dropped = int((~keep).sum())
    if not keep.any():
        raise DataError(
            f"no rows left: all {len(sub)} rows have a missing value in at least one of "
            f"the columns {', '.join(columns)}"
        )
    if n_dropped:
        sub = sub.loc[keep].reset_index(drop=True)
    n = len(sub)

    response = mf.response
    if response in sub.columns:
        col = sub[response]
        if col.dtype == bool:
            col = col.astype(float)
        if not pd.api.types.is_numeric_dtype(col):
            raise DataError(
                f"the response '{response}' must be numeric, but its column has type "
                f"{col.dtype} (e.g. {col.iloc[0]!r})"
            )
    try:
        mm = model_matrix(mf.fixed_formula, sub, na_action="raise")
    except FormulaError:
        raise
    except Exception as e:  # noqa: BLE001
        raise FormulaError(
            f"cannot build the fixed-effects matrix of '{mf.fixed_formula}': {_first_line(e)}",
            mf.text,
        ) from None
    ymat = np.asarray(mm.lhs, dtype=float)
    if ymat.ndim != 2 or ymat.shape[1] != 1:
        raise DataError(f"the response '{response}' must be one numeric column")
    y = np.ascontiguousarray(ymat[:, 0])
    X = np.asarray(mm.rhs, dtype=float)
    xnames = [INTERCEPT if c == "Intercept" else str(c) for c in mm.rhs.columns]
    if not np.isfinite(y).all():
        raise DataError(
            f"the response '{response}' has {int((~np.isfinite(y)).sum())} infinite values"
        )
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        raise DataError(f"fixed-effects column '{xnames[int(np.argmax(bad))]}' has infinite values")
    if n > 1 and np.ptp(y) == 0:
        raise DataError(
            f"the response '{response}' has the same value ({y[0]:g}) in all {n} rows; "
            "there is no variation to model"
        )
    X, xnames, dropped = _drop_aliased(X, xnames)
    reterms = [_reterm(rt, sub, mf) for rt in mf.random]
    reterms.sort(key=lambda t: -t.nlevels)  # stable: ties keep formula order
    for rt in reterms:
        if rt.nlevels < 2:
            raise DataError(
                f"grouping factor '{rt.group}' has {rt.nlevels} level; a random effect needs "
                "at least 2 groups"
            )
        if rt.nlevels * rt.k >= n:
            raise DataError(
                f"the term {rt.term} has {rt.nlevels * rt.k} random effects "
                f"({rt.nlevels} levels x {rt.k}), not fewer than the {n} observations; "
                "the random-effects parameters and the residual variance are unidentifiable"
            )
    return ModelFrame(
        formula=mf,
        y=y,
        X=np.ascontiguousarray(X),
        xnames=xnames,
        reterms=reterms,
        n_dropped=n_dropped,
        dropped_columns=dropped,
        fixed_spec=mm.rhs.model_spec,
        response_name=response,
    )


def _check_values(sub: pd.DataFrame, mf: ModelFormula) -> None:
    for c in sub.columns:
        col = sub[c]
        if col.dtype == object:
            kinds = {type(v) for v in col.dropna().head(10000)}
            if len(kinds) > 1 and not kinds <= {int, float}:
                names = ", ".join(sorted(k.__name__ for k in kinds))
                raise DataError(f"column '{c}' mixes value types ({names}); convert it first")


def _drop_aliased(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop columns of X that are linear combinations of earlier ones (lme4's rank check)."""
    import scipy.linalg

    if X.shape[1] == 0:
        return X, names, []
    _, R, piv = scipy.linalg.qr(X, mode="economic", pivoting=True)
    d = np.abs(np.diag(R))
    tol = 1e-7 * d[0] if d[0] > 0 else 1e-7
    rank = int((d > tol).sum())
    if rank == X.shape[1]:
        return X, names, []
    keep = np.sort(piv[:rank])
    dropped = [names[i] for i in range(X.shape[1]) if i not in set(keep)]
    if rank == 0:
        raise DataError("the fixed-effects matrix is all zeros")
    warnings.warn(
        f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
        f"column{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
        stacklevel=3,
    )
    return X[:, keep], [names[i] for i in keep], dropped


def _group_codes(sub: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of the (interaction of the) grouping columns; levels sorted, labels
    joined with ':' as lme4 does."""
    if len(factors) == 1:
        codes, uniques = pd.factorize(sub[factors[0]], sort=True)
        return codes.astype(np.intp), pd.Index([str(u) for u in uniques], dtype=object)
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
            pieces.append(str(uniques[rem % len(uniques)]))
            rem //= len(uniques)
        labels.append(":".join(reversed(pieces)))
    return codes.astype(np.intp), pd.Index(labels, dtype=object)


def _reterm(rt: RandomTerm, sub: pd.DataFrame, mf: ModelFormula) -> ReTerm:
    from formulaic import model_matrix

    codes, levels = _group_codes(sub, rt.factors)
    try:
        Z = model_matrix(rt.expr, sub, na_action="raise")
    except Exception as e:  # noqa: BLE001
        raise FormulaError(
            f"cannot build the random-effects matrix of the term {rt}: {_first_line(e)}", mf.text
        ) from None
    names = [INTERCEPT if c == "Intercept" else str(c) for c in Z.columns]
    Zm = np.ascontiguousarray(np.asarray(Z, dtype=float))
    if Zm.shape[1] == 0:
        raise FormulaError(f"the random-effects term {rt} has no columns", mf.text)
    if not np.isfinite(Zm).all():
        raise DataError(f"the random-effects term {rt} has infinite values")
    return ReTerm(term=rt, levels=levels, codes=codes, Z=Zm, names=names, spec=Z.model_spec)
