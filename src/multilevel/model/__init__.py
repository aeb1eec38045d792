"""The fitted model: :class:`LinearMixedFit` and the conditional distribution of (σ, β, b)
given θ̂ that its group coefficients, predictions and pooling measures draw from."""

from .conditional import ConditionalDistribution, Draws
from .lmm import LinearMixedFit

__all__ = ["ConditionalDistribution", "Draws", "LinearMixedFit"]
