"""multilevel: multilevel (hierarchical, mixed-effects) regression, exact and fast.

>>> import multilevel
>>> m = multilevel.fit("Reaction ~ Days + (Days | Subject)", multilevel.datasets.load("sleepstudy"))

The fitting, inference and presentation layers are loaded when first used, so that
``import multilevel`` costs little more than numpy and pandas.
"""

from importlib import import_module

from .errors import DataError, FormulaError, MultilevelError

# imported here, not lazily: the function shadows its module's name, and a lazy attribute
# would be the module or the function depending on what was imported first
from .simulate_schools import simulate_schools
from .version import __version__

_LAZY = {
    "fit": ("api", "fit"),
    "anova": ("api", "anova"),
    "load": ("models", "load"),
    "family": ("engine.family", "family"),
    "GeneralizedLinearMixedModel": ("glmm_models", "GeneralizedLinearMixedModel"),
    "LinearMixedModel": ("models", "LinearMixedModel"),
    "TwoLevelModel": ("twolevel_models", "TwoLevelModel"),
    "datasets": ("datasets", None),
}

__all__ = [
    "fit",
    "load",
    "anova",
    "datasets",
    "LinearMixedModel",
    "GeneralizedLinearMixedModel",
    "TwoLevelModel",
    "family",
    "simulate_schools",
    "MultilevelError",
    "FormulaError",
    "DataError",
    "__version__",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'multilevel' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = import_module(f".{module}", __name__)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
