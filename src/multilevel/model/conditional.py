"""The conditional distribution of (σ, β, b) given θ̂ and y: the one object that the
group coefficients, prediction intervals and pooling measures draw from.

Given θ, with a flat prior on β and p(σ) ∝ 1/σ, the linear mixed model's posterior
factors exactly (Bates et al. 2015, section 3.4; Gelman & Hill's ``sim``):

    pwrss/σ² ~ χ²_{n-p},
    β | σ ~ N(β̂, σ² C),                          C = vcov(β̂)/σ̂²,
    b | β, σ ~ N(b̂ - H (β - β̂), σ² Λ P⁻¹ Λ'),    jointly over all terms and levels,

with H the coupling of the modes to β and P = Λ'Z'WZΛ + I
(:class:`~multilevel.engine.factorization.Factorization`). ``modes``, ``condvar`` (lme4's
condVar, β known) and ``coupling`` are its moments at σ̂; :meth:`draw` samples it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine import Factorization


@dataclass
class Draws:
    """``sigma`` (S,), ``beta`` (S, p) and per random-effects term ``b`` (S, l, k)."""

    sigma: np.ndarray
    beta: np.ndarray
    b: list[np.ndarray]


class ConditionalDistribution:
    """(σ, β, b) given θ̂ and y, per random-effects term of ``terms`` (the schema's)."""

    def __init__(self, fac: Factorization, terms):
        self.factorization = fac
        self.terms = tuple(terms)

    @property
    def modes(self) -> list[np.ndarray]:
        """b̂ (l, k) per term."""
        return self.factorization.modes

    @property
    def condvar(self) -> list[np.ndarray]:
        """Var(b | y, β) (l, k, k) per term at σ̂ (lme4's condVar)."""
        return self.factorization.condvar()

    @property
    def coupling(self) -> list[np.ndarray]:
        """H (l, k, p) per term: b̂(β) = b̂ - H (β - β̂)."""
        return self.factorization.fixef_coupling

    def total_var(self, term: int = 0) -> np.ndarray:
        """Var(b - b̂) (l, k, k) of a term counting β's uncertainty: condvar + H V H'."""
        fac = self.factorization
        H = fac.fixef_coupling[term]
        return self.condvar[term] + H @ fac.vcov() @ np.swapaxes(H, 1, 2)

    def draw(self, rng: np.random.Generator, ndraws: int, joint: bool = True) -> Draws:
        """``ndraws`` exact draws (module docstring). ``joint=False`` draws b around b̂
        whatever β is (arm's ``sim``, which treats them as independent). Draw order: the
        χ² of σ, β's normals, then b's (see ``Factorization.effect_noise``)."""
        fac = self.factorization
        nu = fac.deviance.n - fac.p
        sig = np.sqrt(fac.pwrss / rng.chisquare(nu, size=ndraws))
        p = fac.p
        C = fac.vcov_unscaled
        root = _psd_root(C) if p else np.zeros((0, 0))
        dbeta = sig[:, None] * (rng.standard_normal((ndraws, p)) @ root.T)
        beta = fac.beta + dbeta
        noise = fac.effect_noise(rng, ndraws)
        b = []
        for mode, H, x in zip(fac.modes, fac.fixef_coupling, noise, strict=True):
            bt = mode + sig[:, None, None] * x
            if joint and p:
                bt = bt - np.einsum("lap,sp->sla", H, dbeta)
            b.append(bt)
        return Draws(sig, beta, b)


def _psd_root(V: np.ndarray) -> np.ndarray:
    """A square root R with R R' = V for V positive semi-definite."""
    try:
        return np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        w, Q = np.linalg.eigh(V)
        return Q * np.sqrt(np.clip(w, 0, None))
