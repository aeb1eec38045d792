"""Dense factorizations and triangular solves of the engine, one kernel per size.

A model with one random-effects term and p fixed effects leaves a Schur complement of order
m = p + 1 (sleepstudy's: 3). For m ≤ :data:`SMALL` the Cholesky factor is written out in
closed form: it costs less than the call into LAPACK (0.6 µs against 1.0 µs for m = 3) and
needs no scipy, which a fit of such a model then never imports. Larger matrices go to
LAPACK's ``dpotrf`` in place; triangular solves of order above :data:`SMALL_SOLVE` to
``dtrtrs`` through scipy, smaller ones to numpy.
"""

from __future__ import annotations

import copy
import math
from functools import cache

import numpy as np

#: largest order factored in closed form
SMALL = 4
#: largest order of a triangular system solved by numpy (scipy's triangular solver above)
SMALL_SOLVE = 64


@cache
def _lapack():
    from scipy.linalg import lapack

    return lapack


def _small(a: list[list[float]]) -> list[list[float]] | None:
    """Lower Cholesky factor of a symmetric 1 x 1 to 4 x 4 matrix given as rows (only the
    lower triangle is read); None when it is not positive definite."""
    m = len(a)
    s = a[0][0]
    if not s > 0.0:
        return None
    l11 = math.sqrt(s)
    if m == 1:
        return [[l11]]
    l21 = a[1][0] / l11
    s = a[1][1] - l21 * l21
    if not s > 0.0:
        return None
    l22 = math.sqrt(s)
    if m == 2:
        return [[l11, 0.0], [l21, l22]]
    l31 = a[2][0] / l11
    l32 = (a[2][1] - l31 * l21) / l22
    s = a[2][2] - l31 * l31 - l32 * l32
    if not s > 0.0:
        return None
    l33 = math.sqrt(s)
    if m == 3:
        return [[l11, 0.0, 0.0], [l21, l22, 0.0], [l31, l32, l33]]
    l41 = a[3][0] / l11
    l42 = (a[3][1] - l41 * l21) / l22
    l43 = (a[3][2] - l41 * l31 - l42 * l32) / l33
    s = a[3][3] - l41 * l41 - l42 * l42 - l43 * l43
    if not s > 0.0:
        return None
    return [[l11, 0.0, 0.0, 0.0], [l21, l22, 0.0, 0.0], [l31, l32, l33, 0.0],
            [l41, l42, l43, math.sqrt(s)]]  # fmt: skip


def cholesky(S: np.ndarray, full: bool):
    """S = LL' from S's lower triangle (S may be overwritten): (the diagonal of L (m,), L
    (m, m) lower triangular when ``full``, else None), or None when S is not positive
    definite."""
    m = S.shape[0]
    if m <= SMALL:
        L = _small(S.tolist())
        if L is None:
            return None
        diag = np.array([L[i][i] for i in range(m)])
        return diag, (np.array(L) if full else None)
    # S.T is S's Fortran-ordered view, whose upper triangle LAPACK factors in place as U = L'
    U, info = _lapack().dpotrf(S.T, lower=0, clean=0, overwrite_a=1)
    if info != 0:
        return None
    L = U.T
    return np.diagonal(L), (np.tril(L) if full else None)


def solve_triangular(A: np.ndarray, B: np.ndarray, lower: bool) -> np.ndarray:
    """A⁻¹B for triangular A (n, n) (``lower``: A is lower triangular, else upper)."""
    n = A.shape[0]
    if n == 0:
        return np.zeros(B.shape)
    if n <= SMALL_SOLVE:
        T = np.tril(A) if lower else np.triu(A)
        return np.linalg.solve(T, B)
    from scipy.linalg import solve_triangular as solve

    return solve(A, B, lower=lower)


def csr_with_data(template, data: np.ndarray):
    """A CSR matrix with ``template``'s pattern (indices, indptr and shape, shared, never
    written) and the values ``data``: PIRLS refills the same patterns hundreds of times, and
    scipy's constructor checks the pattern anew at each call (~0.1 ms)."""
    out = copy.copy(template)
    out.data = data
    return out
