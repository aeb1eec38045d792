"""New responses drawn from a fitted linear mixed model.

    y* = X β̂ + Σ_i Z_i b_i* + o + ε*,   b_i* = σ̂ Λ̂_i u_i*  (per level, u_i* ~ N(0, I_{k_i})),
    ε*_r ~ N(0, σ̂²/w_r),

so each level's random effects are N(0, σ̂² Λ̂_i Λ̂_i') as the fit estimates them (o the offset,
w the prior weights). This is lme4's ``simulate(fit)`` with ``use.u = FALSE`` (new random
effects for every draw).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MultilevelError


@dataclass
class SimTerm:
    """One random-effects block as the simulator needs it: ``Z`` (n, k), ``codes`` (n,),
    ``lam`` (k, k) = Λ̂_i and the number of levels."""

    Z: np.ndarray
    codes: np.ndarray
    lam: np.ndarray
    nlevels: int

    @property
    def k(self) -> int:
        return self.Z.shape[1]


@dataclass
class SimModel:
    """The fitted model reduced to plain arrays (picklable, for worker processes):
    ``X`` (n, p), ``beta`` (p,), ``sigma``, one :class:`SimTerm` per block, the offset and
    the prior weights (None when absent)."""

    X: np.ndarray
    beta: np.ndarray
    sigma: float
    terms: list[SimTerm]
    offset: np.ndarray | None = None
    weights: np.ndarray | None = None

    @classmethod
    def from_fit(cls, fit) -> SimModel:
        fr = fit.frame
        terms = [
            SimTerm(rt.Z, rt.codes, lam, rt.nlevels)
            for rt, lam in zip(fr.reterms, fit.lambdas, strict=True)
        ]
        return cls(fr.X, fit.fixef.to_numpy(), float(fit.sigma), terms, fr.offset, fr.weights)

    @property
    def nobs(self) -> int:
        return self.X.shape[0]

    def draw(self, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        """``n`` responses (nobs, n). Draw order: each block's u (n, l_i, k_i) in turn,
        then ε (n, nobs); a generator in a given state always gives the same responses."""
        mu = self.X @ self.beta
        if self.offset is not None:
            mu = mu + self.offset
        out = np.repeat(mu[None, :], n, axis=0)  # (n, nobs)
        for t in self.terms:
            u = rng.standard_normal((n, t.nlevels, t.k))
            b = self.sigma * (u @ t.lam.T)  # (n, l, k): rows σ Λ u
            out += np.einsum("ik,sik->si", t.Z, b[:, t.codes, :])
        eps = self.sigma * rng.standard_normal((n, self.nobs))
        if self.weights is not None:
            eps /= np.sqrt(self.weights)
        out += eps
        return out.T


def check_count(n, what: str = "n") -> int:
    """``n`` as a positive int, or a clear error naming ``what``."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise MultilevelError(f"{what} must be a positive whole number, not {n!r}")
    return int(n)


def simulate_responses(fit, n: int = 1, seed=None) -> np.ndarray:
    """``n`` response vectors drawn from the fitted model, as an array (nobs, n).

    ``seed``: an int, a :class:`numpy.random.SeedSequence` or a :class:`numpy.random.Generator`
    (anything :func:`numpy.random.default_rng` takes); the same seed gives the same draws."""
    n = check_count(n)
    rng = np.random.default_rng(seed)
    return SimModel.from_fit(fit).draw(rng, n)
