"""Confidence intervals of a generalized linear mixed model's parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import MultilevelError
from .distributions import norm_ppf
from .varpar import perc_label


def wald_confint(fit, method: str = "wald", level: float = 0.95) -> pd.DataFrame:
    """Wald intervals β̂ ± z SE(β̂) of the fixed effects, z = Φ⁻¹((1 + level)/2); the variance
    parameters' rows (lme4's names) are NaN, as lme4 gives them."""
    if not isinstance(method, str) or method.lower() != "wald":
        raise MultilevelError(
            f"confint of a {fit.family} model: method must be 'wald' (profile and bootstrap "
            f"intervals of GLMMs are not available yet), not {method!r}"
        )
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise MultilevelError(f"level must be a number between 0 and 1, not {level!r}")
    a = (1 - level) / 2
    cols = [perc_label(a), perc_label(1 - a)]
    lay = fit.problem.deviance.layout
    names = []
    for t, r, c in zip(lay.term, lay.row, lay.col, strict=True):
        term = fit.schema.terms[t]
        if r == c:
            names.append(f"sd_{term.names[r]}|{term.group}")
        else:
            names.append(f"cor_{term.names[r]}.{term.names[c]}|{term.group}")
    z = float(norm_ppf(1 - a))
    out = pd.DataFrame(np.nan, index=pd.Index(names + list(fit.fixef.index)), columns=cols)
    for name in fit.fixef.index:
        b, se = fit.fixef[name], fit.fixef_se[name]
        out.loc[name] = [b - z * se, b + z * se]
    return out
