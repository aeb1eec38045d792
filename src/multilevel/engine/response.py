"""The response module: y, the prior weights and the offset, kept apart from the predictor
module (X, Z, Λ and the factor L), as lme4 splits ``lmResp`` from ``merPredD``.

With prior weights w_i, Var(ε_i) = σ²/w_i (lme4's ``weights=``); the linear predictor fits
the working response y - offset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Response:
    """``y`` (n,), prior ``weights`` (n,) (None: all 1) and ``offset`` (n,) (None: 0)."""

    y: np.ndarray
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def working(self) -> np.ndarray:
        """y - offset, the response of the linear predictor Xβ + Zb."""
        return self.y if self.offset is None else self.y - self.offset

    @property
    def log_weights(self) -> float:
        """Σ log w_i: the term ``-log|W|`` that weights add to -2 log-likelihood (lme4's
        ``ldW``); 0 without weights."""
        return 0.0 if self.weights is None else float(np.log(self.weights).sum())

    def with_y(self, y: np.ndarray) -> Response:
        """The same weights and offset with another response (n,)."""
        return replace(self, y=np.asarray(y, dtype=float))

    def with_extra_offset(self, extra: np.ndarray) -> Response:
        """The offset plus ``extra`` (n,) (a fixed effect held at a value, in profiles)."""
        return replace(self, offset=extra if self.offset is None else self.offset + extra)
