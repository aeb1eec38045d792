"""Minimise the profiled deviance over θ with nlopt (BOBYQA, or NEWUOA first when
evaluations are expensive), and make sure the result is the optimum.

A derivative-free run from lme4's start (Λ = I) usually reaches the optimum, but the
θ-parametrisation has false local optima on the boundary: with a diagonal element of Λ_i at
0 the rest of its column fixes a correlation, and an optimiser can settle there (lme4's
default does on the radon model). So when the first run ends on the boundary we start again
from points off it, and every fit ends with a restart from the best point (a fresh trust
region) that must not find anything better. The best objective of all runs is kept.

On small data the deviance can have several local minima, so cheap problems are also
screened from other starts (:func:`_screen_other_starts`): each face of the boundary where
a diagonal element of Λ is 0, searched on the face and freely from it, θ = 0, 10 Λ=I, and
the extremes of the correlations (:func:`_correlation_starts`: at a standard deviation of
~0 the θ-parametrisation forgets the correlation, and a lower optimum with a small standard
deviation and a correlation of ±1 is out of the optimiser's sight).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import nlopt
import numpy as np

from ..engine.layout import ThetaLayout

FTOL_REL = 1e-12
#: the restarts that polish the optimum stop later: on a flat optimum (radon's interaction,
#: θ poorly determined to 1e-6) a relative change of 1e-12 per step leaves β 2e-7 off
POLISH_FTOL_REL = 1e-14
XTOL_ABS = 1e-10
#: the relative tolerance of a run whose result only starts another optimisation
START_FTOL_REL = 1e-6
MAXEVAL = 20_000
#: evaluations allowed to each screening run from another start
SCREEN_EVALS = 30
#: an unfinished screening run is continued only if it is at most this far (deviance units)
#: above the best so far
UNFINISHED_MARGIN = 2.0
#: largest |∂d/∂θ_i| (deviance units per unit θ) at a converged optimum
GRAD_TOL = 1e-3
#: or else the largest decrease ½ g'H⁻¹g a Newton step predicts, relative to max(1, |objective|)
#: (100 times below the 1e-6 relative agreement we promise with lme4's best optimum)
DECREMENT_TOL = 1e-8
#: a diagonal element of Λ below this is taken to be on the boundary
BOUNDARY = 1e-4

_MESSAGES = {
    nlopt.SUCCESS: "success",
    nlopt.STOPVAL_REACHED: "stopval reached",
    nlopt.FTOL_REACHED: "ftol reached",
    nlopt.XTOL_REACHED: "xtol reached",
    nlopt.MAXEVAL_REACHED: "maximum number of evaluations reached",
    nlopt.MAXTIME_REACHED: "maximum time reached",
    nlopt.ROUNDOFF_LIMITED: "roundoff limited",
    nlopt.FAILURE: "failure",
}


@dataclass
class OptimResult:
    """θ at the optimum, the objective there and how the optimiser got there."""

    theta: np.ndarray
    objective: float
    nevals: int
    converged: bool
    message: str
    runs: list[tuple[str, float, int]] = field(default_factory=list)
    gradient: np.ndarray | None = None


def _run(
    f,
    x0,
    lower,
    step,
    counter,
    algorithm=nlopt.LN_BOBYQA,
    ftol=None,
    xtol=None,
    maxeval=None,
    upper=None,
):
    """One nlopt run within [lower, upper] (upper: none by default); returns the best point
    it evaluated, its value and nlopt's code."""
    n = len(x0)
    opt = nlopt.opt(algorithm, n)
    opt.set_lower_bounds(lower)
    x0 = np.maximum(np.asarray(x0, float), lower)
    if upper is not None:
        upper = np.broadcast_to(np.asarray(upper, dtype=float), (n,))
        opt.set_upper_bounds(upper)
        x0 = np.minimum(x0, upper)
    best = [x0.copy(), np.inf]

    def obj(x, grad):
        counter[0] += 1
        v = f(x)
        if not np.isfinite(v):
            return 1e300
        if v < best[1]:
            best[0], best[1] = x.copy(), v
        return v

    opt.set_min_objective(obj)
    opt.set_ftol_rel(FTOL_REL if ftol is None else ftol)
    opt.set_xtol_abs(XTOL_ABS if xtol is None else xtol)
    opt.set_maxeval(MAXEVAL if maxeval is None else maxeval)
    if step is not None:
        step = np.broadcast_to(np.asarray(step, dtype=float), (n,))
        if upper is not None:  # the first step must stay within the bounds on one side
            room = np.maximum(upper - x0, x0 - lower)
            step = np.minimum(step, np.maximum(room, 1e-8))
        opt.set_initial_step(step)
    try:
        opt.optimize(x0)
        code = opt.last_optimize_result()
    except nlopt.RoundoffLimited:
        code = nlopt.ROUNDOFF_LIMITED
    except (RuntimeError, ValueError):
        code = nlopt.FAILURE
    return best[0], float(best[1]), code


def _restart_step(x: np.ndarray) -> np.ndarray:
    """The initial step of a restart from x: a fresh trust region, 5% of each |x_i|."""
    return np.maximum(0.05 * np.abs(x), 0.01)


def minimize_from(
    f,
    x0,
    lower,
    upper=None,
    step=None,
    ftol_rel: float = FTOL_REL,
    xtol_abs: float = XTOL_ABS,
    maxeval: int = 5000,
    restart: bool = True,
) -> tuple[np.ndarray, float, int]:
    """Minimise ``f`` with BOBYQA from ``x0`` within [lower, upper], then once more from the
    best point with a fresh (smaller) trust region, as :func:`minimize_theta` checks its
    optima; for refits that start where we choose (bootstrap replicates, profiles).
    Returns (x, f(x), evaluations); f(x) is inf when no point was finite."""
    x0 = np.asarray(x0, dtype=float)
    if len(x0) == 0:
        return x0, float(f(x0)), 1
    lower = np.broadcast_to(np.asarray(lower, dtype=float), x0.shape)
    counter = [0]
    kw = dict(ftol=ftol_rel, xtol=xtol_abs, maxeval=maxeval, upper=upper)
    x, fx, _ = _run(f, x0, lower, step, counter, **kw)
    if restart and np.isfinite(fx):
        x1, f1, _ = _run(f, x, lower, _restart_step(x), counter, **kw)
        if f1 < fx:
            x, fx = x1, f1
    return x, fx, counter[0]


def on_boundary(theta: np.ndarray, layout: ThetaLayout) -> np.ndarray:
    """Indices of the diagonal elements of Λ that sit at (or next to) zero."""
    diag = layout.row == layout.col
    return np.flatnonzero(diag & (np.abs(theta) < BOUNDARY))


def _off_boundary_starts(
    theta: np.ndarray, layout: ThetaLayout
) -> list[tuple[np.ndarray, float | None]]:
    """Points off the boundary, each with the initial step to use from it:

    * each zero diagonal set back to its start value with its column below cleared;
    * lme4's start itself, with a wider trust region;
    * for each term on the boundary, Λ_i = chol(Λ_iΛ_i' + δI) (δ = 0.1, 0.01): the same
      covariance, nudged into the interior, in the representation where nearby covariances
      have nearby θ. A rank-deficient Σ has many θ (a zero column leaves the rest of its
      row free), and the better optimum can be close in Σ but far in θ (seen on a radon
      bootstrap replicate: 2065.7995 from the first two kinds, 2065.7652 from this one)."""
    starts: list[tuple[np.ndarray, float | None]] = []
    x = theta.copy()
    bound = on_boundary(theta, layout)
    for i in bound:
        t, c = layout.term[i], layout.col[i]
        x[(layout.term == t) & (layout.col == c)] = 0.0
        x[i] = 1.0
    starts.append((x, 0.5))
    starts.append((layout.start.copy(), 0.5))
    terms = sorted({int(layout.term[i]) for i in bound})
    lams = layout.lambdas(theta)
    for delta in (0.1, 0.01):
        y = theta.copy()
        for t in terms:
            lam = lams[t]
            k = lam.shape[0]
            L = np.linalg.cholesky(lam @ lam.T + delta * np.eye(k))
            sel = np.flatnonzero(layout.term == t)
            y[sel] = L[layout.row[sel], layout.col[sel]]
        starts.append((y, None))
    return starts


def _other_starts(theta: np.ndarray, layout: ThetaLayout) -> list[tuple[np.ndarray, object]]:
    """Starts in other basins, each with the upper bounds of its run (None: none):

    * each face of the boundary where one diagonal element of Λ is 0 (a variance at 0, or a
      correlation at ±1), searched on the face itself (that element held at 0, its column
      below it cleared): a minimum on a face can be lower than the interior one and still
      out of sight of a free run, whose first steps lead back inside (seen 31.3992 on the
      face against 31.4306 inside, 12 rows, 3 groups);
    * all of θ at 0, and lme4's start scaled by 10.

    On small data the deviance can have several local minima (found by the property tests,
    tests/data/optimiser_misses): each of these starts reached the lowest one in some case."""
    starts: list[tuple[np.ndarray, object]] = []
    for i in np.flatnonzero(layout.row == layout.col):
        x = theta.copy()
        x[(layout.term == layout.term[i]) & (layout.col == layout.col[i])] = 0.0
        upper = np.full(layout.size, np.inf)
        upper[i] = 0.0
        starts += [(x, upper), (x, None)]
    starts += [(np.zeros(layout.size), None), (10.0 * layout.start, None)]
    return starts


def _correlation_starts(theta: np.ndarray, layout: ThetaLayout) -> list[np.ndarray]:
    """Starts at the extremes of the correlations of each correlated block of Λ. Each keeps
    the fit's standard deviations (a near-zero one raised to 5% of the block's largest) and
    sets one correlation to ±0.95, the others to 0: Λ_i = chol(D R D).

    * At or next to a singular block, both signs: at a standard deviation of ~0 the
      θ-parametrisation forgets the correlations with it (a column of Λ can rotate
      freely), so an optimiser that reaches sd ≈ 0 cannot see that a small sd with a
      correlation of ±1 is lower (seen 0.003 to 2.8 deviance units lower on small data).
      A block at 0 (all its variances 0) takes unit standard deviations, lme4's start's
      (seen 48.15 with a correlation of +1 against 48.38 with all variances 0).
    * Otherwise the sign opposite to the fit's: on small data an interior minimum can sit
      above one at the other extreme of the correlation (seen -0.45 at 56.514 and +1 at
      56.435, 15 rows). See tests/data/optimiser_misses (E1, E2)."""
    starts = []
    for t, lam in enumerate(layout.lambdas(theta)):
        k = lam.shape[0]
        sel = np.flatnonzero(layout.term == t)
        if k < 2 or not np.any(layout.row[sel] != layout.col[sel]):
            continue  # one effect, or uncorrelated ('||')
        sv = np.linalg.svd(lam, compute_uv=False)
        singular = not sv[-1] > 1e-2 * sv[0]
        cov = lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        # a block at 0 (every variance 0) has no scale of its own: lme4's start's, Λ_i = I
        sd = np.maximum(sd, 0.05 * sd.max()) if sv[0] > BOUNDARY else np.ones(k)
        for a in range(k):
            for b in range(a):
                signs = (1.0, -1.0) if singular or cov[a, b] == 0 else (-np.sign(cov[a, b]),)
                for sign in signs:
                    R = np.eye(k)
                    R[a, b] = R[b, a] = 0.95 * sign
                    L = np.linalg.cholesky(R * np.outer(sd, sd))
                    x = theta.copy()
                    x[sel] = L[layout.row[sel], layout.col[sel]]
                    starts.append(x)
    return starts


def _far(x: np.ndarray, y: np.ndarray) -> bool:
    """x and y are in different places, not two stops on the way to one optimum."""
    return bool(np.any(np.abs(x - y) > 0.5 * (1.0 + np.abs(y))))


def _screen_other_starts(f, best, layout: ThetaLayout, counter, runs):
    """Short runs (loose tolerances) from :func:`_other_starts` and
    :func:`_correlation_starts`. The lowest run that ends far from ``best`` and below it is
    polished with the full tolerances and no upper bounds (from a face, it may leave it).
    If none, each run that stopped at its evaluation limit far from ``best``, at most
    :data:`UNFINISHED_MARGIN` above it, gets a second short stretch first (a short run can
    still be on its way down into a lower basin: seen 79.72 after 40 evaluations from
    10 Λ=I, then 78.98 against 79.40; and 29.96 after 30, then 28.94 against 29.20, while
    another unfinished run 29.45 went back to 29.20). A run that ends near ``best`` is in
    its basin: if lower it becomes ``best`` (the restarts polish it), but it does not stand
    in for another basin."""
    x, fx, code = best
    below = fx - 1e-9 * max(1.0, abs(fx))  # lower than best by more than rounding
    screen = dict(ftol=1e-7, xtol=1e-5, maxeval=SCREEN_EVALS)
    lower, unfinished = None, []  # the best far run below best; far runs still on their way
    starts = _other_starts(x, layout) + [(x0, None) for x0 in _correlation_starts(x, layout)]
    for x0, upper in starts:
        x1, f1, c1 = _run(f, x0, layout.lower, 0.5, counter, upper=upper, **screen)
        if not _far(x1, x):
            if f1 < best[1]:  # the same basin, a little lower: the restarts polish it
                best = (x1, f1, c1)
        elif f1 < below:
            if lower is None or f1 < lower[1]:
                lower = (x1, f1, c1)
        elif c1 == nlopt.MAXEVAL_REACHED and f1 < fx + UNFINISHED_MARGIN:
            unfinished.append(x1)
    if lower is None:
        # a second short stretch for each run still on its way: one may get below best
        for x0 in unfinished:
            x1, f1, c1 = _run(f, x0, layout.lower, None, counter, **screen)
            if f1 < below and (lower is None or f1 < lower[1]):
                lower = (x1, f1, c1)
    if lower is None:
        runs.append(("other starts: nothing lower", best[1], best[2]))
        return best
    x1, f1, c1 = _run(f, lower[0], layout.lower, None, counter)
    runs.append(("bobyqa from another basin", f1, c1))
    return (x1, f1, c1) if f1 < best[1] else best


def minimize_theta(
    f: Callable[[np.ndarray], float],
    layout: ThetaLayout,
    expensive: bool = False,
    start_only: bool = False,
) -> OptimResult:
    """Minimise ``f`` over θ subject to ``layout.lower``.

    ``expensive``: evaluations are costly (large blocks), so start with NEWUOA, which needs
    fewer of them, but spends more time of its own per step (~4 ms a run on 3 parameters).
    ``start_only``: the result only starts another optimisation that certifies its own
    optimum (a GLMM's stage 2): the first run stops at :data:`START_FTOL_REL` and, after
    the starts off the boundary, there is no screening, polishing restart or gradient
    check (``converged`` says only that the runs ended normally)."""
    lower = layout.lower
    counter = [0]
    runs = []
    if start_only:
        return _start_point(f, layout, expensive, counter, runs)
    # NEWUOA (bound-constrained) reaches the optimum in fewer evaluations than BOBYQA on
    # the reference models (InstEval: 64 against 109) and leaves radon's false boundary
    # optimum; it needs two or more parameters.
    if expensive and layout.size >= 2:
        x, fx, code = _run(f, layout.start, lower, None, counter, nlopt.LN_NEWUOA_BOUND)
        runs.append(("newuoa from Λ=I", fx, code))
    else:
        x, fx, code = _run(f, layout.start, lower, None, counter)
        runs.append(("bobyqa from Λ=I", fx, code))
    best = (x, fx, code)
    if len(on_boundary(x, layout)):
        for x0, step in _off_boundary_starts(x, layout):
            x1, f1, c1 = _run(f, x0, lower, step, counter)
            runs.append(("bobyqa off the boundary", f1, c1))
            if f1 < best[1]:
                best = (x1, f1, c1)
    if not expensive:
        best = _screen_other_starts(f, best, layout, counter, runs)
    settled = False
    for _ in range(4):
        x0 = best[0]
        x1, f1, c1 = _run(f, x0, lower, _restart_step(x0), counter, ftol=POLISH_FTOL_REL)
        runs.append(("bobyqa restart", f1, c1))
        # an improvement below 1e-6 deviance units (a likelihood ratio of 1 + 5e-7) is the
        # optimiser creeping along a flat valley, not a new optimum
        improved = f1 < best[1] - max(1e-10 * abs(best[1]), 1e-6)
        if f1 < best[1]:
            best = (x1, f1, c1)
        if not improved:
            settled = c1 not in (nlopt.FAILURE, nlopt.MAXEVAL_REACHED, nlopt.MAXTIME_REACHED)
            break
    theta, fbest, code = best
    if not np.isfinite(fbest) or fbest >= 1e300:
        return OptimResult(theta, np.inf, counter[0], False, "no finite objective", runs)
    grad = projected_gradient(f, theta, lower, counter)
    stationary = bool(np.all(np.abs(grad) < GRAD_TOL))
    if not stationary:
        # with many observations the deviance is steep and a tiny error in θ shows as a
        # large gradient; what matters is how much lower the objective could go
        decrement_tol = DECREMENT_TOL * max(1.0, abs(fbest))
        stationary = newton_decrement(f, theta, grad, lower, counter) < decrement_tol
    converged = settled and stationary
    msg = _MESSAGES.get(code, f"nlopt code {code}")
    if not settled:
        msg = f"restarts kept improving the objective ({msg})"
    elif not stationary:
        worst = int(np.argmax(np.abs(grad)))
        msg = (
            f"the gradient at the optimum is not zero: {grad[worst]:.3g} for theta[{worst}], "
            f"and a Newton step would lower the objective by more than {decrement_tol:.2g}"
        )
    return OptimResult(theta, fbest, counter[0], converged, msg, runs, grad)


def _start_point(f, layout: ThetaLayout, expensive: bool, counter, runs) -> OptimResult:
    """:func:`minimize_theta` with ``start_only``: one run, then the starts off the boundary."""
    lower = layout.lower
    algorithm = nlopt.LN_NEWUOA_BOUND if expensive and layout.size >= 2 else nlopt.LN_BOBYQA
    x, fx, code = _run(f, layout.start, lower, None, counter, algorithm, ftol=START_FTOL_REL)
    runs.append(("newuoa from Λ=I" if algorithm == nlopt.LN_NEWUOA_BOUND else "bobyqa from Λ=I",
                 fx, code))  # fmt: skip
    if len(on_boundary(x, layout)):
        for x0, step in _off_boundary_starts(x, layout):
            x1, f1, c1 = _run(f, x0, lower, step, counter, ftol=START_FTOL_REL)
            runs.append(("bobyqa off the boundary", f1, c1))
            if f1 < fx:
                x, fx, code = x1, f1, c1
    ok = np.isfinite(fx) and fx < 1e300 and code not in (nlopt.FAILURE, nlopt.MAXEVAL_REACHED)
    return OptimResult(x, fx if ok else np.inf, counter[0], bool(ok),
                       _MESSAGES.get(code, f"nlopt code {code}"), runs)  # fmt: skip


def projected_gradient(f, x: np.ndarray, lower: np.ndarray, counter=None) -> np.ndarray:
    """Central-difference gradient of f at x, projected on the feasible directions: at a
    lower bound only a negative derivative (a descent into the interior) counts.

    Each component is the smaller in magnitude of the differences at two steps, h and 100h
    (h = 1e-5 max(|x_i|, 0.1)): the rounding noise of f (~1e-12 |f|, so 2e-7 on a deviance
    of 2e5) divided by a small step can pass for a slope, while a real slope shows at both.
    The deviance is on the χ² scale whatever the data's units and θ is relative to σ, so an
    absolute tolerance on this gradient is scale-free."""
    n = len(x)
    g = np.zeros(n)
    f0 = f(x)
    calls = 0
    for i in range(n):
        best = None
        for h in (1e-5 * max(abs(x[i]), 0.1), 1e-3 * max(abs(x[i]), 0.1)):
            e = np.zeros(n)
            e[i] = h
            if x[i] - h < lower[i]:  # one-sided at the bound
                gi = min((f(x + e) - f0) / h, 0.0)
                calls += 1
            else:
                gi = (f(x + e) - f(x - e)) / (2 * h)
                calls += 2
            if best is None or abs(gi) < abs(best):
                best = gi
        g[i] = best
    if counter is not None:
        counter[0] += calls + 1
    return g


def newton_decrement(f, x, g, lower, counter=None) -> float:
    """½ g'H⁻¹g over the coordinates off the bound: the decrease of f that a Newton step
    predicts, over the directions where the finite-difference Hessian is positive (∞ when f
    slopes along a direction without positive curvature)."""
    free = np.flatnonzero(~((x - lower) < 1e-5 * np.maximum(np.abs(x), 0.1)) | (g < 0))
    if len(free) == 0:
        return 0.0
    h = 1e-4 * np.maximum(np.abs(x[free]), 0.1)
    m = len(free)
    H = np.empty((m, m))
    f0 = f(x)

    def at(*steps):
        y = x.copy()
        for i, s in steps:
            y[free[i]] += s * h[i]
        if counter is not None:
            counter[0] += 1
        return f(y)

    for i in range(m):
        H[i, i] = (at((i, 1)) - 2 * f0 + at((i, -1))) / h[i] ** 2
        for j in range(i):
            pp, pm = at((i, 1), (j, 1)), at((i, 1), (j, -1))
            mp, mm = at((i, -1), (j, 1)), at((i, -1), (j, -1))
            H[i, j] = H[j, i] = (pp - pm - mp + mm) / (4 * h[i] * h[j])
    # in the eigenbasis of H: a direction of positive curvature contributes ½ (v'g)²/λ; one
    # without (a flat valley: a variance near zero beside a slope's) counts only if f has a
    # slope along it, and then the decrease is unbounded
    if not np.all(np.isfinite(H)):
        return np.inf
    try:
        lam, V = np.linalg.eigh(H)
    except np.linalg.LinAlgError:
        return np.inf
    gv = V.T @ g[free]
    curved = lam > 1e-8 * max(float(np.abs(lam).max()), 1.0)
    if np.any(np.abs(gv[~curved]) >= GRAD_TOL):
        return np.inf
    return 0.5 * float(np.sum(gv[curved] ** 2 / lam[curved]))
