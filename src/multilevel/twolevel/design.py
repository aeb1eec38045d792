"""How the fixed effects of the lme4 formula map onto the two-level model's coefficients,
read from the fit's schema (no second model frame).

Level-1 columns X1 (n, p1) are X's columns of the level-1 terms; level-2 columns W (J, q)
(``W[:, 0]`` = 1) are the group-level predictors, one row per group; ``gamma[c, w]`` is the
index in β of γ_cw, the coefficient of level-2 column w in the regression of level-1
coefficient c (-1: not in the model); ``zcol`` the level-1 column of each random effect;
``D`` (J, p1, p) places W into β: β_j· = D_j β + E b_j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.materialize import INTERCEPT, column_names, model_matrix
from ..errors import FormulaError
from ..spec.parsing import formulaic_formula
from .spec import TwoLevelSpec


@dataclass
class TwoLevelDesign:
    """Level-1 and level-2 designs and the map of the fixed effects onto the γ's (module
    docstring)."""

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
        """(p1, k): places the random effects among the level-1 coefficients."""
        E = np.zeros((len(self.x1names), len(self.zcol)))
        E[self.zcol, np.arange(len(self.zcol))] = 1.0
        return E

    @property
    def varying(self) -> list[str]:
        return [self.x1names[c] for c in self.zcol]


def _factor_key(term) -> tuple[str, ...]:
    return tuple(f.expr for f in term.factors)


def _term_key(text: str) -> tuple[str, ...]:
    """The factors of one formula term, as formulaic parses them."""
    terms = [t for t in formulaic_formula(f"0 + {text}") if _factor_key(t) != ("0",)]
    return _factor_key(terms[0]) if terms else ()


def _term_columns(fixed_spec, texts) -> dict[str, list[str]]:
    """The columns (formulaic's names) of each term ``texts`` in the fit's fixed spec."""
    by_key = {_factor_key(st.term): list(st.columns) for st in fixed_spec.structure}
    return {t: by_key.get(_term_key(t), []) for t in texts}


def _first_rows(codes: np.ndarray, nlevels: int) -> np.ndarray:
    first = np.full(nlevels, -1)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return first


def _column_name(cname: str, wname: str) -> str:
    """The name of γ_cw's column in the lme4 formula's fixed effects: the level-1 column
    times the level-2 one (the intercept is left out of the product)."""
    if wname == INTERCEPT:
        return cname
    return wname if cname == INTERCEPT else f"{cname}:{wname}"


def two_level_design(spec: TwoLevelSpec, lmm) -> TwoLevelDesign:
    """The design of a two-level fit ``lmm`` of ``spec.lme4_formula``."""
    frame = lmm.frame
    schema = frame.schema
    rt = frame.reterms[0]
    codes, levels = rt.codes, rt.levels
    index = {name: j for j, name in enumerate(schema.xnames)}
    X = frame.X
    # level 1: the columns of the level-1 terms (all are main effects of the lme4 formula)
    level1 = _term_columns(schema.fixed_spec, spec.terms)
    x1names = [INTERCEPT] if spec.intercept and INTERCEPT in index else []
    for t in spec.terms:
        x1names += [c for c in column_names(level1[t]) if c in index]
    X1 = X[:, [index[c] for c in x1names]]
    first = _first_rows(codes, len(levels))
    # level 2: read off X when every group-level column is a main effect there, else
    # evaluated once on the fit's rows (the same stateful transforms, e.g. scale(u))
    level2 = _term_columns(schema.fixed_spec, spec.group_terms)
    wcols = [c for t in spec.group_terms for c in column_names(level2[t])]
    if all(c in index for c in wcols) and all(level2[t] for t in spec.group_terms):
        W = np.column_stack([np.ones(len(levels))] + [X[first, index[c]] for c in wcols])
        wnames = [INTERCEPT, *wcols]
    else:
        mm = model_matrix("1 + " + " + ".join(spec.group_terms), frame.data)
        wnames = column_names(mm.columns)
        W = np.asarray(mm, dtype=float)[first]
    zcol = []
    for name in rt.names:
        if name not in x1names:
            raise FormulaError(
                f"the varying coefficient '{name}' is not a column of the individual-level "
                "design (e.g. a categorical slope without a varying intercept); fit the lme4 "
                f"formula '{spec.lme4_formula}' directly"
            )
        zcol.append(x1names.index(name))
    zcol = np.array(zcol, dtype=int)
    p1, q, p = len(x1names), len(wnames), X.shape[1]
    gamma = np.full((p1, q), -1, dtype=int)
    allowed = [(c, w) for c in range(p1) for w in range(q) if w == 0 or c in set(zcol)]
    for c, w in allowed:
        gamma[c, w] = index.get(_column_name(x1names[c], wnames[w]), -1)
    unmapped = sorted(set(range(p)) - set(gamma[gamma >= 0].tolist()))
    if unmapped:
        raise FormulaError(
            f"the fixed effect '{schema.xnames[unmapped[0]]}' of '{spec.lme4_formula}' is not "
            "a level-1 coefficient times a level-2 predictor; fit that formula directly"
        )
    dropped = [_column_name(x1names[c], wnames[w]) for c, w in allowed if gamma[c, w] < 0]
    D = np.zeros((len(levels), p1, p))
    for c in range(p1):
        for w in range(q):
            if gamma[c, w] >= 0:
                D[:, c, gamma[c, w]] = W[:, w]
    return TwoLevelDesign(X1, x1names, W, wnames, codes, levels, gamma, zcol, D, dropped)
