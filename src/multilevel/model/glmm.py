"""A fitted generalized linear mixed model (binomial, Poisson): the estimates at (θ̂, β̂),
the conditional modes and their conditional variances at the final PIRLS weights, fitted
values on both scales and residuals.

The objective is the full -2 log-likelihood (Laplace, or AGQ), as lme4 reports its
``logLik``; vcov(β̂) is twice the inverse of the objective's Hessian in (θ, β), its β block
(lme4's ``use.hessian = TRUE``); the conditional variances of the modes are the diagonal
blocks of Λ(Λ'Z'WZΛ + I)⁻¹Λ' (the dispersion is 1).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..data import ModelFrame
from ..data.newdata import newdata_design
from ..engine.family import Family
from ..engine.layout import theta_for_data
from ..errors import MultilevelError
from ..fitting.glmm import GlmmFitResult, GlmmProblem
from . import glmm_diagnostics as diag
from .diagnostics import singular_messages, zero_rows
from .simulate import check_count


class GlmmConditional:
    """The conditional distribution of the random effects given y at (θ̂, β̂), as the Laplace
    approximation has it: the Gaussian of the local linear model at the final PIRLS working
    weights W (``working_weights``), with the interface of the linear model's
    :class:`~multilevel.model.ConditionalDistribution` (no draws):

    * ``modes``: b̂ (l, k) per term, PIRLS's;
    * ``condvar``: Var(b | y, β) (l, k, k) per term, the diagonal blocks of Λ P⁻¹ Λ' with
      P = Λ'Z'WZΛ + I (lme4's condVar; the dispersion is 1);
    * ``coupling``: H (l, k, p) with b̂(β) ≈ b̂ - H (β - β̂), the derivative of the mode in β
      by implicit differentiation of the PIRLS equations, H = Λ P⁻¹ Λ'Z'WX (exact at a
      canonical link, Fisher's weights in place of the observed ones otherwise). For a
      single random-effects term P is block diagonal and H_j = condvar_j Z_j'W_jX_j; for
      several terms it is not computed."""

    def __init__(self, fit):
        self.fit = fit

    @property
    def modes(self) -> list[np.ndarray]:
        return list(self.fit.modes.b)

    @property
    def condvar(self) -> list[np.ndarray]:
        return self.fit.condvar

    @property
    def coupling(self) -> list[np.ndarray]:
        fr = self.fit.frame
        if len(fr.reterms) != 1:
            raise MultilevelError(
                "the coupling of the modes to the fixed effects of a binomial or Poisson "
                "model is computed for a single random-effects term only"
            )
        rt = fr.reterms[0]
        w = self.fit.working_weights
        ZtWX = np.zeros((rt.nlevels, rt.k, fr.X.shape[1]))
        np.add.at(ZtWX, rt.codes, rt.Z[:, :, None] * (w[:, None] * fr.X)[:, None, :])
        return [self.condvar[0] @ ZtWX]

    def total_var(self, term: int = 0) -> np.ndarray:
        """Var(b - b̂) (l, k, k) of a term counting β's uncertainty: condvar + H V H'."""
        H = self.coupling[term]
        V = self.fit.vcov.to_numpy()
        return self.condvar[term] + H @ V @ np.swapaxes(H, 1, 2)


class GeneralizedLinearMixedFit:
    """The result of fitting a binomial or Poisson mixed model; attribute names follow lme4
    (``fixef``, ``ranef``, ``varcorr``, ``theta``, ``objective``). ``sigma`` is None: the
    dispersion of these families is fixed at 1."""

    sigma = None

    def __init__(
        self,
        frame: ModelFrame,
        problem: GlmmProblem,
        result: GlmmFitResult,
        data_name: str | None = None,
    ):
        self.frame = frame
        self.schema = frame.schema
        self.problem = problem
        self.result = result
        self.optim = result.optim
        self.modes = result.modes
        self.factorization = result.modes.factorization
        self.family_object: Family = problem.family
        self.family = problem.family.name
        self.link = problem.family.link.name
        self.nagq = problem.nagq
        self.reml = False
        self.data_name = data_name
        self.formula = frame.formula.text
        nt = problem.deviance.layout.size
        self.theta = theta_for_data(
            problem.deviance.layout, result.x[:nt], self.factorization.deviance.cp.z_scale
        )
        self.objective = float(result.modes.objective)
        self.nobs = frame.n
        self.n_dropped = frame.n_dropped
        self.dropped_columns = frame.dropped_columns
        self.weights = frame.schema.weights
        self.converged = bool(result.optim.converged)
        names = frame.xnames
        self.fixef = pd.Series(result.modes.beta, index=names, name="Estimate")
        self.vcov = pd.DataFrame(result.vcov, index=names, columns=names)
        var = np.diag(result.vcov)
        # a Hessian that is not positive definite (e.g. under separation) has no SEs
        se = np.sqrt(np.where(var >= 0, var, np.nan))
        self.fixef_se = pd.Series(se, index=names, name="Std. Error")
        self.singular_terms = singular_messages(
            self.schema.terms, self.factorization.lambdas, self._varcov_matrices()
        )
        self.singular = bool(self.singular_terms)
        self.aliased_terms: list[str] = []
        self.scale_note = None
        self.diagnostics = self._diagnose()

    def _diagnose(self) -> list[str]:
        """Plain-words notes on separation, overdispersion and PIRLS trouble
        (:mod:`multilevel.model.glmm_diagnostics`)."""
        notes = []
        fr = self.frame
        if self.family == "binomial":
            found = diag.separation(fr.X, fr.y, fr.xnames)
            if found is not None:
                notes.append(diag.separation_message(*found))
        if self.family == "poisson" or (fr.weights is not None and np.any(fr.weights > 1)):
            ratio, p = diag.dispersion(self.pearson_residuals, self.nobs - self.npar)
            if ratio > diag.DISPERSION_RATIO and p < diag.DISPERSION_P:
                notes.append(diag.overdispersion_message(ratio, p, self.family))
        if not self.modes.converged and self.modes.worst is not None:
            t, j = self.modes.worst
            term = self.schema.terms[t]
            notes.append(diag.pirls_message(self.modes.message or "no convergence",
                                            term.group, str(term.levels[j])))  # fmt: skip
        return notes

    # -- lme4-style accessors -----------------------------------------------------------
    @property
    def method(self) -> str:
        return "Laplace" if self.nagq == 1 else f"AGQ({self.nagq})"

    @property
    def lambdas(self) -> list[np.ndarray]:
        """Λ_i (k_i, k_i) of each term: the random effects' covariance is Λ_iΛ_i'."""
        return self.factorization.lambdas_data

    def _varcov_matrices(self) -> list[np.ndarray]:
        return [lam @ lam.T for lam in self.lambdas]

    @property
    def ngroups(self) -> dict[str, int]:
        return self.schema.groups

    @property
    def npar(self) -> int:
        return len(self.fixef) + len(self.theta)

    @property
    def loglik(self) -> float:
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return self.objective + 2 * self.npar

    @property
    def bic(self) -> float:
        return self.objective + self.npar * math.log(self.nobs)

    @property
    def deviance(self) -> float:
        """lme4's ``deviance()`` of a GLMM: Σ of the unit deviances at the modes."""
        fr = self.frame
        return float(self.family_object.dev_resid(fr.y, self.modes.mu, fr.weights).sum())

    @property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(fit))`` (no residual row: the dispersion is 1)."""
        rows = []
        seen: dict[str, int] = {}
        for t, lam_s, vc in zip(
            self.schema.terms, self.factorization.lambdas, self._varcov_matrices(), strict=True
        ):
            g = t.group
            if g in seen:
                seen[g] += 1
                g = f"{g}.{seen[t.group]}"
            else:
                seen[g] = 0
            sd = np.sqrt(np.maximum(np.diag(vc), 0))
            zero = zero_rows(lam_s)
            for a, name in enumerate(t.names):
                rows.append((g, name, None, vc[a, a], sd[a]))
            for a in range(t.k):
                for b in range(a + 1, t.k):
                    defined = sd[a] > 0 and sd[b] > 0 and not (zero[a] or zero[b])
                    cor = vc[a, b] / (sd[a] * sd[b]) if defined else np.nan
                    rows.append((g, t.names[a], t.names[b], vc[a, b], cor))
        return pd.DataFrame(rows, columns=["group", "term1", "term2", "vcov", "sdcor"])

    @property
    def condvar(self) -> list[np.ndarray]:
        """Var(b | y) (l, k, k) per term at the modes (lme4's condVar)."""
        return self.factorization.condvar(1.0)

    @property
    def working_weights(self) -> np.ndarray:
        """PIRLS's working weights at the modes (n,): w_i = a_i (dμ/dη)²/V(μ_i), a the
        prior weights (the binomial trials)."""
        link = self.family_object.link
        eta = self.modes.eta
        d = link.mu_eta(eta)
        w = d * d / self.family_object.variance(link.inverse(eta))
        return w if self.frame.weights is None else w * self.frame.weights

    @property
    def conditional(self) -> GlmmConditional:
        """The random effects' conditional distribution given y at the estimates
        (:class:`GlmmConditional`)."""
        return GlmmConditional(self)

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Per grouping factor: the conditional modes and their conditional SEs."""
        out: dict[str, pd.DataFrame] = {}
        for t, modes, cv in zip(self.schema.terms, self.modes.b, self.condvar, strict=True):
            se = np.sqrt(np.maximum(np.diagonal(cv, axis1=1, axis2=2), 0))
            df = pd.DataFrame(modes, index=t.levels.copy(), columns=list(t.names))
            df_se = pd.DataFrame(se, index=t.levels.copy(), columns=[f"se({n})" for n in t.names])
            df.index.name = t.group
            part = pd.concat([df, df_se], axis=1)
            if t.group in out:
                prev = out[t.group]
                part = part.rename(columns={c: c + "'" for c in part.columns if c in prev.columns})
                part = pd.concat([prev, part], axis=1)
            out[t.group] = part
        for g, df in out.items():
            modes = [c for c in df.columns if not c.startswith("se(")]
            ses = [c for c in df.columns if c.startswith("se(")]
            out[g] = df[modes + ses]
        return out

    @property
    def coef(self) -> dict[str, pd.DataFrame]:
        """Per grouping factor: fixed effects plus that factor's modes, as lme4's ``coef``."""
        out = {}
        for g, re in self.ranef.items():
            df = pd.DataFrame(
                np.tile(self.fixef.to_numpy(), (len(re), 1)),
                index=re.index,
                columns=self.fixef.index,
            )
            for c in re.columns:
                if c.startswith("se("):
                    continue
                name = c.rstrip("'")
                df[name] = df[name] + re[c].to_numpy() if name in df.columns else re[c].to_numpy()
            out[g] = df
        return out

    # -- fitted values, residuals, predictions ---------------------------------------------
    @property
    def linear_predictor(self) -> np.ndarray:
        """η = Xβ̂ + Zb̂ + offset (n,)."""
        return self.modes.eta

    @property
    def fitted(self) -> np.ndarray:
        """The fitted means μ̂ = g⁻¹(η) (n,): probabilities (binomial) or rates (Poisson)."""
        return self.modes.mu

    def residuals_of(self, type: str = "deviance") -> np.ndarray:
        """Residuals (n,): ``"deviance"`` (sign(y - μ) sqrt(d_i), lme4's default),
        ``"pearson"`` ((y - μ) sqrt(w)/sqrt(V(μ))) or ``"response"`` (y - μ)."""
        fr, mu, fam = self.frame, self.modes.mu, self.family_object
        r = fr.y - mu
        if type == "response":
            return r
        if type == "pearson":
            w = 1.0 if fr.weights is None else fr.weights
            return r * np.sqrt(w) / np.sqrt(fam.variance(mu))
        if type == "deviance":
            d = fam.dev_resid(fr.y, mu, fr.weights)
            return np.sign(r) * np.sqrt(np.maximum(d, 0.0))
        raise MultilevelError(f"type must be 'deviance', 'pearson' or 'response', not {type!r}")

    @property
    def residuals(self) -> np.ndarray:
        """Deviance residuals (n,), lme4's default for a GLMM."""
        return self.residuals_of("deviance")

    @property
    def pearson_residuals(self) -> np.ndarray:
        return self.residuals_of("pearson")

    def predict(self, newdata=None, new_groups: str = "population", type: str = "link"):
        """Predictions on the ``"link"`` scale (η) or the ``"response"`` scale (μ): the
        fixed part plus the conditional modes of the groups in ``newdata`` (a level not
        seen in the fit contributes nothing, or raises with ``new_groups="error"``)."""
        if type not in ("link", "response"):
            raise MultilevelError(f"type must be 'link' or 'response', not {type!r}")
        if newdata is None:
            eta = self.modes.eta
        else:
            if new_groups not in ("population", "error"):
                raise MultilevelError("new_groups must be 'population' or 'error'")
            X, offset, terms = newdata_design(self.schema, newdata, new_groups)
            eta = X @ self.fixef.to_numpy()
            for b, (Z, c, _) in zip(self.modes.b, terms, strict=True):
                known = c >= 0
                eta[known] += np.einsum("nk,nk->n", Z[known], b[c[known]])
            if offset is not None:
                eta = eta + offset
        return eta if type == "link" else self.family_object.link.inverse(eta)

    def simulate(self, n: int = 1, seed=None) -> np.ndarray:
        """``n`` new responses (nobs, n): new random effects b ~ N(0, ΛΛ'), then y | b from
        the family (binomial proportions out of the trials, or counts)."""
        n = check_count(n)
        rng = np.random.default_rng(seed)
        fr = self.frame
        base = fr.X @ self.fixef.to_numpy() + (0.0 if fr.offset is None else fr.offset)
        out = np.empty((fr.n, n))
        for s in range(n):
            eta = base.copy()
            for rt, lam in zip(fr.reterms, self.lambdas, strict=True):
                u = rng.standard_normal((rt.nlevels, rt.k))
                b = u @ lam.T
                eta += np.einsum("nk,nk->n", rt.Z, b[rt.codes])
            out[:, s] = self.family_object.simulate(
                rng, self.family_object.link.inverse(eta), fr.weights
            )
        return out

    # -- presentation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON of ``multilevel fit --family ... --json``."""
        vc = self.varcorr
        ranef = []
        for t, modes, cv in zip(self.schema.terms, self.modes.b, self.condvar, strict=True):
            se = np.sqrt(np.maximum(np.diagonal(cv, axis1=1, axis2=2), 0))
            for i, lev in enumerate(t.levels):
                for a, name in enumerate(t.names):
                    ranef.append(
                        {"group": t.group, "level": str(lev), "term": name,
                         "mode": float(modes[i, a]), "se": float(se[i, a])}
                    )  # fmt: skip
        return {
            "formula": self.formula,
            "family": self.family,
            "link": self.link,
            "method": self.method,
            "nobs": int(self.nobs),
            "n_dropped": int(self.n_dropped),
            "weights": self.weights,
            "offset": self.schema.offset,
            "ngroups": {k: int(v) for k, v in self.ngroups.items()},
            "objective": self.objective,
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "deviance": self.deviance,
            "sigma": None,
            "theta": [float(v) for v in self.theta],
            "fixef": {k: float(v) for k, v in self.fixef.items()},
            "fixef_se": {k: float(v) for k, v in self.fixef_se.items()},
            "varcorr": [
                {
                    "group": r.group,
                    "term1": None if pd.isna(r.term1) else str(r.term1),
                    "term2": None if pd.isna(r.term2) else str(r.term2),
                    "vcov": float(r.vcov),
                    "sdcor": None if pd.isna(r.sdcor) else float(r.sdcor),
                }
                for r in vc.itertuples()
            ],
            "singular": self.singular,
            "singular_terms": self.singular_terms,
            "diagnostics": list(self.diagnostics),
            "converged": self.converged,
            "optimizer": {"message": self.optim.message, "evaluations": self.optim.nevals},
            "dropped_columns": list(self.dropped_columns),
            "ranef": ranef,
        }
