"""The public class of a binomial or Poisson mixed model: the fit plus the methods that
reach the layers above it (intervals, the summary)."""

from __future__ import annotations

import pandas as pd

from .model.glmm import GeneralizedLinearMixedFit
from .present.glmm_summary import glmm_summary_text


class GeneralizedLinearMixedModel(GeneralizedLinearMixedFit):
    """The result of ``multilevel.fit(..., family="binomial" | "poisson")``; see
    :class:`~multilevel.model.glmm.GeneralizedLinearMixedFit`."""

    def confint(self, method: str = "wald", level: float = 0.95, parm=None, **kw) -> pd.DataFrame:
        """Wald (fixed effects), likelihood-profile or bootstrap (all parameters)
        intervals, rows labelled as lme4's; see :mod:`multilevel.inference.glmm_intervals`."""
        from .inference.glmm_intervals import glmm_confint

        return glmm_confint(self, method=method, level=level, parm=parm, **kw)

    def bootstrap(self, n: int = 1000, seed: int | None = None, workers: int = 1, progress=None):
        """Parametric bootstrap (:mod:`multilevel.inference.glmm_bootstrap`)."""
        from .inference.glmm_bootstrap import glmm_bootstrap

        return glmm_bootstrap(self, n=n, seed=seed, workers=workers, progress=progress)

    def save(self, path) -> None:
        """Write the fit to a file that :func:`multilevel.load` reads (see
        :mod:`multilevel.present.io` for the format)."""
        from .present import io
        from .version import __version__

        io.save(self, path, __version__)

    def summary(self) -> str:
        """lme4-style summary text (z tests)."""
        return glmm_summary_text(self)

    def __repr__(self) -> str:
        return self.summary()
