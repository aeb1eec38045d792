"""Richardson-extrapolated numerical derivatives, as numDeriv's ``genD`` (which lmerTest
uses for its Hessian and Jacobian)."""

from __future__ import annotations

import math

import numpy as np

ZERO_TOL = math.sqrt(np.finfo(float).eps / 7e-7)


def _richardson(a: list) -> np.ndarray:
    """Extrapolate estimates at steps h, h/2, h/4, ... (errors in h², h⁴, ...)."""
    a = [np.asarray(v, dtype=float) for v in a]
    for m in range(1, len(a)):
        a = [(a[k + 1] * 4**m - a[k]) / (4**m - 1) for k in range(len(a) - 1)]
    return a[0]


def gen_d(F, x, d: float = 0.1, eps: float = 1e-4, r: int = 4):
    """F(x) (m,), its Jacobian (m, k) and second derivatives (m, k, k) as numDeriv's ``genD``:
    central differences at steps h = d|x_i| (eps where x_i ≈ 0), h/2, ..., h/2^(r-1),
    Richardson-extrapolated; the mixed ones from F(x ± (h_i e_i + h_j e_j)) and the pure."""
    x = np.asarray(x, dtype=float)
    k = len(x)
    f0 = np.atleast_1d(np.asarray(F(x), dtype=float))
    h0 = np.abs(d * x) + eps * (np.abs(x) < ZERO_TOL)
    grad = np.empty((len(f0), k))
    hess = np.empty((len(f0), k, k))
    for i in range(k):
        g, s = [], []
        for lev in range(r):
            h = h0[i] / 2**lev
            e = np.zeros(k)
            e[i] = h
            f1, f2 = np.atleast_1d(F(x + e)), np.atleast_1d(F(x - e))
            g.append((f1 - f2) / (2 * h))
            s.append((f1 - 2 * f0 + f2) / h**2)
        grad[:, i] = _richardson(g)
        hess[:, i, i] = _richardson(s)
    for i in range(k):
        for j in range(i):
            s = []
            for lev in range(r):
                hi, hj = h0[i] / 2**lev, h0[j] / 2**lev
                e = np.zeros(k)
                e[i], e[j] = hi, hj
                f1, f2 = np.atleast_1d(F(x + e)), np.atleast_1d(F(x - e))
                num = f1 - 2 * f0 + f2 - hess[:, i, i] * hi**2 - hess[:, j, j] * hj**2
                s.append(num / (2 * hi * hj))
            hess[:, i, j] = hess[:, j, i] = _richardson(s)
    return f0, grad, hess


def hessian(f, x, d: float = 0.1, eps: float = 1e-4, r: int = 4) -> np.ndarray:
    """Hessian (k, k) of a scalar function (see :func:`gen_d`)."""
    return gen_d(lambda v: [f(v)], x, d, eps, r)[2][0]
