"""A simulated school study: students i in schools j drawn from the seed's two-level model

    y_i = α_j[i] + β_j[i] x_i + ε_i,          ε_i ~ N(0, σ_y²)
    α_j = a0 + b0 u_j + η_j1,  β_j = a1 + b1 u_j + η_j2,   (η_j1, η_j2) ~ N(0, Σ)

with x_i ~ N(0, 1) (a student-level predictor) and u_j ~ N(0, 1) (a school-level one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError


def simulate_schools(
    n_schools: int = 30,
    students_per_school=20,
    a0: float = 0.0,
    b0: float = 1.0,
    a1: float = 1.0,
    b1: float = 0.5,
    Sigma=((0.25, 0.0), (0.0, 0.09)),
    sigma_y: float = 1.0,
    seed=None,
) -> pd.DataFrame:
    """Draw a school study. ``students_per_school`` is an int or one count per school;
    ``Sigma`` (2, 2) is the covariance of (η_1, η_2).

    Returns a DataFrame with columns ``school`` (labels "S01", ...), ``x``, ``u``, ``y``, and
    the truth in ``df.attrs["truth"]``: a0, b0, a1, b1, Sigma, sigma_y and per school
    (lists in school order) ``school``, ``u``, ``alpha``, ``beta``, ``n``.

    Draw order, for reproducibility: u (J,), η (J, 2), x (n,), ε (n,)."""
    J = int(n_schools)
    if J < 1 or J != n_schools:
        raise DataError(f"n_schools must be a positive integer, not {n_schools!r}")
    sizes = np.asarray(students_per_school)
    if sizes.ndim == 0:
        sizes = np.full(J, sizes)
    if sizes.shape != (J,) or not np.issubdtype(sizes.dtype, np.integer) or (sizes < 1).any():
        raise DataError(
            "students_per_school must be a positive integer or one positive integer per "
            f"school ({J} values)"
        )
    S = np.asarray(Sigma, dtype=float)
    if S.shape != (2, 2) or not np.allclose(S, S.T):
        raise DataError(f"Sigma must be a symmetric 2 x 2 matrix, not {S.tolist()}")
    w, Q = np.linalg.eigh(S)
    if w.min() < -1e-12 * max(1.0, w.max()):
        raise DataError(f"Sigma must be positive semi-definite (eigenvalues {w.tolist()})")
    if not sigma_y > 0:
        raise DataError(f"sigma_y must be positive, not {sigma_y!r}")
    root = Q * np.sqrt(np.clip(w, 0, None))
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(J)
    eta = rng.standard_normal((J, 2)) @ root.T
    alpha = a0 + b0 * u + eta[:, 0]
    beta = a1 + b1 * u + eta[:, 1]
    school = np.repeat(np.arange(J), sizes)
    n = len(school)
    x = rng.standard_normal(n)
    y = alpha[school] + beta[school] * x + sigma_y * rng.standard_normal(n)
    width = len(str(J))
    labels = np.array([f"S{j + 1:0{width}d}" for j in range(J)])
    df = pd.DataFrame({"school": labels[school], "x": x, "u": u[school], "y": y})
    df.attrs["truth"] = {
        "a0": float(a0),
        "b0": float(b0),
        "a1": float(a1),
        "b1": float(b1),
        "Sigma": S.tolist(),
        "sigma_y": float(sigma_y),
        "school": labels.tolist(),
        "u": u.tolist(),
        "alpha": alpha.tolist(),
        "beta": beta.tolist(),
        "n": sizes.tolist(),
    }
    return df
