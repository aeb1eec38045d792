"""The generalized linear mixed fit: lme4's two stages, then a check that the optimum is one.

1. θ alone, β by PIRLS together with the modes (lme4's nAGQ = 0 objective; always Laplace),
   by :func:`~multilevel.fitting.optimize.minimize_theta` as a start only (one NEWUOA run
   from Λ = I to 1e-6, the starts off the boundary).
2. (θ, β) together, the modes by PIRLS given β (Laplace, or AGQ with nAGQ nodes), from
   stage 1's point: Newton's method on the Hessian by central differences
   (:func:`_newton_stage2`) where every θ is off its bound; else BOBYQA, starts off the
   boundary as in the linear model, and a Newton step on the Hessian at its optimum.

Converged means: PIRLS converged at the optimum, and the Newton step of the Hessian there
predicts a decrease below 1e-8 relative (or the projected gradient is below the tolerance).
vcov(β̂) is lme4's: twice the inverse of the objective's Hessian in (θ, β) at the optimum
(:func:`_hessian`), its β block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import ModelFrame
from ..engine import one_blas_thread
from ..engine.family import Family
from ..engine.pirls import GlmmDeviance, Modes
from .derivatives import ZERO_TOL
from .lmm import design_of, response_of
from .optimize import (
    DECREMENT_TOL,
    GRAD_TOL,
    OptimResult,
    minimize_from,
    minimize_theta,
    newton_decrement,
    on_boundary,
    projected_gradient,
)

#: stage 2's relative tolerance on the objective when a Newton step follows
STAGE2_FTOL_REL = 1e-12
#: Newton steps on stage 2's Hessian at most (the later ones from fresh gradients)
CHORD_STEPS = 3
#: the Hessian of the objective in (θ, β): central differences at steps 1e-3 |x_i| (1e-4 at
#: x_i ≈ 0), no extrapolation: the objective is smooth to ~1e-12 relative, so the
#: differences' rounding error (~1e-6 relative) and truncation error (~1e-6) stay far below
#: the 1e-4 to which the SEs agree with glmmTMB's exact Hessian
HESSIAN_STEP = 1e-3
#: Hessians that stage 2's Newton iteration may compute before it gives way to BOBYQA
NEWTON_HESSIANS = 3


@dataclass
class GlmmProblem:
    """A GLMM ready to optimise: the frame's design and response, the family, the number of
    quadrature nodes and the deviance (:class:`~multilevel.engine.pirls.GlmmDeviance`)."""

    family: Family
    nagq: int
    deviance: GlmmDeviance


@dataclass
class GlmmFitResult:
    """x̂ = (θ̂, β̂) (θ of the scaled blocks), how the optimiser got there (``optim``), the
    modes at x̂, the stage-1 result, the Hessian of the objective in (θ, β) and vcov(β̂)."""

    x: np.ndarray
    optim: OptimResult
    stage1: OptimResult
    modes: Modes
    hessian: np.ndarray
    vcov: np.ndarray


def vcov_from_hessian(H: np.ndarray, nt: int) -> np.ndarray:
    """vcov(β̂) = the β block of 2 H⁻¹, H the Hessian of the objective (-2 log L) in
    x = (θ, β) (nt θ values first); NaN when H is singular."""
    p = H.shape[0] - nt
    try:
        return 2.0 * np.linalg.inv((H + H.T) / 2.0)[nt:, nt:]
    except np.linalg.LinAlgError:
        return np.full((p, p), np.nan)


def prepare_glmm(frame: ModelFrame, family: Family, nagq: int = 1) -> GlmmProblem:
    return GlmmProblem(
        family, int(nagq), GlmmDeviance(design_of(frame), response_of(frame), family, nagq)
    )


def _stage2_starts(x: np.ndarray, nt: int, dev: GlmmDeviance) -> list[np.ndarray]:
    """Starts off the boundary for stage 2: each θ diagonal at 0 raised, the rest kept."""
    layout = dev.layout
    bound = on_boundary(x[:nt], layout)
    if not len(bound):
        return []
    starts = []
    for value in (0.5, 0.1):
        y = x.copy()
        y[bound] = value
        starts.append(y)
    return starts


def _hessian(dev, x: np.ndarray, counter: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(H, g): the Hessian and gradient of the objective at x by central differences
    (steps h_i = :data:`HESSIAN_STEP` |x_i|, 1e-4 at x_i ≈ 0, as
    :func:`~multilevel.fitting.derivatives.gen_d` with r = 1):

        g_i = (f(x + h_i e_i) - f(x - h_i e_i)) / 2h_i,
        H_ii = (f(x + h_i e_i) - 2f(x) + f(x - h_i e_i)) / h_i²,
        H_ij = (f(x + h_i e_i + h_j e_j) - 2f(x) + f(x - h_i e_i - h_j e_j)
                - H_ii h_i² - H_jj h_j²) / 2h_i h_j.

    PIRLS at each point of the pairs starts from the modes predicted to second order from
    those at x and x ± h_i e_i, so that one step reaches them (a pair is most of the k²
    points)."""
    x = np.asarray(x, dtype=float)
    k = len(x)
    h = np.abs(HESSIAN_STEP * x) + 1e-4 * (np.abs(x) < ZERO_TOL)
    f0 = dev(x)
    centre = dev.last
    if not np.isfinite(f0) or centre is None:
        return np.full((k, k), np.nan), np.full(k, np.nan)
    u0 = centre.u
    fp, fm = np.empty(k), np.empty(k)
    slope, curve = [], []  # per i: the modes' change (u+ - u-)/2 and (u+ + u- - 2u0)/2
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        dev.start_from(centre)
        fp[i] = dev(x + e)
        up = dev.last.u
        dev.start_from(centre)
        fm[i] = dev(x - e)
        um = dev.last.u
        slope.append([(a - b) / 2.0 for a, b in zip(up, um, strict=True)])
        curve.append([(a + b - 2.0 * c) / 2.0 for a, b, c in zip(up, um, u0, strict=True)])
    g = (fp - fm) / (2.0 * h)
    H = np.diag((fp - 2.0 * f0 + fm) / h**2)
    for i in range(k):
        for j in range(i):
            e = np.zeros(k)
            e[i], e[j] = h[i], h[j]
            values = []
            for sign in (1.0, -1.0):
                guess = [c + sign * (si + sj) + ci + cj for c, si, sj, ci, cj in zip(
                    u0, slope[i], slope[j], curve[i], curve[j], strict=True)]  # fmt: skip
                dev.start_from(centre, guess)
                values.append(dev(x + sign * e))
            num = values[0] - 2.0 * f0 + values[1] - H[i, i] * h[i] ** 2 - H[j, j] * h[j] ** 2
            H[i, j] = H[j, i] = num / (2.0 * h[i] * h[j])
    dev.start_from(centre)
    counter[0] += 1 + 2 * k + k * (k - 1)
    return H, g


def _newton_stage2(dev, x: np.ndarray, lower: np.ndarray, counter: list[int]):
    """Stage 2 by Newton's method from stage 1's point x, when every θ is off its bound:
    H and g by differences, then chord steps x ← x - H⁻¹g (fresh central gradients, the
    same H, each step halved until it lowers the objective) until the decrease a step
    predicts, ½ g'H⁻¹g, falls below :data:`~multilevel.fitting.optimize.DECREMENT_TOL`
    relative; then H again at that point, which must predict as little (else the iteration
    goes on from there, up to :data:`NEWTON_HESSIANS` Hessians), and its step taken.
    Stage 1's optimum is close to stage 2's (β from PIRLS against β free), so this takes a
    few dozen evaluations where BOBYQA takes hundreds. Returns (x, f(x), H at the
    optimum) or None where Newton's method does not apply (a bound reached, H not
    positive definite, no descent): BOBYQA then does stage 2."""
    if np.any(x <= lower + 1e-4):
        return None
    fx = dev(x)
    counter[0] += 1
    if not np.isfinite(fx):
        return None
    tol = DECREMENT_TOL * max(1.0, abs(fx))
    for _ in range(NEWTON_HESSIANS):
        H, g = _hessian(dev, x, counter)
        if not (np.all(np.isfinite(H)) and np.all(np.isfinite(g))):
            return None
        try:
            c = np.linalg.cholesky((H + H.T) / 2.0)
        except np.linalg.LinAlgError:
            return None
        Hx, at_hessian = H, True
        for _ in range(4 * CHORD_STEPS):
            step = np.linalg.solve(c.T, np.linalg.solve(c, g))
            predicted = 0.5 * float(g @ step)
            if not predicted >= 0:
                return None
            t, moved = 1.0, False
            for _ in range(8):  # halve the step until it lowers the objective
                y = x - t * step
                if np.all(y > lower):
                    fy = dev(y)
                    counter[0] += 1
                    if fy < fx:
                        moved = True
                        break
                t *= 0.5
            if predicted < tol:  # x was the optimum: y, a step closer, is kept when lower
                if moved:
                    x, fx = y, fy
                if at_hessian:
                    return x, fx, Hx
                break  # converged on an older H: check with one at this point
            if not moved:
                return None
            x, fx, at_hessian = y, fy, False
            g = _central_gradient(dev, x, np.arange(len(x)), counter)
    return None


def _newton_polish(dev, x: np.ndarray, fx: float, lower: np.ndarray, counter: list[int]):
    """The Hessian H and gradient g of the objective at BOBYQA's optimum x
    (:func:`_hessian`), then one Newton step x - H⁻¹g over the coordinates off the
    lower bound, kept when it lowers the objective: BOBYQA stops within ~1e-7 of the
    minimum along flat directions (an intercept against a factor's levels), where a
    Newton step on the quadratic lands on it. Returns (H at x, the point, its objective,
    the decrease ½ g'H⁻¹g the step predicted: ∞ when H is not positive definite there)."""
    H, g = _hessian(dev, x, counter)
    free = np.flatnonzero((x - lower) > 1e-6 * np.maximum(np.abs(x), 0.1))
    if not len(free):
        return H, x, fx, 0.0
    if not (np.all(np.isfinite(H)) and np.all(np.isfinite(g))):
        return H, x, fx, np.inf
    Hf = H[np.ix_(free, free)]
    try:
        np.linalg.cholesky((Hf + Hf.T) / 2.0)
        step = np.linalg.solve(Hf, g[free])
    except np.linalg.LinAlgError:
        return H, x, fx, np.inf
    tol = DECREMENT_TOL * max(1.0, abs(fx))
    predicted = 0.5 * float(g[free] @ step)
    for _ in range(CHORD_STEPS):
        y = x.copy()
        y[free] -= step
        y = np.maximum(y, lower)
        fy = dev(y)
        counter[0] += 1
        if not fy < fx:
            break
        x, fx = y, fy
        if predicted < tol:
            break
        # the next step from a fresh gradient on the same Hessian (a chord iteration)
        gf = _central_gradient(dev, x, free, counter)
        step = np.linalg.solve(Hf, gf)
        predicted = 0.5 * float(gf @ step)
    return H, x, fx, predicted


def _central_gradient(dev, x: np.ndarray, free: np.ndarray, counter: list[int]) -> np.ndarray:
    """Central differences of the objective at x along the coordinates ``free``."""
    out = np.empty(len(free))
    for a, i in enumerate(free):
        h = 1e-4 * max(abs(x[i]), 0.1)
        e = np.zeros(len(x))
        e[i] = h
        out[a] = (dev(x + e) - dev(x - e)) / (2 * h)
    counter[0] += 2 * len(free)
    return out


def _stationary_at_bounds(dev, x, fx, lower, counter) -> bool:
    """At a lower bound only a descent into the interior counts: f(x + h e_i) ≥ f(x) - ..."""
    bound = np.flatnonzero((x - lower) <= 1e-6 * np.maximum(np.abs(x), 0.1))
    for i in bound:
        h = 1e-5 * max(abs(x[i]), 0.1)
        y = x.copy()
        y[i] += h
        counter[0] += 1
        if (dev(y) - fx) / h < -GRAD_TOL:
            return False
    return True


def optimize_glmm(
    problem: GlmmProblem, start: np.ndarray | None = None, with_vcov: bool = True
) -> GlmmFitResult:
    """The two stages (module docstring). ``start``: x = (θ, β) to begin stage 2 from,
    skipping stage 1 (a bootstrap refit from the original estimates). ``with_vcov=False``
    leaves out the Hessian (``hessian`` and ``vcov`` are then NaN)."""
    dev = problem.deviance
    layout = dev.layout
    nt = layout.size
    with one_blas_thread():
        if start is None:
            # stage 2 certifies its optimum itself (Newton's method or BOBYQA and a check)
            stage1 = minimize_theta(dev.stage1, layout, expensive=True, start_only=with_vcov)
            m1 = dev.modes(stage1.theta)
            beta1 = m1.beta if m1 is not None else np.zeros(dev.p)
        else:
            start = np.asarray(start, dtype=float)
            stage1 = OptimResult(start[:nt].copy(), float("nan"), 0, True, "skipped", [], None)
            beta1 = start[nt:]
        lower = np.concatenate([layout.lower, np.full(dev.p, -np.inf)])
        x0 = np.concatenate([stage1.theta, beta1])
        step = np.concatenate(
            [np.maximum(0.1 * np.abs(stage1.theta), 0.05), np.maximum(0.1 * np.abs(beta1), 0.05)]
        )
        counter = [stage1.nevals]
        p = dev.p
        H = np.full((nt + p, nt + p), np.nan)
        stationary = False
        grad = None
        runs = list(stage1.runs)
        newton = _newton_stage2(dev, x0, lower, counter) if with_vcov else None
        if newton is not None:
            x, fx, H = newton
            runs.append(("stage 2: Newton's method in (theta, beta)", fx, 0))
            stationary = True
        else:
            # with the Hessian to come, a Newton step finishes what a looser BOBYQA leaves
            polish = dict(ftol_rel=STAGE2_FTOL_REL, restart=False) if with_vcov else {}
            x, fx, n2 = minimize_from(dev, x0, lower, step=step, **polish)
            counter[0] += n2
            runs.append(("stage 2: bobyqa in (theta, beta)", fx, 0))
            for start in _stage2_starts(x, nt, dev):
                x1, f1, n1 = minimize_from(dev, start, lower, step=0.1)
                counter[0] += n1
                runs.append(("stage 2: bobyqa off the boundary", f1, 0))
                if f1 < fx:
                    x, fx = x1, f1
        if with_vcov and newton is None:
            H, x, fx, predicted = _newton_polish(dev, x, fx, lower, counter)
            runs.append(("stage 2: a Newton step on the Hessian", fx, 0))
            # a Newton step that promised next to nothing from a point where the Hessian
            # is positive definite: the point was (and its successor is) the optimum
            stationary = predicted < DECREMENT_TOL * max(1.0, abs(fx)) and (
                _stationary_at_bounds(dev, x, fx, lower, counter)
            )
        if not stationary:
            grad = projected_gradient(dev, x, lower, counter)
            stationary = bool(np.all(np.abs(grad) < GRAD_TOL))
            if not stationary:
                decrement = newton_decrement(dev, x, grad, lower, counter)
                stationary = decrement < DECREMENT_TOL * max(1.0, abs(fx))
        modes = dev.modes(x[:nt], x[nt:])  # the optimum's modes (the last call was elsewhere)
    vcov = vcov_from_hessian(H, nt)
    converged = stationary and modes.converged
    if not modes.converged:
        message = modes.message or "PIRLS did not converge at the optimum"
    elif not stationary:
        worst = int(np.argmax(np.abs(grad)))
        message = f"the gradient at the optimum is not zero: {grad[worst]:.3g} for x[{worst}]"
    else:
        message = "converged"
    optim = OptimResult(x[:nt].copy(), float(modes.objective), counter[0], converged, message,
                        runs, grad)  # fmt: skip
    return GlmmFitResult(x.copy(), optim, stage1, modes, H, vcov)
