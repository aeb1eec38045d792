"""``multilevel.fit``: formula and data in, a fitted model out; ``multilevel.anova``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .data import build_frame, to_pandas
from .errors import DataError, FormulaError, MultilevelError
from .fitting.lmm import optimize, prepare
from .models import LinearMixedModel
from .spec import parse_formula

if TYPE_CHECKING:
    from .glmm_models import GeneralizedLinearMixedModel
    from .twolevel_models import TwoLevelModel


def fit(
    formula: str,
    data,
    *,
    reml: bool = True,
    family="gaussian",
    nagq: int = 1,
    weights: str | None = None,
    offset: str | None = None,
    data_name: str | None = None,
    group: str | None = None,
    group_formula: str | None = None,
    varying=None,
) -> LinearMixedModel | GeneralizedLinearMixedModel | TwoLevelModel:
    """Fit a linear mixed model written in lme4's formula language, by REML (default) or ML.

    ``data`` is a pandas, polars or pyarrow table. Rows with a missing value in a column the
    model uses are dropped (``fit.n_dropped`` counts them). ``weights``: the column of prior
    weights w_i, Var(ε_i) = σ²/w_i as lme4's ``weights=`` (rows of weight 0 are dropped and
    counted, negative or missing weights are an error); ``offset``: a column added to the
    linear predictor with coefficient 1, as the formula's ``offset(expr)`` terms.

    ``family``: "gaussian" (the linear mixed model), "binomial" or "poisson" (a name, or a
    family object from :func:`multilevel.family` for another link), fitted by maximum
    likelihood with the Laplace approximation, or adaptive Gauss-Hermite quadrature with
    ``nagq`` nodes per dimension (a single random-effects term, scalar or vector-valued); see
    :mod:`multilevel.engine.pirls`.

    Two-level form: with ``group`` (the grouping column), ``formula`` is the individual-level
    formula ("y ~ x"), ``group_formula`` the group-level predictors ("~ u") and ``varying``
    the coefficients that vary (default all); the equivalent lme4 formula is fitted (as a
    GLMM with ``family``) and a :class:`~multilevel.twolevel_models.TwoLevelModel` returned
    (see :mod:`multilevel.twolevel`).

    ``reml`` is ignored with a binomial or Poisson ``family`` (always maximum likelihood)."""
    fam = None if _is_gaussian(family) else _glmm_family(family, nagq)
    if fam is None and nagq != 1:
        raise MultilevelError("nagq= is for binomial and Poisson models (family=)")
    if group is not None:
        from .twolevel import check_group_constant, group_level_columns, translate
        from .twolevel_models import TwoLevelModel

        spec = translate(formula, group, group_formula, varying)
        df = _with_str_columns(data)
        if spec.group not in df.columns:
            raise DataError(
                f"the grouping column '{spec.group}' is not in the data (columns: "
                f"{', '.join(map(str, df.columns))})"
            )
        frame = build_frame(
            parse_formula(spec.lme4_formula), df, weights=weights, offset=offset,
            family="gaussian" if fam is None else fam.name,
        )  # fmt: skip
        level2 = [c for c in group_level_columns(spec) if c in frame.data.columns]
        if level2:
            check_group_constant(frame.data, spec.group, level2)
        if fam is None:
            return TwoLevelModel(spec, _fit_frame(frame, reml, data_name))
        return TwoLevelModel(spec, _fit_glmm_frame(frame, fam, nagq, data_name))
    if group_formula is not None or varying is not None:
        raise FormulaError("group_formula= and varying= need group= (the grouping column)")
    if fam is not None:
        frame = build_frame(formula, data, weights=weights, offset=offset, family=fam.name)
        if not frame.reterms:
            raise FormulaError(
                "the formula has no random-effects term such as '(1 | group)'; for a model "
                "without random effects use a generalized linear model",
                formula,
            )
        return _fit_glmm_frame(frame, fam, nagq, data_name)
    frame = build_frame(formula, data, weights=weights, offset=offset)
    if not frame.reterms:
        raise FormulaError(
            "the formula has no random-effects term such as '(1 | group)'; "
            "for a model without random effects use ordinary least squares",
            formula,
        )
    return _fit_frame(frame, reml, data_name)


def _is_gaussian(family) -> bool:
    return isinstance(family, str) and family.strip().lower() == "gaussian"


def _glmm_family(family, nagq):
    """The family object of a binomial or Poisson ``family``, with ``nagq`` checked."""
    from .engine.family import family as make_family

    fam = make_family(family)
    if isinstance(nagq, bool) or not isinstance(nagq, int) or nagq < 1:
        raise MultilevelError(f"nagq must be a whole number of at least 1, not {nagq!r}")
    return fam


def _fit_glmm_frame(frame, fam, nagq: int, data_name: str | None):
    from .fitting.glmm import optimize_glmm, prepare_glmm
    from .glmm_models import GeneralizedLinearMixedModel

    problem = prepare_glmm(frame, fam, nagq)
    return GeneralizedLinearMixedModel(frame, problem, optimize_glmm(problem), data_name)


def _with_str_columns(data) -> pd.DataFrame:
    df = to_pandas(data)
    if not all(isinstance(c, str) for c in df.columns):
        df = df.set_axis([str(c) for c in df.columns], axis=1)
    return df


def _fit_frame(frame, reml: bool, data_name: str | None) -> LinearMixedModel:
    problem = prepare(frame, reml=reml)
    optim, fac = optimize(problem.deviance)
    return LinearMixedModel(frame, problem, optim, fac, data_name)


def anova(m0, m1, *more, names: list[str] | None = None) -> pd.DataFrame:
    """Likelihood-ratio tests between nested models fitted to the same data (two-level fits,
    linear or binomial/Poisson, are compared through their lme4-formula fits); see
    :func:`multilevel.inference.compare.anova`."""
    from .inference.compare import anova as lrt
    from .twolevel import TwoLevelFit

    models = [m.fit if isinstance(m, TwoLevelFit) else m for m in (m0, m1, *more)]
    return lrt(*models, names=names)
