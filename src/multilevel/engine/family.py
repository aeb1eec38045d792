"""Response distributions and link functions of generalized linear mixed models.

A :class:`Family` gives, for means μ and the linear predictor η = g(μ):

* ``link``: g, g⁻¹ and dμ/dη;
* ``variance(μ)``: Var(y)/φ per unit of prior weight;
* ``loglik(y, μ, w)``: the full log-likelihood Σ log f(y_i | μ_i) (constants included);
* ``dev_resid(y, μ, w)``: the unit deviances 2 w_i (log f(y_i | y_i) - log f(y_i | μ_i));
* ``mustart(y, w)``: R's starting means;
* ``simulate(rng, μ, w)``: new responses.

Binomial responses are proportions y_i = s_i / m_i with the trials m_i as prior weights
(R's convention: a 0/1 response has m_i = 1); Poisson responses are counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_EPS = np.finfo(float).eps


#: R's thresholds of the probit link: |η| at most -qnorm(ε)
_PROBIT_THRESH = 8.125890664701906


def _special():
    from scipy import special

    return special


@dataclass(frozen=True)
class Link:
    """A link function: ``name``, g (``fun``), g⁻¹ (``inverse``) and dμ/dη (``mu_eta``)."""

    name: str

    def fun(self, mu: np.ndarray) -> np.ndarray:
        mu = np.asarray(mu, dtype=float)
        if self.name == "logit":
            return np.log(mu / (1.0 - mu))
        if self.name == "probit":
            return _special().ndtri(mu)
        if self.name == "cloglog":
            return np.log(-np.log1p(-mu))
        if self.name == "log":
            return np.log(mu)
        return mu.copy()  # identity

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        eta = np.asarray(eta, dtype=float)
        if self.name == "logit":
            # R's plogis with its thresholds: μ stays inside (ε, 1 - ε)
            e = np.clip(eta, -30.0, 30.0)
            return 1.0 / (1.0 + np.exp(-e))
        if self.name == "probit":
            return _special().ndtr(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))
        if self.name == "cloglog":
            return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700.0))), _EPS, 1.0 - _EPS)
        if self.name == "log":
            return np.maximum(np.exp(np.minimum(eta, 700.0)), _EPS)
        return eta.copy()

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """dμ/dη at η."""
        eta = np.asarray(eta, dtype=float)
        if self.name == "logit":
            e = np.exp(-np.abs(eta))
            return np.maximum(e / (1.0 + e) ** 2, _EPS)
        if self.name == "probit":
            return np.maximum(np.exp(-0.5 * eta * eta) / math.sqrt(2.0 * math.pi), _EPS)
        if self.name == "cloglog":
            e = np.minimum(eta, 700.0)
            return np.maximum(np.exp(e - np.exp(e)), _EPS)
        if self.name == "log":
            return np.maximum(np.exp(np.minimum(eta, 700.0)), _EPS)
        return np.ones_like(eta)


LINKS = {name: Link(name) for name in ("logit", "probit", "cloglog", "log", "identity")}


def _lgamma(x: np.ndarray) -> np.ndarray:
    return _special().gammaln(x)


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x log y with 0 log 0 = 0."""
    return _special().xlogy(x, y)


@dataclass(frozen=True)
class Family:
    """A response distribution with its link; see the module docstring."""

    name: str
    link: Link
    #: the dispersion φ is 1 (binomial, Poisson)
    fixed_dispersion: bool = True

    def variance(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return mu * (1.0 - mu)
        return mu  # poisson

    def loglik_constant(self, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """The part of log f(y_i | μ_i) free of μ (n,): log C(m_i, s_i) for a binomial,
        -log y_i! for a Poisson (times the prior weight)."""
        if self.name == "binomial":
            m = np.ones_like(y) if w is None else w
            s = m * y
            return _lgamma(m + 1.0) - _lgamma(s + 1.0) - _lgamma(m - s + 1.0)
        c = -_lgamma(y + 1.0)
        return c if w is None else w * c

    def loglik_kernel(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """The part of log f(y_i | μ_i) that depends on μ (n,). The inverse links keep μ
        inside (0, 1) (binomial) or above 0 (Poisson), so the logarithms are finite and
        0 · log μ is 0 without a special case."""
        if self.name == "binomial":
            m = 1.0 if w is None else w
            s = m * y
            return s * np.log(mu) + (m - s) * np.log1p(-mu)
        k = y * np.log(mu) - mu
        return k if w is None else w * k

    def loglik_rows(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """log f(y_i | μ_i) (n,) with prior weights w (the trials of a binomial)."""
        return self.loglik_constant(y, w) + self.loglik_kernel(y, mu, w)

    def loglik(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray | None) -> float:
        """Σ log f(y_i | μ_i)."""
        return float(self.loglik_rows(y, mu, w).sum())

    def dev_resid(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """The unit deviances 2 w_i (log f(y_i | y_i) - log f(y_i | μ_i)) (n,)."""
        if self.name == "binomial":
            d = 2.0 * (_xlogy(y, y / mu) + _xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))
        else:
            d = 2.0 * (_xlogy(y, y / mu) - (y - mu))
        return d if w is None else w * d

    def mustart(self, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """R's starting means: (m y + ½)/(m + 1) for binomial, y + 0.1 for Poisson."""
        if self.name == "binomial":
            m = np.ones_like(y) if w is None else w
            return (m * y + 0.5) / (m + 1.0)
        return y + 0.1

    def simulate(self, rng: np.random.Generator, mu: np.ndarray, w: np.ndarray | None):
        """One response per mean (n,): binomial proportions out of the trials w, or counts."""
        if self.name == "binomial":
            m = np.ones(mu.shape) if w is None else w
            trials = np.rint(m).astype(np.int64)
            return rng.binomial(trials, mu) / np.where(m > 0, m, 1.0)
        return rng.poisson(mu).astype(float)

    def __str__(self) -> str:
        return f"{self.name}({self.link.name})"


DEFAULT_LINKS = {"binomial": "logit", "poisson": "log"}
ALLOWED_LINKS = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",)}


def family(name, link: str | None = None) -> Family:
    """The family called ``name`` ("binomial", "poisson"; or a :class:`Family`, returned as
    it is) with ``link`` (default: the canonical one)."""
    from ..errors import MultilevelError

    if isinstance(name, Family):
        return name
    key = str(name).strip().lower() if isinstance(name, str) else None
    if key not in DEFAULT_LINKS:
        raise MultilevelError(f"unknown family {name!r}: use 'gaussian', 'binomial' or 'poisson'")
    link = DEFAULT_LINKS[key] if link is None else str(link).strip().lower()
    if link not in ALLOWED_LINKS[key]:
        raise MultilevelError(
            f"the link {link!r} is not available for the {key} family (use "
            f"{', '.join(ALLOWED_LINKS[key])})"
        )
    return Family(key, LINKS[link])
