"""``multilevel.fit``: formula and data in, a :class:`LinearMixedModel` out."""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from .blocks import crossproducts, unexplained_fraction
from .deviance import ProfiledDeviance
from .errors import DataError, FormulaError
from .frame import build_frame
from .optimize import minimize_theta
from .results import LinearMixedModel

if TYPE_CHECKING:
    from .twolevel import TwoLevelModel

#: a fit whose fixed effects leave less than this fraction of the response's sum of squares
#: unexplained is refused (R² > 1 - 1e-10: a predictor is the response or a transform of it)
EXACT_FIT = 1e-10
#: From this many random effects (first term) plus Schur-complement rows, an evaluation costs
#: more than the optimiser's own work, and the optimiser that needs fewer evaluations wins.
_EXPENSIVE = 1000


@cache
def _threadpool_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def fit(
    formula: str,
    data,
    *,
    reml: bool = True,
    data_name: str | None = None,
    group: str | None = None,
    group_formula: str | None = None,
    varying=None,
) -> LinearMixedModel | TwoLevelModel:
    """Fit a linear mixed model written in lme4's formula language, by REML (default) or ML.

    ``data`` is a pandas, polars or pyarrow table. Rows with a missing value in a column the
    model uses are dropped (``fit.n_dropped`` counts them).

    Two-level form: with ``group`` (the grouping column), ``formula`` is the individual-level
    formula ("y ~ x"), ``group_formula`` the group-level predictors ("~ u") and ``varying``
    the coefficients that vary (default all); the equivalent lme4 formula is fitted and a
    :class:`~multilevel.twolevel.TwoLevelModel` returned (see :mod:`multilevel.twolevel`)."""
    if group is not None:
        from .twolevel import fit_two_level

        return fit_two_level(
            formula, data, group, group_formula, varying, reml=reml, data_name=data_name
        )
    if group_formula is not None or varying is not None:
        raise FormulaError("group_formula= and varying= need group= (the grouping column)")
    frame = build_frame(formula, data)
    if not frame.reterms:
        raise FormulaError(
            "the formula has no random-effects term such as '(1 | group)'; "
            "for a model without random effects use ordinary least squares",
            formula,
        )
    cp = crossproducts(frame)
    if unexplained_fraction(cp) < EXACT_FIT:
        raise DataError(
            f"the fixed effects reproduce the response '{frame.response_name}' exactly (they "
            f"leave less than {EXACT_FIT:g} of its variation unexplained), so there is "
            "nothing left for the random effects and the residual; is the response, or a "
            "transform of it, among the predictors?"
        )
    dev = ProfiledDeviance(cp, [rt.correlated for rt in frame.reterms], reml=reml)
    return fit_deviance(frame, cp, dev, data_name)


@contextmanager
def blas_threads_for(dev: ProfiledDeviance):
    """One BLAS thread while we fit. Our blocks are too small to gain from threads, and a
    multi-threaded OpenBLAS on 2 cores is slower than one thread when the other core is
    busy: measured up to 100x for a Cholesky, and ~600 µs mean for a 2x2 triangular solve
    that takes 9 µs on one thread. Entering the limit costs ~10 µs."""
    with _threadpool_controller().limit(limits=1, user_api="blas"):
        yield


def fit_deviance(
    frame, cp, dev: ProfiledDeviance, data_name: str | None = None
) -> LinearMixedModel:
    """Optimise a prepared deviance and collect the results (the part of :func:`fit` after
    the data pass; refits for the bootstrap and for ML comparisons start here)."""
    expensive = dev.m + cp.nlevels[0] * cp.k[0] >= _EXPENSIVE
    with blas_threads_for(dev):
        opt = minimize_theta(dev, dev.layout, expensive)
        fac = dev.factor(opt.theta)
        return LinearMixedModel(frame, cp, dev, opt, fac, dev.reml, data_name)
