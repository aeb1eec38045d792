"""Two-level models in Gelman & Hill's notation: the translation to an lme4 formula and a
view of the fitted model with level-1 and level-2 coefficients, pooling and R²."""

from .model import TwoLevelFit
from .spec import TwoLevelSpec, check_group_constant, group_level_columns, translate

__all__ = [
    "TwoLevelFit",
    "TwoLevelSpec",
    "check_group_constant",
    "group_level_columns",
    "translate",
]
