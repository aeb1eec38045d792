"""The linear mixed fit: from a model frame to the optimised profiled deviance.

:func:`prepare` makes the blocks (one pass over the data) and the deviance;
:func:`optimize` minimises it and factors it at the optimum. The fitted model
(:mod:`multilevel.model`) is built from the result; refits (a new response, the other
criterion) start from the prepared pieces, without a new formula or data pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import ModelFrame
from ..engine import (
    BlockPattern,
    CrossProducts,
    Design,
    Factorization,
    ProfiledDeviance,
    RandomBlock,
    Response,
    one_blas_thread,
    unexplained_fraction,
)
from ..errors import DataError, MultilevelError
from .optimize import OptimResult, minimize_theta

#: a fit whose fixed effects leave less than this fraction of the response's sum of squares
#: unexplained is refused (R² > 1 - 1e-10: a predictor is the response or a transform of it)
EXACT_FIT = 1e-10
#: From this many random effects (first term) plus Schur-complement rows, an evaluation costs
#: more than the optimiser's own work, and the optimiser that needs fewer evaluations wins.
EXPENSIVE = 1000


def design_of(frame: ModelFrame) -> Design:
    """The engine's view of a frame's predictors: X and one block per random-effects term."""
    return Design(
        frame.X,
        tuple(RandomBlock(rt.Z, rt.codes, rt.nlevels, rt.correlated) for rt in frame.reterms),
    )


def response_of(frame: ModelFrame) -> Response:
    """The engine's view of a frame's response: y, prior weights and offset."""
    return Response(frame.y, frame.weights, frame.offset)


@dataclass
class Problem:
    """A model ready to optimise: the block pattern (for refits), the blocks of the
    response and the deviance over θ."""

    pattern: BlockPattern
    response: Response
    blocks: CrossProducts
    deviance: ProfiledDeviance


def prepare(frame: ModelFrame, reml: bool = True) -> Problem:
    """The blocks of ``frame`` (one pass over the data) and its profiled deviance; refuses a
    fit whose fixed effects reproduce the response."""
    if not frame.reterms:
        raise MultilevelError("a mixed model needs at least one random-effects term")
    design, response = design_of(frame), response_of(frame)
    pattern = BlockPattern(design, response.weights)
    cp = pattern.crossproducts(response)
    if unexplained_fraction(cp) < EXACT_FIT:
        raise DataError(
            f"the fixed effects reproduce the response '{frame.response_name}' exactly (they "
            f"leave less than {EXACT_FIT:g} of its variation unexplained), so there is "
            "nothing left for the random effects and the residual; is the response, or a "
            "transform of it, among the predictors?"
        )
    return Problem(pattern, response, cp, ProfiledDeviance(cp, design.correlated, reml=reml))


def expensive(dev: ProfiledDeviance) -> bool:
    """Whether an evaluation costs more than the optimiser's own work."""
    return dev.m + dev.l1 * dev.k1 >= EXPENSIVE


def optimize(dev: ProfiledDeviance) -> tuple[OptimResult, Factorization]:
    """Minimise the deviance over θ and factor it at the optimum."""
    with one_blas_thread():
        opt = minimize_theta(dev, dev.layout, expensive(dev))
        return opt, dev.factor(opt.theta)
