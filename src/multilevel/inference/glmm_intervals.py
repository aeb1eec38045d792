"""Confidence intervals of a generalized linear mixed model's parameters, as lme4's
``confint`` of a ``glmer`` fit.

Parameters, in lme4's order and names: the variance parameters of each term
(``sd_<term>|<group>``, ``cor_<row>.<col>|<group>``; no ``sigma``), then the fixed effects.

* ``wald``: β̂_j ± z SE(β̂_j), z = Φ⁻¹((1 + level)/2); NaN for the variance parameters.
* ``profile``: likelihood-profile intervals of the fit's own objective d (the Laplace or AGQ
  -2 log L in (θ, β)): for a parameter ψ, ζ(ψ) = sign(ψ - ψ̂) sqrt(min d(ψ, ...) - d̂), the
  minimum over all the other variance parameters (on the SD/correlation scale) and fixed
  effects, by BOBYQA from the nearest profile point; the limits are the roots of ζ = ±z
  (:class:`~multilevel.inference.profile.ProfileSearch`). An SD whose profile stays below
  z down to 0 gets the lower limit 0; a correlation, ±1.
* ``boot``: intervals of a parametric bootstrap
  (:mod:`multilevel.inference.glmm_bootstrap`), percentile by default.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..engine.layout import sdcor_from_theta, theta_for_deviance, theta_from_sdcor
from ..errors import MultilevelError
from ..fitting.optimize import minimize_from
from .distributions import norm_ppf
from .profile import ProfileSearch, check_level
from .varpar import perc_label, variance_names

METHODS = ("wald", "profile", "boot")


class GlmmProfile(ProfileSearch):
    """The likelihood profile of a GLMM fit (module docstring): ``zeta(name, value)``,
    ``interval(name, level)``, ``points(name)``."""

    def __init__(self, fit):
        super().__init__()
        self.fit = fit
        self.dev = fit.problem.deviance
        self.layout = self.dev.layout
        self.z_scale = fit.factorization.deviance.cp.z_scale
        self.base = float(fit.objective)
        self.var_names = variance_names(self.layout, fit.schema.terms)
        self.names = self.var_names + list(fit.fixef.index)
        lay = self.layout
        v = sdcor_from_theta(lay, fit.theta, 1.0)[:-1]
        self.kind = np.array(["sd" if r == c else "cor" for r, c in zip(lay.row, lay.col)])  # noqa: B905
        self.cor_undefined = np.isnan(v)
        v[np.isnan(v)] = 0.0
        self.vhat = v
        self.lower = np.where(self.kind == "cor", -1.0, 0.0)
        self.upper = np.where(self.kind == "cor", 1.0, np.inf)
        self.scale = np.where(self.kind == "cor", 1.0, np.maximum(np.abs(v), 1e-3))
        self.beta = fit.fixef.to_numpy()
        self.se = fit.fixef_se.to_numpy()
        nb = len(self.beta)
        self.p_hat = np.concatenate([v, self.beta])
        self.p_lower = np.concatenate([self.lower, np.full(nb, -np.inf)])
        self.p_upper = np.concatenate([self.upper, np.full(nb, np.inf)])
        self.p_scale = np.concatenate([self.scale, np.where(self.se > 0, self.se, 1.0)])

    def deviance(self, params: np.ndarray) -> float:
        """The fit's objective at ``params`` = (SDs and correlations, β)."""
        nv = len(self.var_names)
        theta = theta_from_sdcor(self.layout, np.append(params[:nv], 1.0))
        if theta is None:
            return math.inf
        self.evaluations += 1
        x = np.concatenate([theta_for_deviance(self.layout, theta, self.z_scale), params[nv:]])
        return self.dev(x)

    def zeta(self, name: str, value: float) -> float:
        """ζ of parameter ``name`` at ``value`` (module docstring)."""
        i = self._index(name)
        value = float(value)
        if not self.p_lower[i] <= value <= self.p_upper[i]:
            raise MultilevelError(
                f"{name} must be within [{self.p_lower[i]}, {self.p_upper[i]}], not {value}"
            )
        free = np.arange(len(self.p_hat)) != i
        sc = self.p_scale[free]
        params = self.p_hat.copy()
        params[i] = value

        def f(u):
            params[free] = u * sc
            return self.deviance(params)

        start = self._start(name, value, self.p_hat[free] / sc)
        u, fx, _ = minimize_from(
            f, start, self.p_lower[free] / sc, self.p_upper[free] / sc, step=0.1,
            xtol_abs=1e-9,
        )  # fmt: skip
        self._cache.setdefault(name, []).append((value, u))
        return self._signed(value - self.p_hat[i], fx)


def glmm_confint(fit, method: str = "wald", level: float = 0.95, parm=None, **kw) -> pd.DataFrame:
    """Confidence intervals (rows: the parameters in lme4's order; columns: the lower and
    upper limits labelled as lme4's, e.g. "2.5 %" and "97.5 %"); ``parm``: a name or list
    of names (default all). For "boot", ``n`` (default 1000), ``seed``, ``workers`` and
    ``progress`` go to :func:`~multilevel.inference.glmm_bootstrap.glmm_bootstrap` and
    ``boot_type`` ("perc", "basic" or "norm") picks the interval."""
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise MultilevelError(
            f"confint of a {fit.family} model: method must be 'wald', 'profile' or 'boot', "
            f"not {method!r}"
        )
    method = method.lower()
    allowed = {"n", "seed", "workers", "progress", "boot_type"} if method == "boot" else set()
    if set(kw) - allowed:
        raise MultilevelError(
            f"confint(method={method!r}) got unknown argument(s) {sorted(set(kw) - allowed)}"
        )
    level = check_level(level)
    a = (1 - level) / 2
    cols = [perc_label(a), perc_label(1 - a)]
    names = variance_names(fit.problem.deviance.layout, fit.schema.terms) + list(fit.fixef.index)
    if parm is None:
        sel = names
    else:
        wanted = [parm] if isinstance(parm, str) else list(parm)
        bad = [p for p in wanted if p not in names]
        if bad:
            raise MultilevelError(f"no parameter '{bad[0]}'; the parameters are {', '.join(names)}")
        sel = [p for p in names if p in set(wanted)]
    if method == "boot":
        from .glmm_bootstrap import glmm_bootstrap

        boot_type = kw.pop("boot_type", "perc")
        return glmm_bootstrap(fit, **kw).confint(level, type=boot_type).loc[sel]
    if method == "boot":
        from .glmm_bootstrap import glmm_bootstrap

        boot_type = kw.pop("boot_type", "perc")
        return glmm_bootstrap(fit, **kw).confint(level, type=boot_type).loc[sel]
    out = pd.DataFrame(np.nan, index=pd.Index(sel), columns=cols)
    if method == "wald":
        z = float(norm_ppf(1 - a))
        for name in sel:
            if name in fit.fixef.index:
                b, se = fit.fixef[name], fit.fixef_se[name]
                out.loc[name] = [b - z * se, b + z * se]
        return out
    prof = GlmmProfile(fit)
    for name in sel:
        out.loc[name] = prof.interval(name, level)
    return out
