"""The Laplace (and adaptive Gauss-Hermite) deviance of a generalized linear mixed model, by
penalised iteratively reweighted least squares on the reweighted blocks.

Given θ (and β), the conditional modes u of the spherical random effects (b = Λu) maximise
Σ log f(y_i | μ_i) - ||u||²/2, η = Xβ + ZΛu + o, μ = g⁻¹(η). PIRLS finds them as a sequence
of linear mixed problems, each the *local approximation* of the model: with the working
weights w_i = a_i (dμ/dη)²/V(μ_i) (a the prior weights) and the working response
z_i = η_i + (y_i - μ_i)/(dμ/dη), the penalised weighted least-squares problem

    min Σ w_i (z_i - x_i'β - z_i'Λu - o_i)² + ||u||²

is an LMM's, solved by the engine's own blocks (:class:`~multilevel.engine.blocks.
BlockPattern`, reweighted each step) and factorization. Stage 1 solves it for (β, u)
jointly (lme4's nAGQ = 0 step); stage 2 for u given β (the design without X, Xβ in the
offset). A step that raises the penalised deviance Σ d_i + ||u||² is halved; one that still
does not lower it after :data:`MAX_HALVINGS` halvings ends the iterations with
``converged = False``, said so by the caller.

At the modes, with L the Cholesky factor of Λ'Z'WZΛ + I at the final weights,

    Laplace:  -2 log L(θ, β) ≈ -2 Σ log f(y_i | μ_i) + ||u||² + log|L|²,

the full -2 log-likelihood (constants of f included), as lme4 reports it. For a single
random-effects term (one grouping factor, k coefficients: (1 | g), (1 + x | g)) the groups'
integrals are independent, and adaptive Gauss-Hermite quadrature with K nodes per dimension
replaces each group's Laplace term. With û_j the group's mode and C_j C_j' = (L_jj L_jj')⁻¹
its conditional covariance (the inverse of the group's block of Λ'Z'WZΛ + I),

    -2 log ∫ Π_{i∈j} f(y_i | u) φ_k(u) du
        ≈ -2 log [ |C_j| Σ_z ω_z exp(h_j(û_j + C_j z) + |z|²/2) ] + k log 2π,

with h_j(u) = Σ_{i∈j} log f(y_i | u) - |u|²/2 and (z, ω_z) the K^k points of the product of
probabilists' Gauss-Hermite rules (ω summing to (2π)^{k/2}); K = 1 is the Laplace
approximation. lme4 offers k = 1 only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .blocks import BlockPattern
from .design import Design
from .deviance import ProfiledDeviance
from .factorization import Factorization
from .family import Family
from .layout import ThetaLayout
from .response import Response

#: PIRLS stops when the penalised deviance changes by less than this, relative
TOLERANCE = 1e-12
MAX_ITERATIONS = 200
MAX_HALVINGS = 30


@dataclass
class Modes:
    """The state of PIRLS at convergence: the linear predictor ``eta`` (n,) and means
    ``mu``, β (p,), the spherical modes ``u`` and ``b = Λu`` per term (l, k), the
    factorization at the final working weights, the objective and how PIRLS got there."""

    theta: np.ndarray
    beta: np.ndarray
    u: list[np.ndarray]
    b: list[np.ndarray]
    eta: np.ndarray
    mu: np.ndarray
    factorization: Factorization
    objective: float
    penalised_deviance: float
    iterations: int
    converged: bool
    message: str = ""
    #: when PIRLS did not converge: (term, level) whose score is farthest from 0
    worst: tuple[int, int] | None = None

    @property
    def penalty(self) -> float:
        return float(sum((u**2).sum() for u in self.u))


#: the most quadrature points per group (nAGQ^k) that adaptive quadrature will use
MAX_AGQ_POINTS = 20_000
#: the quadrature points times rows evaluated at once
AGQ_CHUNK = 2_000_000


def gauss_hermite(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The probabilists' Gauss-Hermite rule of ``k`` nodes: ∫ f(x) e^{-x²/2} dx ≈
    Σ ω_i f(x_i)."""
    x, w = np.polynomial.hermite_e.hermegauss(k)
    return x, w


def product_rule(nodes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The product of ``dim`` Gauss-Hermite rules of ``nodes`` nodes: points (nodes^dim, dim)
    and weights (nodes^dim,) with ∫ f(z) e^{-|z|²/2} dz ≈ Σ ω f(z)."""
    x, w = gauss_hermite(nodes)
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    points = np.stack([g.ravel() for g in grids], axis=1)
    weights = np.prod(np.stack([g.ravel() for g in np.meshgrid(*([w] * dim), indexing="ij")]),
                      axis=0)  # fmt: skip
    return points, weights


def agq_dimension(design: Design, nagq: int) -> int:
    """k, the dimension of each group's integral, after checking that adaptive quadrature
    applies: one random-effects term, at most :data:`MAX_AGQ_POINTS` points per group."""
    from ..errors import MultilevelError

    if len(design.blocks) != 1:
        raise MultilevelError(
            "adaptive Gauss-Hermite quadrature (nagq > 1) needs a single random-effects term "
            f"such as (1 | g) or (1 + x | g); this model has {len(design.blocks)} terms"
        )
    k = design.blocks[0].k
    if nagq**k > MAX_AGQ_POINTS:
        raise MultilevelError(
            f"nagq = {nagq} for a term of {k} coefficients takes {nagq}^{k} = {nagq**k:,} "
            f"quadrature points per group, more than {MAX_AGQ_POINTS:,}: use fewer nodes"
        )
    return k


class GlmmDeviance:
    """-2 log L of a GLMM (Laplace, or AGQ with ``nagq`` nodes) for ``design`` (X and the
    random-effects blocks), the response ``y`` with prior weights and offset, and
    ``family``. Stage 1: :meth:`stage1` (θ; β by PIRLS). Stage 2: :meth:`__call__` on
    (θ, β). The last modes are kept to start the next PIRLS from."""

    def __init__(self, design: Design, response: Response, family: Family, nagq: int = 1):
        self.design = design
        self.response = response
        self.family = family
        self.nagq = int(nagq)
        self.layout = ThetaLayout.build([b.k for b in design.blocks], design.correlated)
        self.n, self.p = design.n, design.p
        self.prior = response.weights
        self.offset = np.zeros(design.n) if response.offset is None else response.offset
        self.pattern = BlockPattern(design)
        self.pattern_u = BlockPattern(Design(design.X[:, :0], design.blocks))
        self._devs: dict[bool, ProfiledDeviance] = {}
        if self.nagq > 1:
            self.nodes = product_rule(self.nagq, agq_dimension(design, self.nagq))
        self.last: Modes | None = None
        self.evaluations = 0
        self._ll_constant = float(family.loglik_constant(response.y, self.prior).sum())

    # -- pieces ---------------------------------------------------------------------------
    def eta(self, beta: np.ndarray, b: list[np.ndarray], base: np.ndarray | None = None):
        """Xβ + Σ_t Z_t b_t + o (n,); ``base``: Xβ + o when already at hand."""
        eta = (self.design.X @ beta + self.offset) if base is None else base.copy()
        for blk, bt in zip(self.design.blocks, b, strict=True):
            rows = bt[blk.codes]
            eta += np.einsum("nk,nk->n", blk.Z, rows) if blk.k > 1 else blk.Z[:, 0] * rows[:, 0]
        return eta

    def _deviance(self, joint: bool, cp) -> ProfiledDeviance:
        dev = self._devs.get(joint)
        if dev is None:
            dev = ProfiledDeviance(cp, self.design.correlated, reml=False)
            self._devs[joint] = dev
            return dev
        return dev.reweighted(cp)

    def _factor(self, theta: np.ndarray, eta: np.ndarray, base: np.ndarray | None):
        """The factorization of the local linear mixed model at η (working weights and
        response from η): for (β, u) jointly (``base`` None) or for u given Xβ + o =
        ``base``. None when it fails."""
        fam, link = self.family, self.family.link
        mu = link.inverse(eta)
        d = link.mu_eta(eta)
        w = d * d / fam.variance(mu)
        if self.prior is not None:
            w = w * self.prior
        z = eta + (self.response.y - mu) / d  # the working response, offset included
        joint = base is None
        if joint:
            cp = self.pattern.crossproducts(Response(z, w, self.offset), weights=w)
        else:
            cp = self.pattern_u.crossproducts(Response(z, w, base), weights=w)
        return self._deviance(joint, cp).factor(theta)

    def _pdev(self, eta: np.ndarray, u: list[np.ndarray]) -> float:
        """The penalised deviance -2 Σ log f(y_i | μ_i) + ||u||², up to a constant."""
        mu = self.family.link.inverse(eta)
        kernel = float(self.family.loglik_kernel(self.response.y, mu, self.prior).sum())
        return -2.0 * kernel + float(sum((ut**2).sum() for ut in u))

    # -- PIRLS ----------------------------------------------------------------------------
    def start_from(self, modes: Modes, u: list[np.ndarray] | None = None) -> None:
        """Start the next PIRLS from ``modes`` (with the spherical modes ``u`` instead of
        its own when given: a prediction of the modes at the next point)."""
        self.last = modes if u is None else replace(modes, u=u)

    def modes(self, theta: np.ndarray, beta: np.ndarray | None = None) -> Modes | None:
        """PIRLS at θ (and β; None: β too). Starts from the last modes' linear predictor
        (or R's starting means); returns None when a factorization fails."""
        theta = np.asarray(theta, dtype=float)
        start = self.last
        if start is not None and start.theta.shape == theta.shape:
            beta0 = start.beta if beta is None else np.asarray(beta, dtype=float)
            lams = self.layout.lambdas(theta)
            # keep u, the spherical modes, and rebuild b = Λu for the new θ
            b0 = [u @ (lam / d[:, None]).T for u, lam, d in zip(
                start.u, lams, start.factorization.deviance.cp.z_scale, strict=True)]  # fmt: skip
            eta = self.eta(beta0, b0)
            u = start.u
        else:
            mu0 = self.family.mustart(self.response.y, self.prior)
            eta = self.family.link.fun(mu0)
            if beta is not None:  # u = 0: η = Xβ + o
                eta = self.design.X @ np.asarray(beta, dtype=float) + self.offset
            u = [np.zeros((blk.nlevels, blk.k)) for blk in self.design.blocks]
        pdev = self._pdev(eta, u) if (start is not None or beta is not None) else math.inf
        base = None if beta is None else self.design.X @ np.asarray(beta, dtype=float) + self.offset
        beta_cur = None if beta is None else np.asarray(beta, dtype=float)
        if beta is None and start is not None:
            beta_cur = start.beta
        converged, message = False, ""
        iterations = 0
        for iteration in range(1, MAX_ITERATIONS + 1):
            iterations = iteration
            fac = self._factor(theta, eta, base)
            if fac is None:
                return None
            beta_new = fac.beta if beta is None else beta_cur
            u_new = fac.spherical
            b_new = [ut @ lam.T for ut, lam in zip(u_new, fac.lambdas_data, strict=True)]
            eta_new = self.eta(beta_new, b_new, base)
            pdev_new = self._pdev(eta_new, u_new)
            halvings = 0
            while not pdev_new <= pdev + 1e-10 * abs(pdev) and halvings < MAX_HALVINGS:
                halvings += 1
                eta_new = 0.5 * (eta + eta_new)
                u_new = [0.5 * (a + c) for a, c in zip(u, u_new, strict=True)]
                if beta is None and beta_cur is not None:
                    beta_new = 0.5 * (beta_cur + beta_new)
                pdev_new = self._pdev(eta_new, u_new)
            if not pdev_new <= pdev + 1e-10 * abs(pdev):
                message = f"PIRLS could not lower the penalised deviance ({pdev:.10g})"
                break
            change = pdev - pdev_new
            eta, u, pdev, beta_cur = eta_new, u_new, pdev_new, beta_new
            if halvings:
                # a halved step is not a PWLS solution: iterate from the halved point
                continue
            if change < TOLERANCE * (1.0 + abs(pdev)):
                converged = True
                break
        # the factorization and the objective at the final working weights
        fac = self._factor(theta, eta, base)
        if fac is None:
            return None
        beta_out = np.asarray(beta_cur if beta_cur is not None else fac.beta, dtype=float)
        b = [ut @ lam.T for ut, lam in zip(u, fac.lambdas_data, strict=True)]
        mu = self.family.link.inverse(eta)
        penalty = float(sum((ut**2).sum() for ut in u))
        loglik = self._ll_constant + float(
            self.family.loglik_kernel(self.response.y, mu, self.prior).sum()
        )
        objective = -2.0 * loglik + penalty + fac.ldL2
        worst = None if converged else self.worst_level(eta, u, fac.lambdas_data)
        modes = Modes(theta.copy(), beta_out, u, b, eta, mu, fac, objective, pdev,
                      iterations, converged, message, worst)  # fmt: skip
        if self.nagq > 1:
            modes = replace(modes, objective=self.quadrature(modes, self.nodes))
        self.last = modes
        self.evaluations += 1
        return modes

    def worst_level(self, eta: np.ndarray, u: list[np.ndarray], lambdas) -> tuple[int, int]:
        """(term, level) with the largest score of the penalised log-likelihood,
        ∂/∂u_j [Σ log f - |u|²/2] = Λ' Σ_{i∈j} z_i a_i (y_i - μ_i) μ'(η_i)/V(μ_i) - u_j."""
        fam = self.family
        mu = fam.link.inverse(eta)
        r = (self.response.y - mu) * fam.link.mu_eta(eta) / fam.variance(mu)
        if self.prior is not None:
            r = r * self.prior
        best, where = -1.0, (0, 0)
        for t, (blk, ut, lam) in enumerate(zip(self.design.blocks, u, lambdas, strict=True)):
            zr = np.stack([np.bincount(blk.codes, blk.Z[:, a] * r, minlength=blk.nlevels)
                           for a in range(blk.k)], axis=1)  # fmt: skip
            score = np.linalg.norm(zr @ lam - ut, axis=1)
            j = int(np.argmax(score))
            if score[j] > best:
                best, where = float(score[j]), (t, j)
        return where

    def quadrature(self, m: Modes, rule: tuple[np.ndarray, np.ndarray]) -> float:
        """The AGQ objective of a single term at the modes ``m`` with the quadrature
        ``rule`` (points (P, k), weights (P,); :func:`product_rule`); module docstring."""
        blk = self.design.blocks[0]
        fac = m.factorization
        lam = fac.lambdas_data[0]  # (k, k): b = Λu
        u = m.u[0]  # (J, k)
        C = np.linalg.cholesky(fac.M1inv)  # (J, k, k): Var(u_j | y) = C_j C_j'
        points, weights = rule
        codes, Z, J = blk.codes, blk.Z, blk.nlevels
        ZL = Z @ lam  # (n, k): row i of ZΛ
        eta0 = m.eta - np.einsum("nk,nk->n", ZL, u[codes])  # η without the group's effect
        y, prior, fam = self.response.y, self.prior, self.family
        order = np.argsort(codes, kind="stable")  # rows by group, for the groups' sums
        starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
        ZL, eta0, y = ZL[order], eta0[order], y[order]
        prior = None if prior is None else prior[order]
        codes = codes[order]
        total = np.empty((len(points), J))
        chunk = max(1, AGQ_CHUNK // max(len(y), 1))
        for a in range(0, len(points), chunk):
            z = points[a : a + chunk]  # (P, k)
            uz = u[None] + np.einsum("jab,pb->pja", C, z)  # (P, J, k)
            lin = eta0[None] + np.einsum("nk,pnk->pn", ZL, uz[:, codes])
            ll = fam.loglik_rows(y[None], fam.link.inverse(lin), prior)
            total[a : a + chunk] = (
                np.add.reduceat(ll, starts, axis=1) - 0.5 * (uz**2).sum(2)
                + 0.5 * (z**2).sum(1)[:, None]
            )  # fmt: skip
        top = total.max(axis=0)
        logdet_c = np.log(np.diagonal(C, axis1=1, axis2=2)).sum(axis=1)
        log_int = top + np.log(weights @ np.exp(total - top)) + logdet_c
        k = u.shape[1]
        return float(-2.0 * log_int.sum() + J * k * math.log(2.0 * math.pi))

    # -- the two objectives ---------------------------------------------------------------
    def stage1(self, theta: np.ndarray) -> float:
        """-2 log L at θ with β by PIRLS (lme4's nAGQ = 0 objective, always Laplace)."""
        nagq, self.nagq = self.nagq, 1
        try:
            m = self.modes(theta)
        finally:
            self.nagq = nagq
        return math.inf if m is None or not np.isfinite(m.objective) else m.objective

    def __call__(self, x: np.ndarray) -> float:
        """-2 log L at x = (θ, β): Laplace, or AGQ with ``nagq`` nodes."""
        x = np.asarray(x, dtype=float)
        nt = self.layout.size
        m = self.modes(x[:nt], x[nt:])
        return math.inf if m is None or not np.isfinite(m.objective) else m.objective
