"""Save and load a fit: a documented, versioned file that is not a pickle.

A fit file is a ZIP archive with two members:

``fit.json``
    ``{"format": "multilevel-fit", "version": 2, "multilevel": "<package version>",
    "formula", "reml", "data_name", "n_dropped", "n_zero_weight", "weights", "offset",
    "theta": [...],
    "objective", "optimizer": {"converged", "message", "evaluations", "gradient"},
    "two_level": null or {"formula", "group", "group_formula", "varying"},
    "glmm": null or {"family", "link", "nagq", "beta", "hessian"}}``; floats are written
    with Python's shortest round-trip repr, so they are read back bit for bit. For a
    binomial or Poisson fit, ``theta`` is θ of the deviance, ``beta`` β̂ and ``hessian`` the
    objective's Hessian in (θ, β) (vcov(β̂) comes from it). Versions 1 (no ``weights``,
    ``offset``, ``two_level``) and 2 (no ``glmm``) are read too.
``data.parquet``
    the rows and columns the fit used (after missing values were dropped), with their types.

Loading rebuilds the model from the formula and the data, evaluates the deviance at the
stored θ (and β for a GLMM; no optimisation) and checks that it reproduces the stored
objective: a file whose parts do
not belong together is refused (so is a ``two_level`` entry that does not translate to
``formula``: ``varying`` is the list of varying terms, "1" for the intercept). Nothing in
the file is executed; the formula passes the same allow-list as any other.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import build_frame
from ..engine import one_blas_thread
from ..errors import DataError
from ..fitting.glmm import GlmmFitResult, prepare_glmm, vcov_from_hessian
from ..fitting.lmm import prepare
from ..fitting.optimize import OptimResult
from ..model.glmm import GeneralizedLinearMixedFit
from ..twolevel import TwoLevelFit, translate

FORMAT = "multilevel-fit"
VERSION = 3


def _floats(values) -> list[float]:
    return [float(v) for v in np.ravel(values)]


def save(fit, path: str | Path, version: str = "") -> None:
    """Write ``fit`` (a linear or generalized linear mixed fit, or a two-level fit) to
    ``path`` (conventionally ``*.mlfit``); ``version`` is the package's, recorded in the
    file."""
    two_level = None
    if isinstance(fit, TwoLevelFit):
        spec = fit.spec
        varying = list(spec.varying)
        two_level = {
            "formula": spec.formula,
            "group": spec.group,
            "group_formula": spec.group_formula,
            "varying": varying,
        }
        fit = fit.lmm
    glmm = None
    if isinstance(fit, GeneralizedLinearMixedFit):
        glmm = {
            "family": fit.family,
            "link": fit.link,
            "nagq": int(fit.nagq),
            "beta": _floats(fit.fixef),
            "hessian": [_floats(row) for row in fit.result.hessian],
        }
    data = fit.frame.data
    if data is None:
        raise DataError("this fit does not hold its data, so it cannot be saved")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "multilevel": version,
        "formula": fit.formula,
        "reml": bool(fit.reml),
        "data_name": fit.data_name,
        "n_dropped": int(fit.n_dropped),
        "n_zero_weight": int(fit.schema.n_zero_weight),
        "weights": fit.schema.weights,
        "offset": fit.schema.offset,
        "theta": _floats(fit.optim.theta if glmm else fit.factorization.theta),
        "objective": float(fit.objective),
        "optimizer": {
            "converged": bool(fit.converged),
            "message": fit.optim.message,
            "evaluations": int(fit.optim.nevals),
            "gradient": None
            if fit.optim.gradient is None
            else [float(v) for v in fit.optim.gradient],
        },
        "two_level": two_level,
        "glmm": glmm,
    }
    buf = io.BytesIO()
    data.to_parquet(buf, index=False)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("fit.json", json.dumps(meta, indent=1))
        z.writestr("data.parquet", buf.getvalue())


def load(path: str | Path, model_class, two_level_class, glmm_class=None, version: str = ""):
    """Read a fit written by :func:`save`: an instance of ``model_class`` (built like
    :class:`~multilevel.model.LinearMixedFit`) or ``glmm_class`` (built like
    :class:`~multilevel.model.glmm.GeneralizedLinearMixedFit`), or of ``two_level_class``
    around one when the file holds a two-level fit."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no fit file at '{path}'")
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("fit.json"))
            data = pd.read_parquet(io.BytesIO(z.read("data.parquet")))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError, ValueError) as e:
        raise DataError(f"'{path}' is not a readable multilevel fit file ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"'{path}' is not a multilevel fit file")
    file_version = meta.get("version")
    if not isinstance(file_version, int) or file_version > VERSION:
        raise DataError(
            f"'{path}' was written in fit-file format version {file_version}; this multilevel "
            f"({version}) reads up to version {VERSION}: upgrade multilevel"
        )
    try:
        theta = np.array(meta["theta"], dtype=float)
        objective = float(meta["objective"])
        formula, reml = str(meta["formula"]), bool(meta["reml"])
        opt = meta["optimizer"]
        weights, offset = meta.get("weights"), meta.get("offset")
        two_level = meta.get("two_level")
        glmm = meta.get("glmm")
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"'{path}' is missing a field of the fit ({e})") from None
    if glmm is not None:
        fit = _load_glmm(path, meta, data, glmm_class)
        if two_level is None:
            return fit
        return two_level_class(_two_level_spec(path, two_level, formula), fit)
    frame = build_frame(formula, data, weights=weights, offset=offset)
    frame.schema = replace(
        frame.schema,
        n_dropped=int(meta.get("n_dropped", 0)),
        n_zero_weight=int(meta.get("n_zero_weight", 0)),
    )
    problem = prepare(frame, reml=reml)
    dev = problem.deviance
    if len(theta) != dev.layout.size:
        raise DataError(
            f"'{path}' is corrupted: theta has {len(theta)} values, the model needs "
            f"{dev.layout.size}"
        )
    with one_blas_thread():
        fac = dev.factor(theta)
    if fac is None or not math.isclose(fac.objective, objective, rel_tol=1e-9, abs_tol=1e-9):
        raise DataError(
            f"'{path}' is corrupted: its data and parameters give objective "
            f"{getattr(fac, 'objective', float('nan'))}, not the stored {objective}"
        )
    grad = opt.get("gradient")
    optim = OptimResult(
        theta=theta,
        objective=objective,
        nevals=int(opt.get("evaluations", 0)),
        converged=bool(opt.get("converged", False)),
        message=str(opt.get("message", "")),
        gradient=None if grad is None else np.array(grad, dtype=float),
    )
    with one_blas_thread():
        fit = model_class(frame, problem, optim, fac, meta.get("data_name"))
    fit.objective = objective
    if two_level is None:
        return fit
    return two_level_class(_two_level_spec(path, two_level, formula), fit)


def _load_glmm(path: Path, meta: dict, data: pd.DataFrame, glmm_class):
    """A binomial or Poisson fit from its file: the deviance at the stored (θ, β) must give
    the stored objective."""
    from ..engine.family import family

    entry = meta["glmm"]
    try:
        fam = family(str(entry["family"]), str(entry["link"]))
        nagq = int(entry["nagq"])
        theta = np.array(meta["theta"], dtype=float)
        beta = np.array(entry["beta"], dtype=float)
        H = np.array(entry["hessian"], dtype=float)
        objective = float(meta["objective"])
        opt = meta["optimizer"]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"'{path}' is missing a field of the fit ({e})") from None
    frame = build_frame(
        str(meta["formula"]), data, weights=meta.get("weights"), offset=meta.get("offset"),
        family=fam.name,
    )  # fmt: skip
    frame.schema = replace(frame.schema, n_dropped=int(meta.get("n_dropped", 0)))
    problem = prepare_glmm(frame, fam, nagq)
    dev = problem.deviance
    nt, p = dev.layout.size, dev.p
    if len(theta) != nt or len(beta) != p or H.shape != (nt + p, nt + p):
        raise DataError(
            f"'{path}' is corrupted: theta, beta or the Hessian do not fit the model "
            f"({nt} theta and {p} fixed effects)"
        )
    with one_blas_thread():
        modes = dev.modes(theta, beta)
    if modes is None or not math.isclose(modes.objective, objective, rel_tol=1e-9):
        raise DataError(
            f"'{path}' is corrupted: its data and parameters give objective "
            f"{getattr(modes, 'objective', float('nan'))}, not the stored {objective}"
        )
    grad = opt.get("gradient")
    optim = OptimResult(
        theta=theta,
        objective=objective,
        nevals=int(opt.get("evaluations", 0)),
        converged=bool(opt.get("converged", False)),
        message=str(opt.get("message", "")),
        gradient=None if grad is None else np.array(grad, dtype=float),
    )
    x = np.concatenate([theta, beta])
    result = GlmmFitResult(x, optim, optim, modes, H, vcov_from_hessian(H, nt))
    fit = glmm_class(frame, problem, result, meta.get("data_name"))
    fit.objective = objective
    return fit


def _two_level_spec(path: Path, entry, formula: str):
    """The two-level specification of a fit file's ``two_level`` entry; refused unless it
    translates to the file's (lme4) ``formula``."""
    keys = ("formula", "group", "group_formula", "varying")
    if not isinstance(entry, dict) or any(k not in entry for k in keys):
        raise DataError(f"'{path}' is corrupted: its two_level entry needs {', '.join(keys)}")
    varying = entry["varying"]
    if not isinstance(varying, list) or not all(isinstance(v, str) for v in varying):
        raise DataError(f"'{path}' is corrupted: two_level.varying must be a list of terms")
    spec = translate(entry["formula"], entry["group"], entry["group_formula"], varying)
    if "".join(spec.lme4_formula.split()) != "".join(formula.split()):
        raise DataError(
            f"'{path}' is corrupted: its two-level model amounts to '{spec.lme4_formula}', "
            f"not the stored formula '{formula}'"
        )
    return spec
