"""Two-level models as users write them (Gelman & Hill 2007, chapters 12-13), and the lme4
formula they amount to.

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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError, FormulaError
from ..spec import parse_formula
from ..spec.names import quoted
from ..spec.parsing import columns_read, first_line, formulaic_formula, parse_factors

_CALL = re.compile(r"^(?:[^\W\d]|\.)[\w.]*\(.*\)$", re.S)
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
    return quoted(name)


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
    try:
        parsed = formulaic_formula(rhs)
    except Exception as e:  # noqa: BLE001 - formulaic raises several types
        raise FormulaError(
            f"cannot parse the {what} '{rhs.strip()}': {first_line(e)}", formula
        ) from None
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
    fixed += [f"offset({expr})" for expr in mf.offsets]  # level 1's, with coefficient 1
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


def group_level_columns(spec: TwoLevelSpec) -> list[str]:
    """The data columns the group-level formula reads."""
    if not spec.group_terms:
        return []
    return sorted(columns_read(parse_factors("0 + " + " + ".join(spec.group_terms))))


def check_group_constant(df: pd.DataFrame, group: str, columns: list[str]) -> None:
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
