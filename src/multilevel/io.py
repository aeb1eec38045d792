"""Save and load a fit: a documented, versioned file that is not a pickle.

A fit file is a ZIP archive with two members:

``fit.json``
    ``{"format": "multilevel-fit", "version": 1, "multilevel": "<package version>",
    "formula", "reml", "data_name", "n_dropped", "theta": [...], "objective",
    "optimizer": {"converged", "message", "evaluations", "gradient"}}``; floats are written
    with Python's shortest round-trip repr, so they are read back bit for bit.
``data.parquet``
    the rows and columns the fit used (after missing values were dropped), with their types.

Loading rebuilds the model from the formula and the data, factors the deviance at the stored
θ (no optimisation) and checks that it reproduces the stored objective: a file whose parts do
not belong together is refused. Nothing in the file is executed; the formula passes the same
allow-list as any other.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError

FORMAT = "multilevel-fit"
VERSION = 1


def save(fit, path: str | Path) -> None:
    """Write ``fit`` to ``path`` (conventionally ``*.mlfit``)."""
    data = fit._frame.data
    if data is None:
        raise DataError("this fit does not hold its data, so it cannot be saved")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "multilevel": _package_version(),
        "formula": fit.formula,
        "reml": bool(fit.reml),
        "data_name": fit.data_name,
        "n_dropped": int(fit.n_dropped),
        "theta": [float(v) for v in fit.optim.theta],
        "objective": float(fit.objective),
        "optimizer": {
            "converged": bool(fit.converged),
            "message": fit.optim.message,
            "evaluations": int(fit.optim.nevals),
            "gradient": None
            if fit.optim.gradient is None
            else [float(v) for v in fit.optim.gradient],
        },
    }
    buf = io.BytesIO()
    data.to_parquet(buf, index=False)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("fit.json", json.dumps(meta, indent=1))
        z.writestr("data.parquet", buf.getvalue())


def load(path: str | Path):
    """Read a fit written by :func:`save`."""
    from .api import blas_threads_for
    from .blocks import crossproducts
    from .deviance import ProfiledDeviance
    from .frame import build_frame
    from .optimize import OptimResult
    from .results import LinearMixedModel

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
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise DataError(
            f"'{path}' was written in fit-file format version {version}; this multilevel "
            f"({_package_version()}) reads up to version {VERSION}: upgrade multilevel"
        )
    try:
        theta = np.array(meta["theta"], dtype=float)
        objective = float(meta["objective"])
        formula, reml = str(meta["formula"]), bool(meta["reml"])
        opt = meta["optimizer"]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"'{path}' is missing a field of the fit ({e})") from None
    frame = build_frame(formula, data)
    frame.n_dropped = int(meta.get("n_dropped", 0))
    cp = crossproducts(frame)
    dev = ProfiledDeviance(cp, [rt.correlated for rt in frame.reterms], reml=reml)
    if len(theta) != dev.layout.size:
        raise DataError(
            f"'{path}' is corrupted: theta has {len(theta)} values, the model needs "
            f"{dev.layout.size}"
        )
    with blas_threads_for(dev):
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
    with blas_threads_for(dev):
        fit = LinearMixedModel(frame, cp, dev, optim, fac, reml, meta.get("data_name"))
    fit.objective = objective
    return fit


def _package_version() -> str:
    from . import __version__

    return __version__
