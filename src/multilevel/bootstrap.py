"""Parametric bootstrap of a linear mixed model (lme4's ``bootMer``).

Replicate r draws y*_r from the fitted model (:mod:`multilevel.simulate`) and refits it:
the blocks of the new response come from :func:`multilevel.blocks.with_response` (one pass
over y), the deviance shares the fit's θ-independent structure
(:meth:`ProfiledDeviance.with_crossproducts`), and the optimiser starts at θ̂, where the
replicate's optimum usually is near. From the refit's θ*, σ* and β*:

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
from dataclasses import dataclass, field

import nlopt
import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular

from .api import blas_threads_for
from .blocks import CrossProducts, with_response
from .deviance import ProfiledDeviance, ThetaLayout
from .errors import MultilevelError
from .optimize import on_boundary
from .simulate import SimModel, _check_count

# ---------------------------------------------------------------------------------------
# lme4's σ-scale parameters: names and the map to and from θ
# ---------------------------------------------------------------------------------------


def varpar_names(fit) -> list[str]:
    """lme4's names of the variance parameters, in θ's order, then ``sigma``:
    ``sd_<term>|<group>`` for a diagonal element of Λ_i, ``cor_<row>.<col>|<group>`` for an
    off-diagonal one (``profile(fit, signames=FALSE)`` in lme4)."""
    lay = fit._layout
    out = []
    for t, a, b in zip(lay.term, lay.row, lay.col, strict=True):
        term = fit._terms[t]
        if a == b:
            out.append(f"sd_{term.names[a]}|{term.group}")
        else:
            out.append(f"cor_{term.names[a]}.{term.names[b]}|{term.group}")
    return out + ["sigma"]


def param_names(fit) -> list[str]:
    """All parameters in lme4's ``confint`` order: variance parameters, ``sigma``, fixed
    effects."""
    return varpar_names(fit) + list(fit.fixef.index)


def sdcor_from_theta(layout: ThetaLayout, theta: np.ndarray, sigma: float) -> np.ndarray:
    """θ (relative Cholesky factors) and σ → lme4's σ-scale vector (len(θ) + 1): for term i,
    Σ_i = σ² Λ_i Λ_i'; an element on Λ_i's diagonal becomes sqrt(Σ_i[a, a]), one below it the
    correlation Σ_i[a, b] / (sd_a sd_b) (NaN when an SD is 0); σ last."""
    out = np.empty(layout.size + 1)
    for t, lam in enumerate(layout.lambdas(theta)):
        S = sigma**2 * (lam @ lam.T)
        sd = np.sqrt(np.maximum(np.diag(S), 0.0))
        idx = np.flatnonzero(layout.term == t)
        for i in idx:
            a, b = layout.row[i], layout.col[i]
            if a == b:
                out[i] = sd[a]
            else:
                den = sd[a] * sd[b]
                out[i] = S[a, b] / den if den > 0 else np.nan
    out[-1] = sigma
    return out


def _psd_cholesky(C: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite correlation matrix (a zero pivot
    gives a zero column); None when C is not positive semi-definite."""
    k = C.shape[0]
    L = np.zeros_like(C)
    for j in range(k):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-10:
            return None
        L[j, j] = math.sqrt(max(d, 0.0))
        for i in range(j + 1, k):
            v = C[i, j] - L[i, :j] @ L[j, :j]
            if L[j, j] > 1e-12:
                L[i, j] = v / L[j, j]
            elif abs(v) > 1e-8:
                return None
    return L


def theta_from_sdcor(layout: ThetaLayout, v: np.ndarray) -> np.ndarray | None:
    """Inverse of :func:`sdcor_from_theta`: Λ_i = diag(sd) chol(R_i) / σ, with R_i the
    correlation matrix; None when the correlations are not a valid correlation matrix or
    σ <= 0."""
    v = np.asarray(v, dtype=float)
    sigma = v[-1]
    if not sigma > 0:
        return None
    theta = np.zeros(layout.size)
    for t, k in enumerate(layout.k):
        idx = np.flatnonzero(layout.term == t)
        rows, cols = layout.row[idx], layout.col[idx]
        diag = rows == cols
        sd = np.zeros(k)
        sd[rows[diag]] = v[idx[diag]]
        if (sd < 0).any():
            return None
        C = np.eye(k)
        for i, a, b in zip(idx[~diag], rows[~diag], cols[~diag], strict=True):
            C[a, b] = C[b, a] = v[i]
        Lc = _psd_cholesky(C)
        if Lc is None:
            return None
        lam = sd[:, None] * Lc / sigma
        theta[idx] = lam[rows, cols]
    return theta


def theta_for_deviance(layout: ThetaLayout, theta: np.ndarray, z_scale) -> np.ndarray:
    """θ on the data's scale (``fit.theta``, lme4's) → θ of the deviance, whose blocks hold
    Z_i D_i⁻¹ (:func:`multilevel.blocks.z_scales`): Λ_s = D Λ, element (a, b) times d_a."""
    d = np.array([z_scale[t][a] for t, a in zip(layout.term, layout.row, strict=True)])
    return np.asarray(theta, dtype=float) * d


def theta_for_data(layout: ThetaLayout, theta_s: np.ndarray, z_scale) -> np.ndarray:
    """Inverse of :func:`theta_for_deviance`."""
    d = np.array([z_scale[t][a] for t, a in zip(layout.term, layout.row, strict=True)])
    return np.asarray(theta_s, dtype=float) / d


# ---------------------------------------------------------------------------------------
# A local optimiser started where we choose
# ---------------------------------------------------------------------------------------


def minimize_from(
    f,
    x0,
    lower,
    upper=None,
    step=None,
    ftol_rel: float = 1e-12,
    xtol_abs: float = 1e-10,
    maxeval: int = 5000,
    restart: bool = True,
):
    """Minimise ``f`` with BOBYQA from ``x0`` within [lower, upper], then once more from the
    best point with a fresh (smaller) trust region, as :func:`multilevel.optimize.minimize_theta`
    checks its optima. Returns (x, f(x), evaluations); f(x) is inf when no point was finite."""
    x0 = np.asarray(x0, dtype=float)
    n = len(x0)
    lower = np.broadcast_to(np.asarray(lower, dtype=float), (n,)).copy()
    upper = (
        np.full(n, np.inf)
        if upper is None
        else np.broadcast_to(np.asarray(upper, dtype=float), (n,)).copy()
    )
    best = [np.clip(x0, lower, upper), math.inf]
    count = [0]

    def obj(x, grad):
        count[0] += 1
        v = f(x)
        if not np.isfinite(v):
            return 1e300
        if v < best[1]:
            best[0], best[1] = x.copy(), v
        return v

    def run(start, st):
        opt = nlopt.opt(nlopt.LN_BOBYQA, n)
        opt.set_lower_bounds(lower)
        opt.set_upper_bounds(upper)
        opt.set_min_objective(obj)
        opt.set_ftol_rel(ftol_rel)
        opt.set_xtol_abs(xtol_abs)
        opt.set_maxeval(maxeval)
        if st is not None:
            st = np.asarray(st, dtype=float)
            # the first step must stay within the bounds on one side at least
            room = np.maximum(upper - start, start - lower)
            opt.set_initial_step(np.minimum(np.broadcast_to(st, (n,)), np.maximum(room, 1e-8)))
        try:
            opt.optimize(np.clip(start, lower, upper))
        except (nlopt.RoundoffLimited, RuntimeError, ValueError):
            pass

    if n == 0:
        return x0, float(f(x0)), 1
    run(best[0], step)
    if restart and np.isfinite(best[1]):
        x1 = best[0]
        run(x1, np.maximum(0.05 * np.abs(x1), 0.01))
    return best[0], float(best[1]), count[0]


# ---------------------------------------------------------------------------------------
# Refits
# ---------------------------------------------------------------------------------------


@dataclass
class _Block:
    """What :func:`with_response` reads of a random-effects block."""

    Z: np.ndarray
    codes: np.ndarray
    nlevels: int

    @property
    def k(self) -> int:
        return self.Z.shape[1]


@dataclass
class _Design:
    X: np.ndarray
    reterms: list[_Block]


@dataclass
class BootTask:
    """Everything a replicate needs, as plain picklable arrays."""

    sim: SimModel
    design: _Design
    cp: CrossProducts
    dev: ProfiledDeviance
    theta: np.ndarray
    reml: bool

    @classmethod
    def from_fit(cls, fit) -> BootTask:
        fr = fit._frame
        design = _Design(fr.X, [_Block(rt.Z, rt.codes, rt.nlevels) for rt in fr.reterms])
        return cls(
            SimModel.from_fit(fit), design, fit._cp, fit._deviance, fit.optim.theta, fit.reml
        )


def refit_estimates(task: BootTask, y: np.ndarray):
    """Fit the task's model to response ``y`` (n,) starting from θ̂ (``task.theta`` is the
    deviance's θ). Returns (θ on the data's scale, σ-scale variance parameters with σ, β,
    objective)."""
    cp = with_response(task.cp, task.design, y)
    dev = task.dev.with_crossproducts(cp)
    lay = dev.layout
    with blas_threads_for(dev):
        step = np.maximum(0.2 * np.abs(task.theta), 0.05)
        x, fx, _ = minimize_from(dev, task.theta, lay.lower, step=step)
        if not np.isfinite(fx) or len(on_boundary(x, lay)):
            # a boundary optimum may be a false one: try from lme4's start as well
            x1, f1, _ = minimize_from(dev, lay.start, lay.lower)
            if f1 < fx:
                x, fx = x1, f1
        fac = dev.factor(x) if np.isfinite(fx) else None
    nt, p = lay.size, dev.p
    if fac is None:
        return np.full(nt, np.nan), np.full(nt + 1, np.nan), np.full(p, np.nan), np.nan
    qr, L = fac.qr, fac.L
    Lx = L[qr : qr + p, qr : qr + p]
    beta_s = solve_triangular(Lx.T, L[-1, qr : qr + p], lower=False) if p else np.zeros(0)
    beta = dev.cp.std.beta(beta_s)
    sigma = math.sqrt(fac.pwrss / (dev.n - p if task.reml else dev.n))
    theta = theta_for_data(lay, x, dev.cp.z_scale)
    return theta, sdcor_from_theta(lay, theta, sigma), beta, fx


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


def _run_chunk(indices: list[int], seeds: list[np.random.SeedSequence], task=None):
    task = task if task is not None else _WORKER_TASK
    out = []
    for i, ss in zip(indices, seeds, strict=True):
        y = task.sim.draw(np.random.default_rng(ss), 1)[:, 0]
        out.append((i, *refit_estimates(task, y)))
    return out


class _Progress:
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


def _perc_label(a: float) -> str:
    return f"{100 * a:.3g} %"


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
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.estimates)

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
                from scipy.stats import norm

                z = norm.ppf(1 - a)
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
            columns=[_perc_label(a), _perc_label(1 - a)],
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
    n = _check_count(n, "n")
    if workers == -1:
        workers = os.cpu_count() or 1
    workers = _check_count(workers, "workers")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise MultilevelError(f"seed must be an integer or None, not {seed!r}")
    root = np.random.SeedSequence(seed)
    children = root.spawn(n)
    task = BootTask.from_fit(fit)
    t0 = time.perf_counter()
    bar = _Progress(n, progress)
    rows: list = [None] * n
    try:
        if workers == 1:
            step = max(1, n // 100)
            for s in range(0, n, step):
                idx = list(range(s, min(s + step, n)))
                for r in _run_chunk(idx, [children[i] for i in idx], task):
                    rows[r[0]] = r[1:]
                bar.update(len(idx))
        else:
            size = max(1, min(50, math.ceil(n / (workers * 8))))
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
        np.concatenate([sdcor_from_theta(fit._layout, fit.theta, fit.sigma), fit.fixef.to_numpy()]),
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
