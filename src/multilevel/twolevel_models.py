"""The public class of a two-level fit: :class:`~multilevel.twolevel.TwoLevelFit` plus the
methods that reach the presentation layer (summary, figures, fit files)."""

from __future__ import annotations

from .present import io, plots
from .present.twolevel_summary import two_level_summary
from .twolevel import TwoLevelFit
from .version import __version__


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
