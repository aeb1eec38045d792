"""The schema of a model: what a fit needs to know about the data besides the numbers.

Names, levels, block sizes and the specifications that rebuild the model matrices for new
data, kept apart from the arrays (:class:`~multilevel.data.frame.ModelFrame`), so that a data
source that never holds the rows in memory can produce the same schema.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..spec import ModelFormula, RandomTerm


@dataclass(frozen=True)
class TermSchema:
    """One random-effects term: ``k`` named columns varying over ``levels`` of its grouping
    factor. ``spec`` rebuilds its columns for new data."""

    term: RandomTerm
    names: tuple[str, ...]
    levels: pd.Index
    spec: object = None

    @property
    def group(self) -> str:
        return self.term.group

    @property
    def factors(self) -> tuple[str, ...]:
        return self.term.factors

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def correlated(self) -> bool:
        """False when Λ of this term is diagonal (``||``, or a single column)."""
        return self.term.correlated and self.k > 1


@dataclass(frozen=True)
class Schema:
    """Everything about a model's data but the numbers.

    ``xnames`` name the fixed-effects columns (after aliased ones were dropped:
    ``dropped_columns``); ``terms`` are the random-effects terms, most levels first, as lme4
    orders them; ``weights`` and ``offset`` name the columns given as ``weights=`` and
    ``offset=`` (None when not given); ``offset_specs`` rebuild each ``offset(expr)`` of the
    formula for new data. ``nobs`` rows are used; ``n_dropped`` had a missing value,
    ``n_zero_weight`` a weight of 0."""

    formula: ModelFormula
    xnames: tuple[str, ...]
    fixed_spec: object
    terms: tuple[TermSchema, ...]
    nobs: int
    n_dropped: int = 0
    n_zero_weight: int = 0
    dropped_columns: tuple[str, ...] = ()
    weights: str | None = None
    offset: str | None = None
    offset_specs: tuple = ()
    #: "gaussian", "binomial" or "poisson"
    family: str = "gaussian"

    @property
    def response(self) -> str:
        return self.formula.response

    @property
    def p(self) -> int:
        return len(self.xnames)

    @property
    def has_offset(self) -> bool:
        return self.offset is not None or bool(self.formula.offsets)

    @property
    def groups(self) -> dict[str, int]:
        """Number of levels of each grouping factor (a factor of several terms once)."""
        out: dict[str, int] = {}
        for t in self.terms:
            out.setdefault(t.group, t.nlevels)
        return out
