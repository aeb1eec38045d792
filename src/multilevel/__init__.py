"""multilevel: multilevel (hierarchical, mixed-effects) regression, exact and fast.

>>> import multilevel
>>> m = multilevel.fit("Reaction ~ Days + (Days | Subject)", multilevel.datasets.load("sleepstudy"))
"""

from . import datasets
from .api import fit
from .compare import anova
from .errors import DataError, FormulaError, MultilevelError
from .io import load
from .results import LinearMixedModel
from .simulate_schools import simulate_schools
from .twolevel import TwoLevelModel

__all__ = [
    "fit",
    "load",
    "anova",
    "datasets",
    "LinearMixedModel",
    "TwoLevelModel",
    "simulate_schools",
    "MultilevelError",
    "FormulaError",
    "DataError",
]
__version__ = "0.1.0"
