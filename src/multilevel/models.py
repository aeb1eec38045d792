"""The public model classes: the fitted models with every method a user calls.

:class:`LinearMixedModel` is :class:`~multilevel.model.LinearMixedFit` (the estimates and
everything read off the factorization) plus the methods that reach the layers above it:
tests and intervals (:mod:`multilevel.inference`), the summary, figures and fit files
(:mod:`multilevel.present`). :class:`TwoLevelModel` is the same over
:class:`~multilevel.twolevel.TwoLevelFit`. Each method is one call; nothing is computed here.
"""

from __future__ import annotations

import pandas as pd

from .inference.bootstrap import BootstrapResult, bootstrap
from .inference.ftests import anova_type3, fixef_tests
from .inference.intervals import confint
from .model import LinearMixedFit
from .present import io, plots
from .present.summary import summary_text
from .present.twolevel_summary import two_level_summary
from .twolevel import TwoLevelFit
from .version import __version__


class LinearMixedModel(LinearMixedFit):
    """The result of :func:`multilevel.fit` for an lme4 formula. Attribute names follow lme4
    (``fixef``, ``ranef``, ``varcorr``, ``theta``, ``sigma``, ``objective``); see
    :class:`~multilevel.model.LinearMixedFit` for the estimates."""

    def test(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """t tests of the fixed effects with Satterthwaite or Kenward-Roger denominator
        degrees of freedom: Estimate, Std. Error, df, t value, Pr(>|t|)."""
        return fixef_tests(self, ddf=ddf)

    def anova(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Type III F tests, one per fixed-effects term (lmerTest's ``anova``)."""
        return anova_type3(self, ddf=ddf)

    def confint(self, method: str = "profile", level: float = 0.95, **kwargs) -> pd.DataFrame:
        """Confidence intervals for every parameter (random-effect SDs and correlations, σ,
        fixed effects): ``method`` is "wald", "profile" or "boot"."""
        return confint(self, method=method, level=level, **kwargs)

    def bootstrap(self, n: int = 1000, seed: int | None = None, **kwargs) -> BootstrapResult:
        """Parametric bootstrap: simulate from the fit, refit, collect the estimates."""
        return bootstrap(self, n=n, seed=seed, **kwargs)

    def save(self, path) -> None:
        """Write the fit to a file that :func:`multilevel.load` reads (see
        :mod:`multilevel.present.io` for the format)."""
        io.save(self, path, __version__)

    def summary(self) -> str:
        """lme4-style summary text."""
        return summary_text(self)

    def plot_caterpillar(self, **kwargs):
        """The conditional modes with intervals (:func:`multilevel.present.plots.
        plot_caterpillar`)."""
        return plots.plot_caterpillar(self, **kwargs)

    def __repr__(self) -> str:
        return self.summary()


class TwoLevelModel(TwoLevelFit):
    """A fitted two-level model, from ``multilevel.fit("y ~ x", data, group="school",
    group_formula="~ u")``; see :class:`~multilevel.twolevel.TwoLevelFit`."""

    def save(self, path) -> None:
        """Write the fit to a file that :func:`multilevel.load` reads."""
        io.save(self, path, __version__)

    def summary(self, max_groups: int = 10) -> str:
        """The model in the seed's notation with its estimates."""
        return two_level_summary(self, max_groups=max_groups)

    def plot_pooling(self, groups=None, **kwargs):
        """Complete, no and partial pooling lines for some groups (G&H figure 12.4)."""
        return plots.plot_pooling(self, groups=groups, **kwargs)

    def plot_group_regression(self, coefficient: str | None = None, **kwargs):
        """The group coefficients against a group-level predictor (G&H figure 12.6)."""
        return plots.plot_group_regression(self, coefficient=coefficient, **kwargs)

    def plot_shrinkage(self, coefficient: str | None = None, **kwargs):
        """No-pooling against partial-pooling estimates by group size."""
        return plots.plot_shrinkage(self, coefficient=coefficient, **kwargs)

    def plot_caterpillar(self, **kwargs):
        """The conditional modes of the random effects with intervals."""
        return plots.plot_caterpillar(self, **kwargs)

    def plot_overview(self, **kwargs):
        """The four figures in one (the CLI's ``--plot``)."""
        return plots.plot_overview(self, **kwargs)

    def __repr__(self) -> str:
        return self.summary()


def load(path) -> LinearMixedModel | TwoLevelModel:
    """Read a fit written by ``fit.save(path)``."""
    return io.load(path, LinearMixedModel, TwoLevelModel, __version__)
