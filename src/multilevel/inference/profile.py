"""The search of a likelihood profile, shared by the linear and generalized models: its
limits (roots of ζ = ±z, or lme4's grid of profile points and its splines).

For a parameter ψ, ζ(ψ) = sign(ψ - ψ̂) sqrt(min_{other parameters} d(ψ, ...) - d̂), d the
deviance (-2 log L). A subclass sets the parameters' ``names`` (the variance parameters
first, then the fixed effects), their estimates ``vhat`` (variance parameters) and ``beta``,
``se`` (the fixed effects' SEs), per variance parameter ``kind`` ("sd", "cor", "sigma"),
``lower``, ``upper``, ``scale`` and ``cor_undefined``, the deviance at the optimum ``base``,
and defines :meth:`zeta`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import MultilevelError
from .distributions import chi2_ppf, norm_ppf


def check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise MultilevelError(f"level must be a number between 0 and 1, not {level!r}")
    return float(level)


class ProfileSearch:
    """The limits of a likelihood profile (module docstring)."""

    names: list[str]
    var_names: list[str]
    base: float

    def __init__(self):
        self._cache: dict[str, list[tuple[float, np.ndarray]]] = {}
        self._points: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.evaluations = 0

    def zeta(self, name: str, value: float) -> float:
        raise NotImplementedError

    def _start(self, name: str, x: float, default: np.ndarray) -> np.ndarray:
        pts = self._cache.get(name)
        if not pts:
            return default
        return min(pts, key=lambda p: abs(p[0] - x))[1]

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

    def interval(self, name: str, level: float = 0.95, exact: bool = True) -> tuple[float, float]:
        """(lower, upper) where ζ = ∓Φ⁻¹((1+level)/2), or the parameter's bound (0 for an SD,
        ±1 for a correlation) where the profile does not get there.

        ``exact=True``: each limit is a root of ζ, found to ~1e-10. ``exact=False``: lme4's
        way, the profile points of :meth:`points` interpolated with lme4's splines (off by up
        to ~1e-2 where the profile has a kink or a plateau, e.g. where another SD reaches 0)."""
        level = check_level(level)
        target = float(norm_ppf((1 + level) / 2))
        i = self._index(name)
        nv = len(self.var_names)
        if i < nv and self.cor_undefined[i]:
            return (-1.0, 1.0)  # a correlation with an SD of 0 is not identified
        lo, hi = (self.lower[i], self.upper[i]) if i < nv else (-np.inf, np.inf)
        if not exact:
            x, z = self.points(name)
            lims = back_spline_predict(x, z, np.array([-target, target]))
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


def back_spline_predict(x: np.ndarray, z: np.ndarray, at: np.ndarray) -> np.ndarray:
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
