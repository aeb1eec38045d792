"""The public model class of an lme4 formula, with every method a user calls.

:class:`LinearMixedModel` is :class:`~multilevel.model.LinearMixedFit` (the estimates and
everything read off the factorization) plus the methods that reach the layers above it:
tests and intervals (:mod:`multilevel.inference`), the summary, figures and fit files
(:mod:`multilevel.present`); :class:`~multilevel.twolevel_models.TwoLevelModel` is the same
for the two-level form. Each method is one call; nothing is computed here. The layers a
method reaches are imported when it is first called, so that a fit and its summary load no
more than they use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .model import LinearMixedFit
from .present.summary import summary_text
from .version import __version__

if TYPE_CHECKING:
    from .glmm_models import GeneralizedLinearMixedModel
    from .inference.bootstrap import BootstrapResult
    from .twolevel_models import TwoLevelModel


class LinearMixedModel(LinearMixedFit):
    """The result of :func:`multilevel.fit` for an lme4 formula. Attribute names follow lme4
    (``fixef``, ``ranef``, ``varcorr``, ``theta``, ``sigma``, ``objective``); see
    :class:`~multilevel.model.LinearMixedFit` for the estimates."""

    def test(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """t tests of the fixed effects with Satterthwaite or Kenward-Roger denominator
        degrees of freedom: Estimate, Std. Error, df, t value, Pr(>|t|)."""
        from .inference.ftests import fixef_tests

        return fixef_tests(self, ddf=ddf)

    def anova(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Type III F tests, one per fixed-effects term (lmerTest's ``anova``)."""
        from .inference.ftests import anova_type3

        return anova_type3(self, ddf=ddf)

    def confint(self, method: str = "profile", level: float = 0.95, **kwargs) -> pd.DataFrame:
        """Confidence intervals for every parameter (random-effect SDs and correlations, σ,
        fixed effects): ``method`` is "wald", "profile" or "boot"."""
        from .inference.intervals import confint

        return confint(self, method=method, level=level, **kwargs)

    def bootstrap(self, n: int = 1000, seed: int | None = None, **kwargs) -> BootstrapResult:
        """Parametric bootstrap: simulate from the fit, refit, collect the estimates."""
        from .inference.bootstrap import bootstrap

        return bootstrap(self, n=n, seed=seed, **kwargs)

    def save(self, path) -> None:
        """Write the fit to a file that :func:`multilevel.load` reads (see
        :mod:`multilevel.present.io` for the format)."""
        from .present import io

        io.save(self, path, __version__)

    def summary(self) -> str:
        """lme4-style summary text."""
        return summary_text(self)

    def plot_caterpillar(self, **kwargs):
        """The conditional modes with intervals (:func:`multilevel.present.plots.
        plot_caterpillar`)."""
        from .present import plots

        return plots.plot_caterpillar(self, **kwargs)

    def __repr__(self) -> str:
        return self.summary()


def load(path) -> LinearMixedModel | TwoLevelModel | GeneralizedLinearMixedModel:
    """Read a fit written by ``fit.save(path)``."""
    from .glmm_models import GeneralizedLinearMixedModel
    from .present import io
    from .twolevel_models import TwoLevelModel

    return io.load(path, LinearMixedModel, TwoLevelModel, GeneralizedLinearMixedModel,
                   __version__)  # fmt: skip
