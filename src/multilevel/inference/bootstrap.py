"""Parametric bootstrap of a linear mixed model (lme4's ``bootMer``).

Replicate r draws y*_r from the fitted model (:mod:`multilevel.model.simulate`) and refits
it by the fit's criterion. The blocks of the new response come from
:meth:`~multilevel.engine.blocks.BlockPattern.with_response` (one pass over y) and every
refit starts at θ̂, where the replicate's optimum usually is near.

* Models with one random-effects term: a batch of replicates is refitted together,
  :class:`~multilevel.engine.batch.BatchDeviance` evaluating the deviance of all of them
  (each at its own θ) in a few vectorised operations and :func:`batch_newton` running
  Newton's method on all rows at once (finite-difference derivatives). Optima on or near
  the boundary are checked from lme4's start and from off the boundary, as
  :func:`multilevel.fitting.optimize.minimize_theta` does.
* Other models, and replicates where Newton's method does not converge: one refit at a
  time with BOBYQA (:func:`refit_estimates`), the deviance sharing the fit's θ-independent
  structure (:meth:`ProfiledDeviance.with_crossproducts`).

From the refit's θ*, σ* and β*:

    estimates_r = (σ-scale SDs and correlations, σ*, β*)       one row of ``estimates``

in lme4's order and names (see :func:`param_names`). Each replicate's random numbers come
from its own child of ``SeedSequence(seed)`` (``spawn``), so the replicates depend on the
seed only, not on how they are split between worker processes.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..engine import BlockPattern, CrossProducts, ProfiledDeviance, Response, one_blas_thread
from ..engine.batch import BatchDeviance
from ..engine.layout import ThetaLayout, sdcor_from_theta, theta_for_data
from ..errors import MultilevelError
from ..fitting.optimize import BOUNDARY, minimize_from, on_boundary
from ..model.simulate import SimModel, check_count
from .distributions import norm_ppf
from .varpar import param_names, perc_label

# ---------------------------------------------------------------------------------------
# Refits
# ---------------------------------------------------------------------------------------


@dataclass
class BootTask:
    """Everything a replicate needs, picklable for worker processes: the simulator, the
    block pattern (the design), the response (prior weights, offset), the fit's blocks and
    deviance, θ̂ of the deviance."""

    sim: SimModel
    pattern: BlockPattern
    response: Response
    cp: CrossProducts
    dev: ProfiledDeviance
    theta: np.ndarray

    @classmethod
    def from_fit(cls, fit) -> BootTask:
        problem = fit.problem
        return cls(
            SimModel.from_fit(fit),
            problem.pattern,
            problem.response,
            problem.blocks,
            problem.deviance,
            fit.factorization.theta,
        )

    def blocks(self, y: np.ndarray) -> CrossProducts:
        """The blocks of response ``y`` (n,) (same design, weights and offset)."""
        return self.pattern.with_response(self.cp, self.response.with_y(y))


def refit_estimates(task: BootTask, y: np.ndarray):
    """Fit the task's model to response ``y`` (n,) starting from θ̂ (``task.theta`` is the
    deviance's θ). Returns (θ on the data's scale, σ-scale variance parameters with σ, β,
    objective)."""
    dev = task.dev.with_crossproducts(task.blocks(y))
    lay = dev.layout
    with one_blas_thread():
        step = np.maximum(0.2 * np.abs(task.theta), 0.05)
        x, fx, _ = minimize_from(dev, task.theta, lay.lower, step=step)
        small = _near_zero(lay, x, task.theta)
        if not np.isfinite(fx) or len(on_boundary(x, lay)) or small.any():
            # an optimum on or near the boundary may be a false one: try from lme4's start
            # and from off the boundary (those SDs' columns reset) as well
            for x0 in (lay.start, _off_boundary(lay, x, small)):
                x1, f1, _ = minimize_from(dev, x0, lay.lower, step=0.5)
                if f1 < fx:
                    x, fx = x1, f1
        fac = dev.factor(x) if np.isfinite(fx) else None
    nt, p = lay.size, dev.p
    if fac is None:
        return np.full(nt, np.nan), np.full(nt + 1, np.nan), np.full(p, np.nan), np.nan
    theta = fac.theta_data
    return theta, sdcor_from_theta(lay, theta, fac.sigma), fac.beta, fx


def _near_zero(lay: ThetaLayout, theta: np.ndarray, theta_hat: np.ndarray) -> np.ndarray:
    """Diagonal elements of Λ at or near 0: below 1e-3, or below a tenth of θ̂'s largest
    diagonal element. ``theta`` (..., len θ); a boolean array of the same shape."""
    diag = lay.row == lay.col
    small = max(10 * BOUNDARY, 0.1 * float(np.abs(np.asarray(theta_hat)[diag]).max()))
    return (np.abs(theta) < small) & diag


def _off_boundary(lay: ThetaLayout, theta: np.ndarray, small: np.ndarray) -> np.ndarray:
    """θ (..., len θ) with each ``small`` diagonal element set to 1 and the rest of its
    column of Λ to 0 (starts off the boundary, as :mod:`multilevel.optimize` restarts)."""
    theta = np.asarray(theta, dtype=float)
    out = np.atleast_2d(theta).copy()
    small = np.broadcast_to(np.atleast_2d(small), out.shape)
    for i in np.flatnonzero(lay.row == lay.col):
        col = (lay.term == lay.term[i]) & (lay.col == lay.col[i])
        hit = small[:, i]
        out[np.ix_(hit, col)] = 0.0
        out[hit, i] = 1.0
    return out.reshape(theta.shape)


_WORKER_TASK: BootTask | None = None


def _init_worker(task: BootTask) -> None:
    global _WORKER_TASK
    _WORKER_TASK = task
    # one BLAS thread per process: the processes already use the cores
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # noqa: BLE001, S110
        pass


def batch_newton(f, x0: np.ndarray, h: np.ndarray, maxit: int = 50):
    """Minimise f(x_r) for every row r of ``x0`` (R, d) at once by Newton's method with
    finite-difference derivatives (step h (d,)), eigenvalue-modified Hessians and
    backtracking. ``f(X, rows)`` evaluates rows ``rows`` at X (len(rows), d).

    Returns (x, f(x), converged (R,)): converged where the predicted decrease g'H⁻¹g/2 fell
    below 1e-7 with a positive definite Hessian (after which one more step was taken)."""
    R, d = x0.shape
    x = x0.astype(float, copy=True)
    rows_all = np.arange(R)
    fx = f(x, rows_all)
    active = np.isfinite(fx)
    converged = np.zeros(R, dtype=bool)
    E = np.diag(h)
    for _ in range(maxit):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        xa, f0 = x[idx], fx[idx]
        fp = np.column_stack([f(xa + E[i], idx) for i in range(d)])
        fm = np.column_stack([f(xa - E[i], idx) for i in range(d)])
        g = (fp - fm) / (2.0 * h)
        H = np.empty((len(idx), d, d))
        H[:, np.arange(d), np.arange(d)] = (fp - 2.0 * f0[:, None] + fm) / h**2
        for i in range(d):
            for j in range(i + 1, d):
                fij = f(xa + E[i] + E[j], idx)
                H[:, i, j] = H[:, j, i] = (fij - fp[:, i] - fp[:, j] + f0) / (h[i] * h[j])
        good = np.isfinite(H).all(axis=(1, 2)) & np.isfinite(g).all(axis=1)
        H[~good] = np.eye(d)
        g[~good] = 0.0
        w, V = np.linalg.eigh(H)
        pd_ = w.min(axis=1) > 0
        wmax = np.abs(w).max(axis=1, keepdims=True)
        wm = np.maximum(np.abs(w), 1e-8 * np.maximum(wmax, 1e-300))
        step = -np.einsum("rij,rj->ri", V, np.einsum("rji,rj->ri", V, g) / wm)
        # at a saddle (e.g. a zero SD when the optimum is not there) g is ~0: go down the
        # direction of negative curvature
        neg = w[:, 0] < 0
        if neg.any():
            v = V[neg, :, 0]
            v *= -np.sign(np.einsum("ri,ri->r", v, g[neg]) + 1e-300)[:, None]
            step[neg] += 0.1 * np.maximum(np.abs(xa[neg]).max(axis=1), 1.0)[:, None] * v
        # no step longer than twice the size of x (flat directions: nearly singular H)
        cap = 2.0 * np.maximum(np.abs(xa).max(axis=1), 1.0)
        big = np.abs(step).max(axis=1) / cap
        step[big > 1] /= big[big > 1, None]
        dec = -0.5 * np.einsum("ri,ri->r", g, step)
        done = good & pd_ & (dec < 1e-7)
        # backtracking line search on the rows that are still moving
        alpha = np.ones(len(idx))
        accepted = ~good  # rows with bad derivatives stop below
        slope = np.einsum("ri,ri->r", g, step)
        newx, newf = xa.copy(), f0.copy()
        for _ls in range(30):
            todo = np.flatnonzero(~accepted)
            if len(todo) == 0:
                break
            trial = xa[todo] + alpha[todo, None] * step[todo]
            ft = f(trial, idx[todo])
            ok = ft <= f0[todo] + 1e-4 * alpha[todo] * slope[todo]
            ok |= done[todo] & (ft <= f0[todo])
            newx[todo[ok]], newf[todo[ok]] = trial[ok], ft[ok]
            accepted[todo[ok]] = True
            alpha[todo[~ok]] *= 0.5
        x[idx], fx[idx] = newx, newf
        converged[idx[done]] = True
        stop = done | ~good | ~accepted
        active[idx[stop]] = False
    return x, fx, converged


def _run_chunk(indices: list[int], seeds: list[np.random.SeedSequence], task=None):
    """Replicates ``indices`` with generators from ``seeds``: (index, θ, σ-scale parameters,
    β, objective) each. Single-term models go through :class:`BatchDeviance` and
    :func:`batch_newton` together (the deviance depends on θ through ΛΛ' only, so Newton's
    method runs unconstrained and columns of Λ are flipped to a non-negative diagonal at the
    end); replicates where it does not converge are refitted one by one from θ̂ with BOBYQA
    (:func:`refit_estimates`), as are all replicates of other models."""
    task = task if task is not None else _WORKER_TASK
    ys = [task.sim.draw(np.random.default_rng(ss), 1)[:, 0] for ss in seeds]
    out: list = [None] * len(indices)
    slow = list(range(len(indices)))
    dev = task.dev
    if dev.qr == 0 and len(indices) > 1:
        # sub-batches of at most ~4M numbers in the (R, l, k, k, p) arrays
        size = max(2, int(4e6 // (dev.l1 * dev.k1 * dev.k1 * max(dev.p, 1) + 1)))
        for s in range(0, len(indices), size):
            part = list(range(s, min(s + size, len(indices))))
            for r, res in zip(part, _batch_refits(task, [ys[r] for r in part]), strict=True):
                if res is not None:
                    out[r] = (indices[r], *res)
        slow = [r for r in range(len(indices)) if out[r] is None]
    for r in slow:
        out[r] = (indices[r], *refit_estimates(task, ys[r]))
    return out


def _batch_refits(task: BootTask, ys: list[np.ndarray]) -> list:
    """(θ, σ-scale parameters, β, objective) of each response refitted by
    :func:`batch_newton` from θ̂, or None where Newton's method did not converge."""
    dev = task.dev
    lay = dev.layout
    bd = BatchDeviance(dev, [task.blocks(y) for y in ys])
    th0 = np.asarray(task.theta, dtype=float).copy()
    diag = lay.row == lay.col
    # θ̂ with a zero SD is a saddle of the (sign-symmetric) deviance for replicates whose
    # optimum is not there: start those elements a little off
    th0[diag & (np.abs(th0) < 0.05)] = 0.05
    h = 1e-4 * np.maximum(np.abs(th0), max(1e-2, 0.1 * float(np.abs(th0).max())))
    R = len(ys)
    with one_blas_thread():
        x, fx, conv = batch_newton(bd, np.repeat(th0[None, :], R, axis=0), h)
        # An optimum on or near the boundary (an SD at or near 0) may be a false one: as the
        # one-by-one refits do, look from lme4's start and from off the boundary too (with
        # that SD's column reset); keep the best.
        near = _near_zero(lay, _positive_diagonal(lay, x), task.theta)
        edge = np.flatnonzero(conv & near.any(axis=1))
        if len(edge):
            off = _off_boundary(lay, _positive_diagonal(lay, x[edge]), near[edge])
            for start in (np.repeat(lay.start[None, :], len(edge), axis=0), off):
                sub = _Rows(bd, edge)
                x2, f2, c2 = batch_newton(sub, start, h)
                better = c2 & (f2 < fx[edge] - 1e-9 * np.maximum(1.0, np.abs(fx[edge])))
                x[edge[better]], fx[edge[better]] = x2[better], f2[better]
        fast = np.flatnonzero(conv & np.isfinite(fx))
        out: list = [None] * R
        if len(fast) == 0:
            return out
        xf = _positive_diagonal(lay, x[fast])
        obj, beta, sigma = bd.estimates(xf, fast)
    for j, r in enumerate(fast):
        theta = theta_for_data(lay, xf[j], dev.cp.z_scale)
        out[r] = (theta, sdcor_from_theta(lay, theta, sigma[j]), beta[j], float(obj[j]))
    return out


class _Rows:
    """A :class:`BatchDeviance` restricted to some of its replicates (rows renumbered)."""

    def __init__(self, bd: BatchDeviance, rows: np.ndarray):
        self.bd, self.rows = bd, rows

    def __call__(self, theta: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.bd(theta, self.rows[rows])


def _positive_diagonal(lay: ThetaLayout, theta: np.ndarray) -> np.ndarray:
    """Flip the sign of every column of Λ with a negative diagonal element (the deviance
    depends on Λ only through ΛΛ'-invariant quantities, so it does not change)."""
    theta = theta.copy()
    for i in np.flatnonzero(lay.row == lay.col):
        col = (lay.term == lay.term[i]) & (lay.col == lay.col[i])
        neg = theta[:, i] < 0
        theta[np.ix_(neg, col)] *= -1.0
    return theta


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, total: int, enabled: bool | None):
        tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.on = tty if enabled is None else bool(enabled) and tty
        self.total, self.done, self.t0, self.last = total, 0, time.perf_counter(), 0.0

    def update(self, k: int) -> None:
        self.done += k
        if not self.on:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and self.done < self.total:
            return
        self.last = now
        frac = self.done / self.total
        bar = "=" * int(30 * frac)
        el = now - self.t0
        sys.stderr.write(
            f"\rbootstrap {self.done:>{len(str(self.total))}}/{self.total} "
            f"[{bar:<30}] {100 * frac:3.0f}% {el:5.1f}s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass
class BootstrapResult:
    """Replicates of a parametric bootstrap.

    ``estimates`` (n, params): lme4's σ-scale variance parameters, ``sigma`` and the fixed
    effects of each refit (columns named as :func:`param_names`); ``theta`` (n, len(θ));
    ``objective`` (n,); ``original``: the same parameters of the fit itself. Failed refits
    (no finite objective) are rows of NaN."""

    estimates: pd.DataFrame
    theta: np.ndarray
    objective: np.ndarray
    original: pd.Series
    seed: int | None
    seconds: float = 0.0
    workers: int = 1

    @property
    def n(self) -> int:
        return len(self.estimates)

    def renamed(self, names: dict[str, str]) -> BootstrapResult:
        """The same replicates with the parameters renamed (``names``: old -> new)."""
        return replace(
            self,
            estimates=self.estimates.rename(columns=names),
            original=self.original.rename(index=names),
        )

    @property
    def failed(self) -> int:
        return int(np.isnan(self.objective).sum())

    @property
    def se(self) -> pd.Series:
        """Bootstrap standard errors: the replicates' standard deviations."""
        return self.estimates.std(ddof=1)

    @property
    def bias(self) -> pd.Series:
        """Mean of the replicates minus the original estimate."""
        return self.estimates.mean() - self.original

    def confint(self, level: float = 0.95, type: str = "perc") -> pd.DataFrame:
        """Bootstrap intervals, as lme4's ``boot.type``: ``"perc"`` the (1-level)/2 and
        (1+level)/2 quantiles q_lo, q_hi of each column; ``"basic"`` (2t̂ - q_hi, 2t̂ - q_lo);
        ``"norm"`` t̂ - bias ∓ z se. NaN replicates (e.g. a correlation when an SD is 0) are
        left out."""
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
            raise MultilevelError(f"level must be a number between 0 and 1, not {level!r}")
        if type not in ("perc", "basic", "norm"):
            raise MultilevelError(f"type must be 'perc', 'basic' or 'norm', not {type!r}")
        a = (1 - level) / 2
        vals = self.estimates.to_numpy()
        t0 = self.original.to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            if type == "norm":
                z = norm_ppf(1 - a)
                centre = 2 * t0 - np.nanmean(vals, axis=0)
                se = np.nanstd(vals, axis=0, ddof=1)
                lo, hi = centre - z * se, centre + z * se
            else:
                lo, hi = np.nanquantile(vals, [a, 1 - a], axis=0)
                if type == "basic":
                    lo, hi = 2 * t0 - hi, 2 * t0 - lo
        return pd.DataFrame(
            np.column_stack([lo, hi]),
            index=self.estimates.columns,
            columns=[perc_label(a), perc_label(1 - a)],
        )

    def __repr__(self) -> str:
        lines = [
            f"Parametric bootstrap: {self.n} replicates ({self.failed} failed), seed {self.seed},"
            f" {self.seconds:.2f} s on {self.workers} worker(s)",
        ]
        tab = pd.DataFrame({"original": self.original, "bias": self.bias, "std. error": self.se})
        lines.append(tab.to_string(float_format=lambda v: f"{v:.6g}"))
        return "\n".join(lines)


def bootstrap(
    fit, n: int = 1000, seed: int | None = None, workers: int = 1, progress: bool | None = None
) -> BootstrapResult:
    """Parametric bootstrap: ``n`` responses simulated from ``fit``, each refitted by the
    fit's criterion (REML or ML), starting from θ̂.

    ``seed``: int (or None for fresh entropy, recorded in the result); the same seed gives the
    same replicates for any ``workers``. ``workers`` > 1 runs replicates in that many
    processes (``-1``: one per core). ``progress``: None shows a bar on stderr when it is a
    terminal, False never."""
    n = check_count(n, "n")
    if workers == -1:
        workers = os.cpu_count() or 1
    workers = check_count(workers, "workers")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise MultilevelError(f"seed must be an integer or None, not {seed!r}")
    root = np.random.SeedSequence(seed)
    children = root.spawn(n)
    task = BootTask.from_fit(fit)
    t0 = time.perf_counter()
    bar = Progress(n, progress)
    rows: list = [None] * n
    try:
        if workers == 1:
            step = max(100, math.ceil(n / 10))  # refits go in batches; the bar moves per batch
            # (a replicate's numbers do not depend on the batch it is in)
            for s in range(0, n, step):
                idx = list(range(s, min(s + step, n)))
                for r in _run_chunk(idx, [children[i] for i in idx], task):
                    rows[r[0]] = r[1:]
                bar.update(len(idx))
        else:
            size = max(25, min(250, math.ceil(n / (workers * 4))))
            with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(task,)) as pool:
                futs = []
                for s in range(0, n, size):
                    idx = list(range(s, min(s + size, n)))
                    futs.append(pool.submit(_run_chunk, idx, [children[i] for i in idx]))
                for fut in as_completed(futs):
                    res = fut.result()
                    for r in res:
                        rows[r[0]] = r[1:]
                    bar.update(len(res))
    finally:
        bar.close()
    names = param_names(fit)
    theta = np.array([r[0] for r in rows])
    est = np.array([np.concatenate([r[1], r[2]]) for r in rows])
    obj = np.array([r[3] for r in rows], dtype=float)
    original = pd.Series(
        np.concatenate(
            [sdcor_from_theta(fit.deviance.layout, fit.theta, fit.sigma), fit.fixef.to_numpy()]
        ),
        index=names,
    )
    return BootstrapResult(
        estimates=pd.DataFrame(est, columns=names),
        theta=theta,
        objective=obj,
        original=original,
        seed=seed if seed is not None else int(root.entropy),
        seconds=time.perf_counter() - t0,
        workers=workers,
    )
