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
import warnings

import numpy as np
import pandas as pd

from ..engine import BlockPattern, ProfiledDeviance
from ..engine.layout import sdcor_from_theta, theta_for_deviance, theta_from_sdcor
from ..errors import MultilevelError
from ..fitting.optimize import minimize_from
from .bootstrap import bootstrap
from .distributions import chi2_ppf, norm_ppf
from .varpar import param_names, perc_label, varpar_names

METHODS = ("wald", "profile", "boot")


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise MultilevelError(f"level must be a number between 0 and 1, not {level!r}")
    return float(level)


def _labels(level: float) -> list[str]:
    a = (1 - level) / 2
    return [perc_label(a), perc_label(1 - a)]


class Profile:
    """The likelihood profile of a fit (ML deviance; a REML fit is refitted by ML first).

    ``zeta(name, value)`` is ζ of one parameter at one value; ``interval(name, level)`` its
    profile interval. Parameter names as :func:`multilevel.bootstrap.param_names`."""

    def __init__(self, fit):
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
        self._cache: dict[str, list[tuple[float, np.ndarray]]] = {}
        self._fixed: dict[int, tuple] = {}
        self._points: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.evaluations = 0

    # -- the deviance with σ not profiled ------------------------------------------------
    def deviance(self, v: np.ndarray) -> float:
        """ML deviance at σ-scale parameters ``v`` (SDs, correlations, σ last)."""
        theta = theta_from_sdcor(self.layout, v)
        if theta is None:
            return math.inf
        fac = self.dev.factor(theta_for_deviance(self.layout, theta, self.dev.cp.z_scale))
        self.evaluations += 1
        return math.inf if fac is None else fac.criterion(v[-1])

    def _start(self, name: str, x: float, default: np.ndarray) -> np.ndarray:
        pts = self._cache.get(name)
        if not pts:
            return default
        return min(pts, key=lambda p: abs(p[0] - x))[1]

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

    def _signed(self, dx: float, fx: float) -> float:
        if not np.isfinite(fx):
            return math.nan
        d = fx - self.base
        if d < -1e-6:
            warnings.warn(
                f"profiling found a lower deviance than the fit's ({d:.3g}): the fit may "
                "not be at its optimum",
                RuntimeWarning,
                stacklevel=4,
            )
        return math.copysign(math.sqrt(max(d, 0.0)), dx)

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

    # -- public ------------------------------------------------------------------------
    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise MultilevelError(
                f"no parameter '{name}'; the parameters are {', '.join(self.names)}"
            ) from None

    def estimate(self, name: str) -> float:
        """The ML estimate of a parameter (where ζ = 0)."""
        i = self._index(name)
        nv = len(self.var_names)
        return float(self.vhat[i]) if i < nv else float(self.beta[i - nv])

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

    def interval(self, name: str, level: float = 0.95, exact: bool = True) -> tuple[float, float]:
        """(lower, upper) where ζ = ∓Φ⁻¹((1+level)/2), or the parameter's bound (0 for an SD,
        ±1 for a correlation) where the profile does not get there.

        ``exact=True``: each limit is a root of ζ, found to ~1e-10. ``exact=False``: lme4's
        way, the profile points of :meth:`points` interpolated with lme4's splines (off by up
        to ~1e-2 where the profile has a kink or a plateau, e.g. where another SD reaches 0)."""
        level = _check_level(level)
        target = float(norm_ppf((1 + level) / 2))
        i = self._index(name)
        nv = len(self.var_names)
        if i < nv and self.cor_undefined[i]:
            return (-1.0, 1.0)  # a correlation with an SD of 0 is not identified
        lo, hi = (self.lower[i], self.upper[i]) if i < nv else (-np.inf, np.inf)
        if not exact:
            x, z = self.points(name)
            lims = _back_spline_predict(x, z, np.array([-target, target]))
            if np.isnan(lims[0]) and i < nv:
                lims[0] = lo
            if np.isnan(lims[1]) and i < nv:
                lims[1] = hi
            return float(lims[0]), float(lims[1])
        est = self.estimate(name)
        if i < nv:
            step = 0.1 * self.scale[i] if self.kind[i] != "cor" else 0.1 * max(1 - abs(est), 0.05)
        else:
            step = self.se[i - nv] if self.se[i - nv] > 0 else max(abs(est), 1.0) * 0.1
        out = []
        for sgn, bound in ((-1.0, lo), (1.0, hi)):
            out.append(self._crossing(name, est, sgn * step, target, bound))
        return out[0], out[1]

    def points(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The profile as lme4's ``profile()`` computes it: from the estimate both ways in
        steps of about δ = c/8 in ζ, c = sqrt(χ²_{0.99}(number of parameters)), until |ζ| > c
        or the parameter's bound; the first step is 1% of the estimate (variance parameters)
        or δ standard errors (fixed effects). Returns (values, ζ), sorted by value."""
        if name in self._points:
            return self._points[name]
        i = self._index(name)
        nv = len(self.var_names)
        cutoff = math.sqrt(chi2_ppf(0.99, len(self.names)))
        delta = cutoff / 8
        est = self.estimate(name)
        if i < nv:
            lowcut, upcut = float(self.lower[i]), float(self.upper[i])
            shift = 1e-3 if est == 0 else est * 1.01
            if not lowcut <= shift <= upcut:
                shift = est - 0.01 * abs(est)
        else:
            lowcut, upcut = -np.inf, np.inf
            shift = est + delta * self.se[i - nv]
        first = (shift, self.zeta(name, shift))
        rows = [(est, 0.0), first]
        up = self._fill([(est, 0.0), first], name, lowcut, upcut, cutoff, delta)
        down = (
            self._fill([first, (est, 0.0)], name, lowcut, upcut, cutoff, delta)
            if est > lowcut
            else []
        )
        pts = {x: z for x, z in rows + up + down if not np.isnan(z)}
        x = np.array(sorted(pts))
        z = np.array([pts[v] for v in x])
        self._points[name] = (x, z)
        return x, z

    def _fill(self, rows, name, lowcut, upcut, cutoff, delta, maxpts=100):
        """lme4's ``fillmat``: extend ``rows`` (value, ζ) by secant steps of δ in ζ."""
        rows = list(rows)
        while len(rows) < maxpts:
            (p0, z0), (p1, z1) = rows[-2], rows[-1]
            if not (lowcut < p1 < upcut) or np.isnan(z1) or abs(z1) > cutoff:
                break
            num, den = p1 - p0, z1 - z0
            if den == 0:
                step = 1e-6
            else:
                step = delta * num / den
                if step < 0:
                    step = 1e-6
                elif len(rows) > 2 and abs(step) > 10 * abs(num):
                    step = math.copysign(10 * abs(num), step)
            nxt = min(upcut, max(lowcut, p1 + math.copysign(1.0, num) * step))
            rows.append((nxt, self.zeta(name, nxt)))
        return rows[2:]

    def _crossing(self, name, est, step, target, bound) -> float:
        if est == bound:
            return float(bound)
        sgn = math.copysign(1.0, step)

        def g(x):
            return abs(self.zeta(name, x)) - target

        xs, zs = [est], [0.0]
        x = est + step
        for _ in range(200):
            at_bound = np.isfinite(bound) and (x - bound) * sgn >= 0
            if at_bound:
                x = float(bound)
            z = abs(self.zeta(name, x))
            if np.isnan(z):
                return math.nan
            if z >= target:
                a = xs[-1]
                tol = 1e-10 * max(abs(a), abs(x), self._scale_of(name))
                from scipy.optimize import brentq

                return float(brentq(g, a, x, xtol=tol, rtol=4 * np.finfo(float).eps))
            if at_bound:
                return float(bound)
            xs.append(x)
            zs.append(z)
            dx, dz = xs[-1] - xs[-2], zs[-1] - zs[-2]
            if dz > 1e-9:
                nxt = min(max((target - z) / dz * 1.1, 0.5), 10.0) * dx
            else:
                nxt = 2.0 * dx
            x = x + nxt
        warnings.warn(f"the profile of {name} did not reach ζ = {target:.3g}", stacklevel=3)
        return math.nan

    def _scale_of(self, name: str) -> float:
        i = self._index(name)
        nv = len(self.var_names)
        return float(self.scale[i]) if i < nv else float(self.se[i - nv])


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
    level = _check_level(level)
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


def _back_spline_predict(x: np.ndarray, z: np.ndarray, at: np.ndarray) -> np.ndarray:
    """lme4's interpolation of a profile: the natural cubic spline of ζ on the parameter
    (R's ``interpSpline``), inverted as R's ``backSpline`` does (piecewise cubic Hermite in
    ζ with slopes 1/ζ'(x) at the knots, quadratic end pieces), evaluated at ζ = ``at``.
    NaN outside the profiled range of ζ. Falls back to linear interpolation (as lme4) when
    the spline is not monotone."""
    at = np.asarray(at, dtype=float)
    nan = np.full(at.shape, np.nan)
    if len(x) < 4:
        return nan if len(x) < 2 else _linear(x, z, at)
    from scipy.interpolate import CubicSpline

    d = CubicSpline(x, z, bc_type="natural")(x, 1)
    kdiff, adiff = np.diff(x), np.diff(z)
    if not ((adiff > 0).all() or (adiff < 0).all()) or (d == 0).any():
        return _linear(x, z, at)
    nk = len(x)
    b1, b2 = x.astype(float), 1.0 / d
    b3, b4 = np.zeros(nk), np.zeros(nk)
    for i in range(nk - 1):
        a = np.array([[adiff[i] ** 2, adiff[i] ** 3], [2 * adiff[i], 3 * adiff[i] ** 2]])
        rhs = np.array([kdiff[i] - adiff[i] * b2[i], b2[i + 1] - b2[i]])
        b3[i], b4[i] = np.linalg.solve(a, rhs)
    if nk > 2:
        b4[0] = b4[nk - 2] = 0.0
        a = np.array([[adiff[0], adiff[0] ** 2], [1.0, 2 * adiff[0]]])
        b2[0], b3[0] = np.linalg.solve(a, np.array([kdiff[0], 1.0 / d[1]]))
        b3[nk - 2] = (kdiff[-1] - adiff[-1] * b2[nk - 2]) / adiff[-1] ** 2
    if b3[0] > 0:
        b3[0], b2[0] = 0.0, kdiff[0] / adiff[0]
    if b3[nk - 2] < 0:
        b3[nk - 2], b2[nk - 2] = 0.0, kdiff[-1] / adiff[-1]
    knots = z.astype(float)
    if adiff[0] < 0:  # as R: the rows are reversed with the knots
        knots, b1, b2, b3, b4 = knots[::-1], b1[::-1], b2[::-1], b3[::-1], b4[::-1]
    out = nan.copy()
    for j, v in enumerate(at):
        if not knots[0] <= v <= knots[-1]:
            continue
        i = 0 if v == knots[0] else int(np.searchsorted(knots, v, side="left")) - 1
        t = v - knots[i]
        out[j] = b1[i] + t * (b2[i] + t * (b3[i] + t * b4[i]))
    return out


def _linear(x: np.ndarray, z: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Linear interpolation of the parameter in ζ (NaN outside the range), lme4's fallback."""
    order = np.argsort(z)
    zs, xs = z[order], x[order]
    return np.where((at >= zs[0]) & (at <= zs[-1]), np.interp(at, zs, xs), np.nan)
