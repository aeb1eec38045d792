"""Two-level models as users write them (Gelman & Hill 2007, chapters 12-13).

Units i (students) in groups j (schools), with level-1 predictors ``x_i`` (a row of X1, p1
columns) and level-2 predictors ``w_j`` (a row of W, q columns, the first the constant):

    level 1:  y_i  = Σ_c X1_ic β_j[i],c + ε_i,           ε_i ~ N(0, σ_y²)
    level 2:  β_jc = w_j'γ_c + η_jc    (c varying),       η_j ~ N(0, Σ)
              β_jc = γ_c0              (c not varying).

Substituting level 2 into level 1 gives the lme4 model

    y ~ X1 + W + Σ_{c varying, slope} X1_c:W + (varying | group),

so a group-level predictor enters as a main effect (for the intercept) and as an interaction
with each varying slope; a slope that does not vary gets no interaction. The seed's model,
``y_i = α_j[i] + β_j[i] x_i + ε_i`` with ``α_j = a0 + b0 u_j + η_j1`` and
``β_j = a1 + b1 u_j + η_j2``, is ``y ~ x + u + x:u + (1 + x | school)``.

:func:`fit_two_level` fits exactly that formula with :func:`multilevel.fit` and returns a
:class:`TwoLevelModel`, which presents the fit in the level-1 / level-2 form.

Uncertainty of the group coefficients. For β_jc = D_jc'β + η_jc (D_jc (p,) picks w_j into
the positions of γ_c in the fixed effects β), lme4's model with θ and σ at their estimates
gives the joint (posterior / prediction-error) covariance of (β̂, b̂) from the mixed-model
equations. With M_j = Λ'Z_j'Z_jΛ + I and G_j = M_j⁻¹Λ'Z_j'X_j (k, p):

    Var(β̂ - β)                 = V = vcov,
    Cov(b̂_j - b_j, β̂ - β)      = -H_j V,          H_j = Λ G_j  (k, p),
    Var(b̂_j - b_j)             = C_j + H_j V H_j',  C_j = σ² Λ M_j⁻¹ Λ' (lme4's condVar),

so the group coefficients β_j· (p1,) = D_j β + E b_j (E (p1, k) places the varying ones) have

    Var = (D_j - E H_j) V (D_j - E H_j)' + E C_j E'.

arm's ``se.coef`` drops the cross term (takes Cov(b̂, β̂) = 0): Var = D_j V D_j' + E C_j E';
``coef_table(covariance=False)`` gives that version.
"""

from __future__ import annotations

import ast
import math
import re
import sys
import textwrap
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import DataError, FormulaError, MultilevelError

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_CALL = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*\(.*\)$", re.S)
INTERCEPT = "(Intercept)"


# -- the specification and its translation to an lme4 formula -----------------------------


@dataclass(frozen=True)
class TwoLevelSpec:
    """A two-level model as written by the user, and the lme4 formula it amounts to.

    ``terms`` are the level-1 terms (formula text, without the intercept), ``group_terms``
    the level-2 ones; ``varying`` the level-1 terms that vary by group ("1" for the
    intercept)."""

    formula: str
    response: str
    intercept: bool
    terms: tuple[str, ...]
    group: str
    group_formula: str | None
    group_terms: tuple[str, ...]
    varying: tuple[str, ...]
    lme4_formula: str
    translation: tuple[str, ...] = field(default=())

    @property
    def varying_intercept(self) -> bool:
        return "1" in self.varying


def _quote(name: str) -> str:
    """A column name as formula text (backticks when it is not a plain name)."""
    return name if _NAME.match(name) else f"`{name}`"


def _factor_text(factor) -> str:
    from formulaic.parser.types.factor import Factor

    if factor.eval_method == Factor.EvalMethod.PYTHON:
        return factor.expr if _CALL.match(factor.expr) else "{" + factor.expr + "}"
    if factor.eval_method == Factor.EvalMethod.LOOKUP:
        return _quote(factor.expr)
    return factor.expr


def _terms(rhs: str, formula: str, what: str) -> tuple[bool, list[str]]:
    """(has intercept, non-intercept terms as formula text) of a right-hand side, parsed by
    formulaic (never evaluated)."""
    from formulaic import Formula

    try:
        parsed = Formula(rhs)
    except Exception as e:  # noqa: BLE001 - formulaic raises several types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FormulaError(f"cannot parse the {what} '{rhs.strip()}': {first}", formula) from None
    intercept, out = False, []
    for term in parsed:
        text = ":".join(_factor_text(f) for f in term.factors)
        if text == "1":
            intercept = True
        elif text != "0":
            out.append(text)
    return intercept, out


def _rhs_of_group_formula(group_formula: str) -> str:
    text = group_formula.strip()
    if "|" in text:
        raise FormulaError(
            "the group-level formula cannot contain '|': it lists group-level predictors, "
            "e.g. '~ u + sector'",
            group_formula,
            group_formula.find("|"),
        )
    if "~" in text:
        lhs, _, rhs = text.partition("~")
        if lhs.strip():
            raise FormulaError(
                "the group-level formula is one-sided: write '~ u', not 'y ~ u' (the "
                "outcome of each group-level regression is a varying coefficient)",
                group_formula,
                0,
            )
        text = rhs
    if not text.strip():
        raise FormulaError("the group-level formula is empty; write e.g. '~ u'", group_formula)
    return text


def _varying_terms(varying, intercept: bool, terms: list[str], formula: str) -> list[str]:
    """The varying level-1 terms, "1" for the intercept. A string follows lme4's left of '|'
    (``"x"`` means ``"1 + x"``; ``"0 + x"`` the slope alone); a list names terms exactly."""
    if varying is None:
        return (["1"] if intercept else []) + list(terms)
    if isinstance(varying, str):
        v_int, v_terms = _terms(varying, varying, "list of varying coefficients")
    else:
        v_int, v_terms = False, []
        for item in varying:
            item = str(item).strip()
            if item in ("1", INTERCEPT):
                v_int = True
            elif item != "0":
                v_terms.extend(_terms("0 + " + item, item, "varying coefficient")[1])
    out = []
    if v_int:
        if not intercept:
            raise FormulaError(
                "the intercept cannot vary: the individual-level formula has none", formula
            )
        out.append("1")
    for t in v_terms:
        if t not in terms:
            raise FormulaError(
                f"varying coefficient '{t}' is not a term of the individual-level formula "
                f"'{formula}' (its terms: {', '.join((['1'] if intercept else []) + terms)})",
                formula,
            )
        if t not in out:
            out.append(t)
    if not out:
        raise FormulaError("no coefficient varies by group: give at least one in varying=")
    return out


def translate(formula: str, group: str, group_formula: str | None = None, varying=None):
    """The lme4 formula of a two-level specification (see the module docstring).

    ``formula`` is the individual-level formula ("y ~ x"), ``group`` the grouping column,
    ``group_formula`` the group-level predictors ("~ u + sector", or None), ``varying`` the
    level-1 coefficients that vary by group (None: all)."""
    from .formula import parse_formula

    if not isinstance(group, str) or not group.strip():
        raise DataError("group= must be the name of the grouping column")
    mf = parse_formula(formula)
    if mf.random:
        raise FormulaError(
            f"the individual-level formula '{formula}' has a random-effects term "
            f"{mf.random[0]}; with group= the varying coefficients come from varying=",
            formula,
        )
    intercept, terms = _terms(mf.fixed, formula, "individual-level formula")
    if group_formula is not None:
        rhs = _rhs_of_group_formula(group_formula)
        parse_formula(f"{mf.response} ~ {rhs}")  # the allow-list check of every expression
        g_int, g_terms = _terms(rhs, group_formula, "group-level formula")
        if not g_int:
            raise FormulaError(
                "the group-level formula must keep its intercept (a0, a1, ...): remove "
                "'0 +' / '- 1'",
                group_formula,
            )
    else:
        g_terms = []
    both = [t for t in g_terms if t in terms]
    if both:
        raise FormulaError(
            f"'{both[0]}' is in both the individual-level and the group-level formula; "
            "list it in one of them",
            group_formula,
        )
    vary = _varying_terms(varying, intercept, terms, formula)
    slopes = [t for t in vary if t != "1"]
    fixed = ([] if intercept else ["0"]) + list(terms)
    notes = []
    if "1" in vary:
        fixed += g_terms
    for t in slopes:
        fixed += [f"{t}:{w}" for w in g_terms]
    if g_terms:
        gs = ", ".join(g_terms)
        for w in g_terms:
            parts = ["a main effect (for the intercept)"] if "1" in vary else []
            parts += [f"the interaction {t}:{w} (for the slope of {t})" for t in slopes]
            if parts:
                notes.append(f"{w} enters as " + " and ".join(parts))
        fixed_only = [t for t in terms if t not in vary]
        if fixed_only:
            notes.append(
                f"{', '.join(fixed_only)} do{'es' if len(fixed_only) == 1 else ''} not vary by "
                f"{group}: no interaction with {gs}"
            )
        if "1" not in vary:
            notes.append(f"the intercept does not vary: no main effect of {gs}")
    re_expr = " + ".join((["1"] if "1" in vary else ["0"]) + slopes)
    lme4 = f"{mf.response} ~ {' + '.join(fixed) or '1'} + ({re_expr} | {_quote(group)})"
    return TwoLevelSpec(
        formula=formula,
        response=mf.response,
        intercept=intercept,
        terms=tuple(terms),
        group=group,
        group_formula=group_formula,
        group_terms=tuple(g_terms),
        varying=tuple(vary),
        lme4_formula=lme4,
        translation=tuple(notes),
    )


# -- the data: which rows, group-level constancy -------------------------------------------


def _columns_read(rhs: str) -> set[str]:
    """Names a formulaic right-hand side reads (columns, and function names that the caller
    filters out against the data)."""
    from formulaic import Formula
    from formulaic.parser.types.factor import Factor

    names: set[str] = set()
    parsed = Formula(rhs)
    sides = [parsed.lhs, parsed.rhs] if hasattr(parsed, "lhs") else [parsed]
    for side in sides:
        for term in side:
            for f in term.factors:
                if f.eval_method == Factor.EvalMethod.LOOKUP:
                    names.add(f.expr)
                elif f.eval_method == Factor.EvalMethod.PYTHON:
                    tree = ast.parse(f.expr.strip(), mode="eval")
                    names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return names


def _check_group_constant(df: pd.DataFrame, group: str, columns: list[str]) -> None:
    """Raise DataError naming the first group-level predictor that varies within a group."""
    codes, levels = pd.factorize(df[group], sort=True)
    for col in columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            v = s.to_numpy(dtype=float)
            lo = np.full(len(levels), np.inf)
            hi = np.full(len(levels), -np.inf)
            np.minimum.at(lo, codes, v)
            np.maximum.at(hi, codes, v)
            tol = 1e-9 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
            bad = np.flatnonzero(hi - lo > tol)
            if bad.size:
                j = bad[0]
                example = (f"{lo[j]:g}", f"{hi[j]:g}")
        else:
            nun = s.groupby(codes).nunique()
            bad = np.flatnonzero(nun.to_numpy() > 1)
            if bad.size:
                j = bad[0]
                vals = s[codes == j].unique()
                example = (repr(vals[0]), repr(vals[1]))
        if bad.size:
            raise DataError(
                f"group-level predictor '{col}' varies within {group} '{levels[j]}' (values "
                f"{example[0]} and {example[1]}; {bad.size} of {len(levels)} groups): a "
                f"group-level predictor must be constant within each group. Put '{col}' in "
                "the individual-level formula instead, or use its group mean"
            )


def _model_rows(df: pd.DataFrame, spec: TwoLevelSpec) -> tuple[pd.DataFrame, list[str]]:
    """The rows the fit uses (no missing value in any column the model reads) and the
    group-level columns."""
    if spec.group not in df.columns:
        raise DataError(
            f"the grouping column '{spec.group}' is not in the data (columns: "
            f"{', '.join(map(str, df.columns))})"
        )
    cols = set(map(str, df.columns))
    level1 = _columns_read(spec.formula) & cols
    level2: list[str] = []
    if spec.group_terms:
        # names that are not columns (functions, or typos the fit reports) are left out
        level2 = sorted(_columns_read(" + ".join(spec.group_terms)) & cols)
    used = [c for c in df.columns if c in level1 | set(level2) | {spec.group}]
    keep = df[used].notna().all(axis=1).to_numpy()
    return df.loc[keep].reset_index(drop=True), level2


# -- the design behind the presentation ----------------------------------------------------


@dataclass
class _Design:
    """Level-1 and level-2 designs and how the fixed effects map onto the γ's.

    ``X1`` (n, p1) level-1 columns ``x1names``; ``W`` (J, q) level-2 columns ``wnames``
    (``W[:, 0]`` = 1); ``codes`` (n,) group of each row; ``gamma`` (p1, q) index of γ_cw in
    the fixed effects (-1: not in the model); ``zcol`` (k,) level-1 column of each random
    effect; ``D`` (J, p1, p): β_j· = D_j β + E b_j."""

    X1: np.ndarray
    x1names: list[str]
    W: np.ndarray
    wnames: list[str]
    codes: np.ndarray
    levels: pd.Index
    gamma: np.ndarray
    zcol: np.ndarray
    D: np.ndarray
    dropped: list[str]

    @property
    def E(self) -> np.ndarray:
        E = np.zeros((len(self.x1names), len(self.zcol)))
        E[self.zcol, np.arange(len(self.zcol))] = 1.0
        return E

    @property
    def varying(self) -> list[str]:
        return [self.x1names[c] for c in self.zcol]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
    return bool(np.allclose(a, b, rtol=1e-9, atol=1e-12 * scale))


def _aux_design(response: str, rhs: str, group: str, rows: pd.DataFrame):
    """X of ``response ~ rhs`` on the model rows, through the package's own frame (same
    expression checks and evaluation as the fit)."""
    from .frame import build_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fr = build_frame(f"{response} ~ {rhs} + (1 | {_quote(group)})", rows)
    return fr.X, list(fr.xnames)


def _design(spec: TwoLevelSpec, lmm, rows: pd.DataFrame) -> _Design:
    frame = lmm._frame
    if len(rows) != frame.n:
        raise MultilevelError(
            f"internal: the two-level design has {len(rows)} rows but the fit {frame.n}"
        )
    rt = frame.reterms[0]
    codes, levels = rt.codes, rt.levels
    rhs1 = " + ".join(([] if spec.intercept else ["0"]) + list(spec.terms)) or "1"
    X1, x1names = _aux_design(spec.response, rhs1, spec.group, rows)
    if spec.group_terms:
        Wr, wnames = _aux_design(spec.response, " + ".join(spec.group_terms), spec.group, rows)
    else:
        Wr, wnames = np.ones((len(rows), 1)), [INTERCEPT]
    first = np.full(len(levels), -1)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    W = Wr[first]
    # which level-1 column each random effect is
    zcol = []
    for a, name in enumerate(rt.names):
        hits = [c for c in range(X1.shape[1]) if _same(rt.Z[:, a], X1[:, c])]
        if not hits:
            raise FormulaError(
                f"the varying coefficient '{name}' is not a column of the individual-level "
                "design (e.g. a categorical slope without a varying intercept); fit the lme4 "
                f"formula '{spec.lme4_formula}' directly"
            )
        zcol.append(hits[0])
    zcol = np.array(zcol, dtype=int)
    # which (level-1 column c, level-2 column w) each fixed effect is
    X = frame.X
    p1, q, p = X1.shape[1], W.shape[1], X.shape[1]
    gamma = np.full((p1, q), -1, dtype=int)
    allowed = [(c, w) for c in range(p1) for w in range(q) if w == 0 or c in set(zcol)]
    for kcol in range(p):
        for c, w in allowed:
            if gamma[c, w] < 0 and _same(X1[:, c] * Wr[:, w], X[:, kcol]):
                gamma[c, w] = kcol
                break
        else:
            raise FormulaError(
                f"the fixed effect '{frame.xnames[kcol]}' of '{spec.lme4_formula}' is not "
                "a level-1 coefficient times a level-2 predictor; fit that formula directly"
            )
    dropped = [f"{x1names[c]}:{wnames[w]}" for c, w in allowed if gamma[c, w] < 0]
    D = np.zeros((len(levels), p1, p))
    for c in range(p1):
        for w in range(q):
            if gamma[c, w] >= 0:
                D[:, c, gamma[c, w]] = W[:, w]
    return _Design(X1, x1names, W, wnames, codes, levels, gamma, zcol, D, dropped)


def _lambda(theta: np.ndarray, k: int) -> np.ndarray:
    """Λ (k, k) of one correlated block from θ in lme4's order (lower triangle by columns)."""
    lam = np.zeros((k, k))
    i = 0
    for b in range(k):
        for a in range(b, k):
            lam[a, b] = theta[i]
            i += 1
    return lam


@dataclass
class _Conditional:
    """Per group j: M_j⁻¹ (J, k, k), H_j = Λ M_j⁻¹ Λ'Z_j'X_j (J, k, p), the conditional
    modes b̂_j (J, k) and C_j = σ² Λ M_j⁻¹ Λ' (J, k, k)."""

    lam: np.ndarray
    Minv: np.ndarray
    H: np.ndarray
    modes: np.ndarray
    condvar: np.ndarray


def _conditional(lmm, design: _Design) -> _Conditional:
    frame = lmm._frame
    rt = frame.reterms[0]
    Z, X, codes, J, k = rt.Z, frame.X, rt.codes, rt.nlevels, rt.k
    lam = _lambda(np.atleast_1d(lmm.theta), k)
    ZtZ = np.empty((J, k, k))
    for a in range(k):
        for b in range(a + 1):
            ZtZ[:, a, b] = ZtZ[:, b, a] = np.bincount(codes, Z[:, a] * Z[:, b], minlength=J)
    ZtX = np.empty((J, k, X.shape[1]))
    for a in range(k):
        for c in range(X.shape[1]):
            ZtX[:, a, c] = np.bincount(codes, Z[:, a] * X[:, c], minlength=J)
    M = lam.T @ ZtZ @ lam + np.eye(k)
    Minv = np.linalg.inv(M)
    H = lam @ Minv @ lam.T @ ZtX
    re = lmm.ranef[rt.group]
    modes = re[rt.names].to_numpy()
    condvar = lmm.sigma**2 * lam @ Minv @ lam.T
    return _Conditional(lam, Minv, H, modes, condvar)


# -- the model -----------------------------------------------------------------------------


def _greek_symbols(names: list[str], intercept: bool) -> dict[str, str]:
    """α for the intercept, β for a single slope, β1, β2, ... for several."""
    slopes = [n for n in names if n != INTERCEPT]
    out = {INTERCEPT: "α"} if intercept else {}
    for i, n in enumerate(slopes):
        out[n] = "β" if len(slopes) == 1 else f"β{i + 1}"
    return out


def _level2_letters(wnames: list[str]) -> dict[str, str]:
    """a for the level-2 constant, then b, c, d, ... for the predictors (the seed's a0, b0)."""
    letters = "abcdefghkmnpqrstuvwxyz"
    return {w: (letters[i] if i < len(letters) else f"g{i}_") for i, w in enumerate(wnames)}


class TwoLevelModel:
    """A fitted two-level model (see the module docstring), from
    ``multilevel.fit("y ~ x", data, group="school", group_formula="~ u")``.

    ``lmm`` is the underlying :class:`~multilevel.LinearMixedModel` of the equivalent lme4
    formula (``lme4_formula``); its estimates are exposed unchanged (``fixef``, ``vcov``,
    ``sigma``, ``theta``, ``objective``, ``ranef``, ``varcorr``). In the level-1 / level-2
    form: ``group_level`` (the γ's), ``Sigma`` and ``eta_sd`` / ``eta_cor`` (the η's),
    ``sigma_y``, ``coef_table()`` (β_j with SEs); pooling in ``compare_pooling()`` and
    ``pooling()``; figures in ``plot_*``."""

    def __init__(self, spec: TwoLevelSpec, lmm, rows: pd.DataFrame | None = None, design=None):
        self.spec = spec
        self.lmm = lmm
        self._design = design if design is not None else _design(spec, lmm, rows)
        self._cond = _conditional(lmm, self._design)
        d = self._design
        self.symbols = _greek_symbols(d.x1names, spec.intercept)
        self.letters = _level2_letters(d.wnames)

    # -- the underlying fit ---------------------------------------------------------------
    @property
    def lme4_formula(self) -> str:
        return self.spec.lme4_formula

    formula = lme4_formula

    @property
    def group(self) -> str:
        return self.spec.group

    fixef = property(lambda self: self.lmm.fixef)
    fixef_se = property(lambda self: self.lmm.fixef_se)
    vcov = property(lambda self: self.lmm.vcov)
    sigma = property(lambda self: self.lmm.sigma)
    theta = property(lambda self: self.lmm.theta)
    objective = property(lambda self: self.lmm.objective)
    ranef = property(lambda self: self.lmm.ranef)
    varcorr = property(lambda self: self.lmm.varcorr)
    nobs = property(lambda self: self.lmm.nobs)
    reml = property(lambda self: self.lmm.reml)
    converged = property(lambda self: self.lmm.converged)

    @property
    def sigma_y(self) -> float:
        """σ_y, the level-1 residual SD."""
        return float(self.lmm.sigma)

    @property
    def ngroups(self) -> int:
        return len(self._design.levels)

    @property
    def group_sizes(self) -> pd.Series:
        """n_j, observations per group."""
        d = self._design
        n = np.bincount(d.codes, minlength=len(d.levels))
        return pd.Series(n, index=d.levels.rename(self.group), name="n")

    @property
    def group_predictors(self) -> pd.DataFrame:
        """W (J, q): the level-2 design, one row per group (constant column included)."""
        d = self._design
        return pd.DataFrame(d.W, index=d.levels.rename(self.group), columns=d.wnames)

    @property
    def coefficients(self) -> list[str]:
        """The level-1 coefficient names (columns of the individual-level design)."""
        return list(self._design.x1names)

    @property
    def varying(self) -> list[str]:
        """The level-1 coefficients that vary by group, in the order of the η's."""
        return self._design.varying

    def predict(self, newdata=None, new_groups: str = "population") -> np.ndarray:
        return self.lmm.predict(newdata, new_groups=new_groups)

    def refit(self, y=None, *, reml: bool | None = None) -> TwoLevelModel:
        """The same two-level model fitted to a new response (n,) and/or by ML/REML."""
        return TwoLevelModel(self.spec, self.lmm.refit(y, reml=reml), design=self._design)

    # -- level 2 ------------------------------------------------------------------------
    @property
    def Sigma(self) -> pd.DataFrame:
        """Σ (k, k) = σ² ΛΛ', the covariance of the η's, by varying coefficient."""
        lam = self._cond.lam
        S = self.sigma**2 * lam @ lam.T
        return pd.DataFrame(S, index=self.varying, columns=self.varying)

    @property
    def eta_sd(self) -> pd.Series:
        """SD of η_c for each varying coefficient c."""
        return pd.Series(np.sqrt(np.diag(self.Sigma.to_numpy())), index=self.varying, name="sd")

    @property
    def eta_cor(self) -> pd.DataFrame:
        """The correlation matrix of the η's (NaN where an SD is zero)."""
        S = self.Sigma.to_numpy()
        sd = np.sqrt(np.diag(S))
        with np.errstate(invalid="ignore", divide="ignore"):
            R = S / np.outer(sd, sd)
        np.fill_diagonal(R, 1.0)
        return pd.DataFrame(R, index=self.varying, columns=self.varying)

    @property
    def group_level(self) -> pd.DataFrame:
        """The level-2 regressions: one row per (coefficient, predictor) with symbol
        (a0, b0, a1, ...), estimate, SE and t; the η SD of each varying coefficient is in
        ``eta_sd``. Rows of interactions dropped as aliased have NaN."""
        d = self._design
        beta, se = self.fixef.to_numpy(), self.fixef_se.to_numpy()
        rows = []
        for c, cname in enumerate(d.x1names):
            vary = c in set(d.zcol)
            for w, wname in enumerate(d.wnames):
                if not vary and w > 0:
                    continue
                i = d.gamma[c, w]
                est, s = (beta[i], se[i]) if i >= 0 else (np.nan, np.nan)
                rows.append((cname, wname, f"{self.letters[wname]}{c}", vary, est, s, est / s))
        return pd.DataFrame(
            rows,
            columns=["coefficient", "predictor", "symbol", "varying", "estimate", "se", "t"],
        )

    # -- the group coefficients -----------------------------------------------------------
    def coef_cov(self, covariance: bool = True) -> np.ndarray:
        """(J, p1, p1): Var of the group coefficients β_j· (module docstring); with
        ``covariance=False`` arm's version without Cov(b̂, β̂)."""
        d, cond = self._design, self._cond
        V = self.vcov.to_numpy()
        E = d.E
        A = d.D - (E @ cond.H if covariance else 0.0)
        return A @ V @ np.swapaxes(A, 1, 2) + E @ cond.condvar @ E.T

    def coef_estimates(self) -> np.ndarray:
        """(J, p1): β_j· = D_j β̂ + E b̂_j."""
        d = self._design
        return d.D @ self.fixef.to_numpy() + self._cond.modes @ d.E.T

    def coef_table(self, covariance: bool = True) -> pd.DataFrame:
        """The group coefficients (α_j, β_j, ...) and their SEs, one row per group, with
        n_j: columns ``n``, then each coefficient and ``se(coefficient)``. The SE counts the
        fixed-effect and the conditional uncertainty (module docstring)."""
        d = self._design
        est = self.coef_estimates()
        se = np.sqrt(np.maximum(np.diagonal(self.coef_cov(covariance), axis1=1, axis2=2), 0))
        idx = d.levels.rename(self.group)
        out = pd.DataFrame({"n": self.group_sizes.to_numpy()}, index=idx)
        for c, name in enumerate(d.x1names):
            out[name] = est[:, c]
        for c, name in enumerate(d.x1names):
            out[f"se({name})"] = se[:, c]
        return out

    @property
    def coef(self) -> pd.DataFrame:
        """The group coefficients (as ``coef_table()`` without SEs and n)."""
        return self.coef_table()[self.coefficients]

    # -- pooling and figures ------------------------------------------------------------
    def compare_pooling(self) -> pd.DataFrame:
        """Complete, no and partial pooling side by side, per group; see
        :func:`multilevel.pooling.compare_pooling`."""
        from .pooling import compare_pooling

        return compare_pooling(self)

    def pooling(self, ndraws: int = 1000, seed: int | None = None, joint: bool = True):
        """Gelman & Pardoe's R² and pooling factor λ at each level, from simulations of the
        fitted model; see :func:`multilevel.pooling.pooling_measures`."""
        from .pooling import pooling_measures

        return pooling_measures(self, ndraws=ndraws, seed=seed, joint=joint)

    def plot_pooling(self, groups=None, **kwargs):
        from .plots import plot_pooling

        return plot_pooling(self, groups=groups, **kwargs)

    def plot_group_regression(self, coefficient: str | None = None, **kwargs):
        from .plots import plot_group_regression

        return plot_group_regression(self, coefficient=coefficient, **kwargs)

    def plot_shrinkage(self, coefficient: str | None = None, **kwargs):
        from .plots import plot_shrinkage

        return plot_shrinkage(self, coefficient=coefficient, **kwargs)

    def plot_caterpillar(self, **kwargs):
        from .plots import plot_caterpillar

        return plot_caterpillar(self, **kwargs)

    def plot_overview(self, **kwargs):
        from .plots import plot_overview

        return plot_overview(self, **kwargs)

    # -- presentation -------------------------------------------------------------------
    def equations(self) -> list[str]:
        """The model in the seed's notation, one line per equation."""
        d, spec = self._design, self.spec
        varying = set(d.varying)
        sub = "j[i]"
        parts = []
        for name in d.x1names:
            s = self.symbols[name] + (f"_{sub}" if name in varying else "")
            parts.append(s if name == INTERCEPT else f"{s}·{name}_i")
        lines = [f"{spec.response}_i = {' + '.join(parts)} + ε_i,   ε_i ~ N(0, σ_y²)"]
        gl = self.group_level
        eta_names = [f"η_j{a + 1}" for a in range(len(d.zcol))]
        for c, name in enumerate(d.x1names):
            rows = gl[gl.coefficient == name]
            terms = []
            for r in rows.itertuples():
                terms.append(
                    r.symbol if r.predictor == INTERCEPT else f"{r.symbol}·{r.predictor}_j"
                )
            if name in varying:
                a = int(np.flatnonzero(d.zcol == c)[0])
                lines.append(f"{self.symbols[name]}_j = {' + '.join(terms)} + {eta_names[a]}")
            else:
                lines.append(f"{self.symbols[name]} = {' + '.join(terms)}  (same in every group)")
        if len(eta_names) > 1:
            lines.append(f"({', '.join(eta_names)}) ~ N(0, Σ)")
        else:
            lines.append(f"{eta_names[0]} ~ N(0, σ_{self.symbols[d.varying[0]]}²)")
        return lines

    def summary(self, max_groups: int = 10) -> str:
        from .summary import _table

        d, spec, lmm = self._design, self.spec, self.lmm
        crit = "REML" if lmm.reml else "maximum likelihood"
        lines = [f"Two-level linear model fit by {crit} ['multilevel']"]
        data = f"{lmm.data_name}: " if lmm.data_name else ""
        lines.append(
            f"   Data: {data}{lmm.nobs} observations in {self.ngroups} groups ({spec.group})"
        )
        if lmm.n_dropped:
            lines.append(f"   {lmm.n_dropped} rows with missing values were dropped")
        eq = self.equations()
        lines += ["", f"Level 1 (observation i in {spec.group} j):", "  " + eq[0]]
        lines += [f"Level 2 ({spec.group} j):"] + ["  " + e for e in eq[1:]]
        lines += ["", "Equivalent lme4 formula:", f"  {spec.lme4_formula}"]
        for note in spec.translation:
            lines += textwrap.wrap(note, 98, initial_indent="  - ", subsequent_indent="    ")
        lines.append("")
        if lmm.reml:
            lines.append(f"REML criterion at convergence: {lmm.objective:.4f}")
        else:
            lines.append(f"-2 log-likelihood: {lmm.objective:.4f}   AIC: {lmm.aic:.2f}")
        lines += ["", "Level-2 regressions:"]
        rows = []
        gl = self.group_level
        sd = self.eta_sd
        for c, name in enumerate(d.x1names):
            first = True
            label = f"{self.symbols[name]} ({'intercept' if name == INTERCEPT else name})"
            for r in gl[gl.coefficient == name].itertuples():
                rows.append(
                    [
                        label if first else "",
                        r.symbol,
                        r.predictor,
                        f"{r.estimate:.5g}",
                        f"{r.se:.4g}",
                        f"{r.t:.2f}",
                    ]
                )
                first = False
            if name in sd.index:
                a = int(np.flatnonzero(d.zcol == c)[0])
                rows.append(["", f"sd(η_j{a + 1})", "", f"{sd[name]:.4g}", "", ""])
            else:
                rows.append(["", "", "(not varying)", "", "", ""])
        lines += _table(
            rows, ["Coefficient", "Symbol", "Predictor", "Estimate", "Std. Error", "t value"], 3
        )
        if len(d.zcol) > 1:
            lines += ["", "Correlation of the η's:"]
            R = self.eta_cor.to_numpy()
            crow = []
            for a in range(1, len(d.zcol)):
                crow.append([f"η_j{a + 1}"] + [f"{R[a, b]:.3f}" for b in range(a)])
            lines += _table(crow, [""] + [f"η_j{b + 1}" for b in range(len(d.zcol) - 1)])
        lines += ["", f"Residual SD: σ_y = {self.sigma_y:.5g}"]
        ct = self.coef_table()
        shown = ct.head(max_groups)
        which = f"first {len(shown)} of {len(ct)}" if len(ct) > len(shown) else f"all {len(ct)}"
        lines += [
            "",
            f"Group coefficients and SEs (fixed-effect and conditional uncertainty), {which}:",
        ]
        header = [spec.group, "n"]
        for name in d.x1names:
            sym = self.symbols[name] + ("_j" if name in set(d.varying) else "")
            header += [sym, "se"]
        grows = []
        for lev, r in shown.iterrows():
            cells = [str(lev), str(int(r["n"]))]
            for name in d.x1names:
                cells += [f"{r[name]:.4g}", f"{r[f'se({name})']:.3g}"]
            grows.append(cells)
        lines += _table(grows, header)
        notes = []
        if d.dropped:
            notes.append(f"aliased, not estimated: {', '.join(d.dropped)}")
        if lmm.singular:
            notes.append("boundary (singular) fit: " + "; ".join(lmm.singular_terms))
        if not lmm.converged:
            notes.append(f"the optimiser did not converge: {lmm.optim.message}")
        if notes:
            lines.append("")
            lines += [f"Note: {n}" for n in notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """JSON: the specification, ``group_level`` (one entry per varying coefficient:
        ``coef``, ``se`` by predictor and ``sd`` of its η), ``constant`` (the coefficients
        that do not vary), ``eta_correlation``, ``sigma_y``, ``coef`` (one row per group:
        n, estimates and SEs) and ``fit`` (the lme4-formula fit's own JSON)."""
        d = self._design
        gl = self.group_level
        sd = self.eta_sd

        def num(x):
            x = float(x)
            return None if math.isnan(x) else x

        group_level, constant = {}, {}
        for name in d.x1names:
            rows = gl[gl.coefficient == name]
            entry = {
                "symbol": self.symbols[name],
                "coef": {r.predictor: num(r.estimate) for r in rows.itertuples()},
                "se": {r.predictor: num(r.se) for r in rows.itertuples()},
                "symbols": {r.predictor: r.symbol for r in rows.itertuples()},
            }
            if name in sd.index:
                entry["sd"] = float(sd[name])
                group_level[name] = entry
            else:
                constant[name] = entry
        ct = self.coef_table()
        coef = []
        for lev, r in ct.iterrows():
            coef.append(
                {
                    "group": str(lev),
                    "n": int(r["n"]),
                    "coef": {n: float(r[n]) for n in d.x1names},
                    "se": {n: float(r[f"se({n})"]) for n in d.x1names},
                }
            )
        R = self.eta_cor.to_numpy()
        return {
            "model": "two-level",
            "formula": self.spec.formula,
            "group": self.spec.group,
            "group_formula": self.spec.group_formula,
            "varying": list(d.varying),
            "lme4_formula": self.spec.lme4_formula,
            "translation": list(self.spec.translation),
            "equations": self.equations(),
            "method": self.lmm.method,
            "nobs": int(self.nobs),
            "ngroups": self.ngroups,
            "objective": self.objective,
            "sigma_y": self.sigma_y,
            "group_level": group_level,
            "constant": constant,
            "eta_correlation": {
                "terms": list(d.varying),
                "matrix": [[num(v) for v in row] for row in R],
            },
            "coef": coef,
            "dropped": list(d.dropped),
            "fit": self.lmm.to_dict(),
        }


def fit_two_level(
    formula: str,
    data,
    group: str,
    group_formula: str | None = None,
    varying=None,
    *,
    reml: bool = True,
    data_name: str | None = None,
) -> TwoLevelModel:
    """Fit a two-level model: individual-level ``formula`` ("y ~ x"), grouping column
    ``group``, group-level predictors ``group_formula`` ("~ u + sector") and the level-1
    coefficients that vary (``varying``: None for all, "1" for the intercept only, or an
    lme4-style "1 + x" / list of terms). The fit is that of ``translate(...).lme4_formula``.

    Raises DataError when a group-level predictor is not constant within a group."""
    from .api import fit
    from .frame import to_pandas

    spec = translate(formula, group, group_formula, varying)
    df = to_pandas(data)
    if not all(isinstance(c, str) for c in df.columns):
        df = df.set_axis([str(c) for c in df.columns], axis=1)
    rows, level2 = _model_rows(df, spec)
    if level2 and len(rows):
        _check_group_constant(rows, spec.group, level2)
    lmm = fit(spec.lme4_formula, df, reml=reml, data_name=data_name)
    return TwoLevelModel(spec, lmm, rows)


# -- command line (wired into multilevel.cli by its owner) -------------------------------


def add_cli_arguments(parser) -> None:
    """Add ``--group``, ``--group-formula``, ``--varying`` and ``--plot`` to the ``fit``
    subparser."""
    parser.add_argument(
        "--group",
        help="grouping column: FORMULA is then the individual-level formula ('y ~ x')",
    )
    parser.add_argument(
        "--group-formula",
        dest="group_formula",
        help="group-level predictors, e.g. '~ u + sector' (with --group)",
    )
    parser.add_argument(
        "--varying",
        help="individual-level coefficients that vary by group, e.g. '1' or '1 + x' "
        "(with --group; default: all)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write a figure: with --group, pooling lines, the group-level regression, "
        "shrinkage and the random effects; otherwise the random effects",
    )


def cli_fit(args, df, name) -> int:
    """``multilevel fit DATA FORMULA --group G [--group-formula F] [--varying V]
    [--plot FILE.png] [--ml] [--json]``: fit, print the summary (or JSON), write the figure."""
    import json

    from .api import fit

    group = getattr(args, "group", None)
    if group is None and (getattr(args, "group_formula", None) or getattr(args, "varying", None)):
        raise DataError("--group-formula and --varying need --group (the grouping column)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if group is not None:
            m = fit(
                args.formula,
                df,
                group=group,
                group_formula=args.group_formula,
                varying=args.varying,
                reml=not args.ml,
                data_name=name,
            )
        else:
            m = fit(args.formula, df, reml=not args.ml, data_name=name)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.json:
        print(json.dumps(m.to_dict(), indent=1, allow_nan=True))
    else:
        print(m.summary())
    plot = getattr(args, "plot", None)
    if plot:
        from .plots import plot_caterpillar, plot_overview

        fig = plot_overview(m) if isinstance(m, TwoLevelModel) else plot_caterpillar(m)
        try:
            fig.savefig(plot, dpi=120)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot write the figure to '{plot}': {e}") from None
        print(f"wrote {plot}", file=sys.stderr)
    return 0
