"""Confidence intervals for all parameters of a linear mixed model, as lme4's ``confint``.

Parameters, in lme4's order and names: the σ-scale variance parameters of each term
(``sd_<term>|<group>``, ``cor_<row>.<col>|<group>``), ``sigma``, then the fixed effects.

* ``wald``: β̂_j ± z SE(β̂_j) with z = Φ⁻¹((1+level)/2) and the fit's own standard errors;
  NaN for the variance parameters (as lme4).
* ``profile``: likelihood-profile intervals. As lme4 (``profile.merMod`` refits a REML fit by
  ML first), the profile is of the ML deviance: for a parameter ψ,

      ζ(ψ) = sign(ψ - ψ̂) sqrt(min_{other parameters} d(ψ, ...) - d̂),

  and the interval is where ζ = ±z. A variance parameter ψ is held fixed on the σ-scale while
  the others and σ move, through the deviance with σ not profiled,

      d(θ, σ) = log|L_θ|² + pwrss(θ)/σ² + n log(2πσ²);

  a fixed effect β_j is held fixed through an offset (y - β_j x_j, column j out of X) and the
  profiled ML deviance is minimised over θ (σ and the other β profiled out). An SD whose
  profile stays below z down to 0 gets the lower limit 0; a correlation, ±1 likewise. lme4
  interpolates a grid of profile points with splines; here each limit is by default a root
  of ζ = ±z found to ~1e-10 (``exact=False`` reproduces lme4's grid and splines). The two
  agree to ~1e-4 where the profile is smooth; where it has a kink or a plateau (another SD
  reaching 0 or a correlation reaching ±1 along the profile) lme4's splines can be off by
  ~1e-2 (radon's correlation: lme4's lower limit -0.5556 has |ζ| = 1.938, not 1.960).
* ``boot``: percentile intervals of a parametric bootstrap (:mod:`multilevel.inference.bootstrap`),
  replicates refitted by the fit's own criterion (as lme4's ``bootMer``).

The result is a DataFrame indexed by parameter name with lme4's column labels, e.g.
``"2.5 %"`` and ``"97.5 %"`` for level 0.95 (lower limit first).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..engine import BlockPattern, ProfiledDeviance
from ..engine.layout import sdcor_from_theta, theta_for_deviance, theta_from_sdcor
from ..errors import MultilevelError
from ..fitting.optimize import minimize_from
from .bootstrap import bootstrap
from .distributions import norm_ppf
from .profile import ProfileSearch, check_level
from .varpar import param_names, perc_label, varpar_names

METHODS = ("wald", "profile", "boot")


def _labels(level: float) -> list[str]:
    a = (1 - level) / 2
    return [perc_label(a), perc_label(1 - a)]


class Profile(ProfileSearch):
    """The likelihood profile of a fit (ML deviance; a REML fit is refitted by ML first).

    ``zeta(name, value)`` is ζ of one parameter at one value; ``interval(name, level)`` its
    profile interval. Parameter names as :func:`multilevel.bootstrap.param_names`."""

    def __init__(self, fit):
        super().__init__()
        self.fit = fit
        ml = fit.refit(reml=False) if fit.reml else fit
        self.ml = ml
        self.dev = ml.deviance
        self.layout = ml.deviance.layout
        self.n = ml.nobs
        self.base = float(ml.objective)
        self.var_names = varpar_names(fit)
        self.fix_names = list(fit.fixef.index)
        self.names = self.var_names + self.fix_names
        lay = self.layout
        v = sdcor_from_theta(lay, ml.theta, ml.sigma)
        diag = lay.row == lay.col
        self.kind = np.array(["sd" if d else "cor" for d in diag] + ["sigma"])
        self.cor_undefined = np.isnan(v)
        v[np.isnan(v)] = 0.0
        self.vhat = v
        self.lower = np.where(self.kind == "cor", -1.0, 0.0)
        self.upper = np.where(self.kind == "cor", 1.0, np.inf)
        self.scale = np.where(
            self.kind == "cor", 1.0, np.maximum(np.abs(v), 1e-3 * max(ml.sigma, 1e-12))
        )
        self.beta = ml.fixef.to_numpy()
        self.se = ml.fixef_se.to_numpy()
        self._fixed: dict[int, tuple] = {}

    # -- the deviance with σ not profiled ------------------------------------------------
    def deviance(self, v: np.ndarray) -> float:
        """ML deviance at σ-scale parameters ``v`` (SDs, correlations, σ last)."""
        theta = theta_from_sdcor(self.layout, v)
        if theta is None:
            return math.inf
        fac = self.dev.factor(theta_for_deviance(self.layout, theta, self.dev.cp.z_scale))
        self.evaluations += 1
        return math.inf if fac is None else fac.criterion(v[-1])

    def _zeta_var(self, w: int, x: float) -> float:
        name = self.names[w]
        free = np.arange(len(self.vhat)) != w
        sc = self.scale[free]
        v = self.vhat.copy()
        v[w] = x

        def f(u):
            v[free] = u * sc
            return self.deviance(v)

        start = self._start(name, x, self.vhat[free] / sc)
        u, fx, _ = minimize_from(
            f, start, self.lower[free] / sc, self.upper[free] / sc, step=0.1, xtol_abs=1e-9
        )
        self._cache.setdefault(name, []).append((x, u))
        return self._signed(x - self.vhat[w], fx)

    def _fixed_model(self, j: int):
        """Deviance pieces for β_j held fixed: the design without column j (β_j x_j goes
        into the offset), its block pattern and blocks, and its ML deviance."""
        if j not in self._fixed:
            problem = self.ml.problem
            design = problem.pattern.design
            xj = design.X[:, j].copy()
            design_j = design.without_column(j)
            pattern = BlockPattern(design_j, problem.response.weights)
            response = problem.response.with_extra_offset(self.beta[j] * xj)
            cp = pattern.crossproducts(response)
            dev = ProfiledDeviance(cp, design_j.correlated, reml=False)
            self._fixed[j] = (pattern, cp, dev, xj)
        return self._fixed[j]

    def _zeta_fixed(self, j: int, b: float) -> float:
        pattern, cp, dev, xj = self._fixed_model(j)
        response = self.ml.problem.response.with_extra_offset(b * xj)
        devb = dev.with_crossproducts(pattern.with_response(cp, response))
        name = self.names[len(self.var_names) + j]
        start = self._start(name, b, self.ml.factorization.theta)
        lay = self.layout

        def f(t):
            self.evaluations += 1
            return devb(t)

        th, fx, _ = minimize_from(
            f, start, lay.lower, step=np.maximum(0.1 * np.abs(start), 0.02), xtol_abs=1e-9
        )
        self._cache.setdefault(name, []).append((b, th))
        return self._signed(b - self.beta[j], fx)

    def zeta(self, name: str, value: float) -> float:
        """ζ of parameter ``name`` at ``value``: sign(value - ML estimate) times the square
        root of the rise of the minimised ML deviance."""
        i = self._index(name)
        nv = len(self.var_names)
        if i < nv:
            if not self.lower[i] <= value <= self.upper[i]:
                raise MultilevelError(
                    f"{name} must be within [{self.lower[i]}, {self.upper[i]}], not {value}"
                )
            return self._zeta_var(i, float(value))
        return self._zeta_fixed(i - nv, float(value))


def _select(names: list[str], parm) -> list[str]:
    if parm is None:
        return names
    if isinstance(parm, str):
        parm = [parm]
    bad = [p for p in parm if p not in names]
    if bad:
        raise MultilevelError(f"no parameter '{bad[0]}'; the parameters are {', '.join(names)}")
    return [p for p in names if p in set(parm)]


def confint(fit, method: str = "profile", level: float = 0.95, parm=None, **kw) -> pd.DataFrame:
    """Confidence intervals (rows: parameters in lme4's order; columns: lower and upper
    limit labelled as lme4, e.g. "2.5 %" and "97.5 %").

    ``method``: "wald", "profile" or "boot" (any case). ``parm``: a name or list of names
    (default all). For "profile", ``exact=False`` interpolates the profile as lme4 does
    instead of solving ζ = ±z (see :meth:`Profile.interval`). For "boot", ``n`` (default
    1000), ``seed``, ``workers`` and ``progress`` go to
    :func:`multilevel.bootstrap.bootstrap`, and ``boot_type`` ("perc", the default,
    "basic" or "norm", as lme4's ``boot.type``) picks the interval."""
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise MultilevelError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    method = method.lower()
    level = check_level(level)
    names = param_names(fit)
    sel = _select(names, parm)
    cols = _labels(level)
    if method == "boot":
        unknown = set(kw) - {"n", "seed", "workers", "progress", "boot_type"}
        if unknown:
            raise MultilevelError(
                f"confint(method='boot') got unknown argument(s) {sorted(unknown)}"
            )
        boot_type = kw.pop("boot_type", "perc")
        res = bootstrap(fit, **kw)
        return res.confint(level, type=boot_type).loc[sel]
    exact = kw.pop("exact", True) if method == "profile" else True
    if kw:
        allowed = "'exact'" if method == "profile" else "none"
        raise MultilevelError(
            f"confint(method={method!r}) got unknown argument(s) {sorted(kw)} (allowed: {allowed})"
        )
    out = pd.DataFrame(np.nan, index=pd.Index(sel), columns=cols)
    if method == "wald":
        z = float(norm_ppf((1 + level) / 2))
        for name in sel:
            if name in fit.fixef.index:
                b, se = fit.fixef[name], fit.fixef_se[name]
                out.loc[name] = [b - z * se, b + z * se]
        return out
    prof = Profile(fit)
    for name in sel:
        out.loc[name] = prof.interval(name, level, exact=exact)
    return out
