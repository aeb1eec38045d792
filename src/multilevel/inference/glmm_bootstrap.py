"""Parametric bootstrap of a generalized linear mixed model (lme4's ``bootMer``).

Each replicate draws new random effects b ~ N(0, ΛΛ') and a new response y* | b from the
family (:meth:`~multilevel.model.glmm.GeneralizedLinearMixedFit.simulate`), then refits the
model by the fit's own objective (Laplace or AGQ), stage 2 from the original (θ̂, β̂) with the
restarts off the boundary of :func:`~multilevel.fitting.glmm.optimize_glmm`. Replicate i uses
the i-th child of ``SeedSequence(seed)``, so the replicates do not depend on ``workers``.
A refit that fails gives a row of NaN (counted in ``failed``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..engine import Response
from ..engine.layout import sdcor_from_theta, theta_for_data
from ..engine.pirls import GlmmDeviance
from ..errors import MultilevelError
from ..fitting.glmm import GlmmProblem, optimize_glmm
from ..model.simulate import check_count
from .bootstrap import BootstrapResult, Progress
from .varpar import variance_names


@dataclass
class GlmmBootTask:
    """What a worker needs: the fit's design and response, the family, nAGQ, the start
    x̂ = (θ̂, β̂) and the scales of the random-effects columns."""

    problem: GlmmProblem
    start: np.ndarray
    z_scale: list

    def refit(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(θ on the data's scale, σ-scale variance parameters and β, objective) of y."""
        dev0 = self.problem.deviance
        response = Response(y, dev0.response.weights, dev0.response.offset)
        dev = GlmmDeviance(dev0.design, response, dev0.family, self.problem.nagq)
        problem = GlmmProblem(dev0.family, self.problem.nagq, dev)
        nt = dev.layout.size
        try:
            res = optimize_glmm(problem, start=self.start, with_vcov=False)
        except (ArithmeticError, ValueError, np.linalg.LinAlgError):
            return np.full(nt, np.nan), np.full(nt + dev.p, np.nan), np.nan
        theta = theta_for_data(dev.layout, res.x[:nt], self.z_scale)
        sdcor = sdcor_from_theta(dev.layout, theta, 1.0)[:-1]
        return theta, np.concatenate([sdcor, res.modes.beta]), float(res.modes.objective)


_TASK: GlmmBootTask | None = None


def _init(task: GlmmBootTask) -> None:
    global _TASK
    _TASK = task


def _replicate(args):
    y, task = args[0], (args[1] if args[1] is not None else _TASK)
    return task.refit(y)


def glmm_bootstrap(
    fit, n: int = 1000, seed: int | None = None, workers: int = 1, progress: bool | None = None
) -> BootstrapResult:
    """``n`` replicates (module docstring); the columns are lme4's variance parameters
    (``sd_...``, ``cor_...``) and the fixed effects."""
    n = check_count(n, "n")
    if workers == -1:
        workers = os.cpu_count() or 1
    workers = check_count(workers, "workers")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise MultilevelError(f"seed must be an integer or None, not {seed!r}")
    root = np.random.SeedSequence(seed)
    children = root.spawn(n)
    lay = fit.problem.deviance.layout
    z_scale = fit.factorization.deviance.cp.z_scale
    start = np.concatenate([fit.optim.theta, fit.fixef.to_numpy()])
    task = GlmmBootTask(fit.problem, start, z_scale)
    t0 = time.perf_counter()
    bar = Progress(n, progress)
    ys = [fit.simulate(1, seed=np.random.default_rng(c))[:, 0] for c in children]
    rows = []
    try:
        if workers == 1:
            for y in ys:
                rows.append(task.refit(y))
                bar.update(1)
        else:
            with ProcessPoolExecutor(workers, initializer=_init, initargs=(task,)) as pool:
                for r in pool.map(_replicate, [(y, None) for y in ys], chunksize=4):
                    rows.append(r)
                    bar.update(1)
    finally:
        bar.close()
    names = variance_names(lay, fit.schema.terms) + list(fit.fixef.index)
    original = np.concatenate([sdcor_from_theta(lay, fit.theta, 1.0)[:-1], fit.fixef.to_numpy()])
    return BootstrapResult(
        estimates=pd.DataFrame(np.array([r[1] for r in rows]), columns=names),
        theta=np.array([r[0] for r in rows]),
        objective=np.array([r[2] for r in rows], dtype=float),
        original=pd.Series(original, index=names),
        seed=seed if seed is not None else int(root.entropy),
        seconds=time.perf_counter() - t0,
        workers=workers,
    )
