"""A fitted linear mixed model: the estimates, the conditional modes and their uncertainty,
fitted values and predictions, all read off one
:class:`~multilevel.engine.factorization.Factorization` at θ̂ (see there for the formulas).

:class:`LinearMixedFit` is the model itself; the package's public
:class:`~multilevel.models.LinearMixedModel` adds the methods that call the layers above it
(tests, intervals, the summary, saving).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..data import ModelFrame
from ..engine import Factorization
from ..fitting.lmm import Problem, optimize
from ..fitting.optimize import OptimResult
from .conditional import ConditionalDistribution
from .diagnostics import aliased_terms, scale_note, singular_messages, zero_rows
from .predict import linear_predictor, predict, predict_interval
from .simulate import simulate_responses


class LinearMixedFit:
    """The result of fitting a linear mixed model. Attribute names follow lme4 (``fixef``,
    ``ranef``, ``varcorr``, ``theta``, ``sigma``, ``objective``).

    The pieces behind it are public: ``frame`` (the data's arrays and ``schema``),
    ``problem`` (the blocks and the ``deviance``), ``optim`` (how the optimiser got to
    θ̂), ``factorization`` (everything at θ̂) and ``conditional`` (the distribution of
    σ, β, b given θ̂)."""

    family = "gaussian"

    def __init__(
        self,
        frame: ModelFrame,
        problem: Problem,
        optim: OptimResult,
        factorization: Factorization,
        data_name: str | None = None,
    ):
        fac = factorization
        self.frame = frame
        self.schema = frame.schema
        self.problem = problem
        self.deviance = problem.deviance
        self.optim = optim
        self.factorization = fac
        self.conditional = ConditionalDistribution(fac, frame.schema.terms)
        self.reml = bool(problem.deviance.reml)
        self.data_name = data_name
        self.formula = frame.formula.text
        #: θ on the data's scale, as lme4 reports it (``fit.factorization.theta`` is the one
        #: of the scaled blocks, which ``fit.deviance`` takes)
        self.theta = fac.theta_data
        self.objective = float(fac.objective)
        self.nobs = frame.n
        self.n_dropped = frame.n_dropped
        self.dropped_columns = frame.dropped_columns
        self.weights = frame.schema.weights
        self.converged = bool(optim.converged)
        self.sigma = fac.sigma
        names = frame.xnames
        V = fac.vcov()
        self.fixef = pd.Series(fac.beta, index=names, name="Estimate")
        self.vcov = pd.DataFrame(V, index=names, columns=names)
        self.fixef_se = pd.Series(np.sqrt(np.diag(V)), index=names, name="Std. Error")
        self.singular_terms = singular_messages(
            self.schema.terms, fac.lambdas, self._varcov_matrices()
        )
        self.singular = bool(self.singular_terms)
        self.aliased_terms = aliased_terms(problem.blocks, self.schema.terms)
        self.scale_note = scale_note(problem.blocks, names)
        for msg in [*self.aliased_terms, *([self.scale_note] if self.scale_note else [])]:
            warnings.warn(msg, stacklevel=3)

    def refit(self, y=None, *, reml: bool | None = None):
        """The same model fitted to a new response ``y`` (n,) and/or by the other criterion
        (``reml=False`` for ML). Reuses the model's structure: no formula, no data pass
        but over y, no symbolic set-up."""
        problem, frame = self.problem, self.frame
        if y is not None:
            frame = frame.with_response(y)
            response = problem.response.with_y(frame.y)
            blocks = problem.pattern.with_response(problem.blocks, response)
            dev = problem.deviance.with_crossproducts(blocks, reml=reml)
            problem = Problem(problem.pattern, response, blocks, dev)
        elif reml is not None and reml != self.reml:
            dev = problem.deviance.with_crossproducts(problem.blocks, reml=reml)
            problem = Problem(problem.pattern, problem.response, problem.blocks, dev)
        optim, fac = optimize(problem.deviance)
        return type(self)(frame, problem, optim, fac, self.data_name)

    # -- lme4-style accessors --------------------------------------------------------
    @property
    def lambdas(self) -> list[np.ndarray]:
        """Λ_i (k_i, k_i) of each random-effects term (relative covariance factors)."""
        return self.factorization.lambdas_data

    def _varcov_matrices(self) -> list[np.ndarray]:
        return [self.sigma**2 * lam @ lam.T for lam in self.lambdas]

    @property
    def ngroups(self) -> dict[str, int]:
        return self.schema.groups

    @property
    def npar(self) -> int:
        return len(self.fixef) + len(self.theta) + 1

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
    def method(self) -> str:
        return "REML" if self.reml else "ML"

    @property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(fit))``: variances, then covariances (``sdcor`` is
        the correlation), per term; the residual last."""
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
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["group", "term1", "term2", "vcov", "sdcor"])

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Per grouping factor: conditional modes (one column per term) and their conditional
        standard errors (columns ``se(term)``), indexed by level."""
        out: dict[str, pd.DataFrame] = {}
        cond = self.conditional
        for t, modes, cv in zip(self.schema.terms, cond.modes, cond.condvar, strict=True):
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
        """Per grouping factor: fixed effects plus that factor's conditional modes (the
        group-level coefficients α_j, β_j of each group), as lme4's ``coef``."""
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
                if name in df.columns:
                    df[name] += re[c].to_numpy()
                else:
                    df[name] = re[c].to_numpy()
            out[g] = df
        return out

    # -- fitted values and prediction ------------------------------------------------
    @property
    def fitted(self) -> np.ndarray:
        """Xβ̂ + Σ_i Z_i b̂_i + offset (n,)."""
        fr = self.frame
        eta = linear_predictor(
            self, fr.X, [rt.Z for rt in fr.reterms], [rt.codes for rt in fr.reterms]
        )
        return eta if fr.offset is None else eta + fr.offset

    @property
    def residuals(self) -> np.ndarray:
        """Response residuals y - fitted (n,)."""
        return self.frame.y - self.fitted

    @property
    def pearson_residuals(self) -> np.ndarray:
        """sqrt(w) (y - fitted) (n,): residuals on the scale of σ (lme4's
        ``residuals(fit, type = "pearson")``); the response residuals without weights."""
        r = self.residuals
        w = self.frame.weights
        return r if w is None else np.sqrt(w) * r

    def predict(
        self,
        newdata=None,
        new_groups: str = "population",
        interval: str | None = None,
        level: float = 0.95,
        ndraws: int = 1000,
        seed=None,
        joint: bool = True,
    ):
        """Predictions: fixed part plus the conditional modes of the groups in ``newdata``
        (plus the offset).

        A level not seen in the fit contributes nothing (``new_groups="population"``, as
        lme4's ``allow.new.levels=TRUE``) or raises (``new_groups="error"``).
        ``interval="confidence"`` or ``"prediction"``: a DataFrame (fit, lower, upper) by
        simulation from the conditional distribution, see
        :func:`multilevel.model.predict.predict_interval` (also ``new_groups="draw"``, and
        ``joint=False`` for arm's draws of b independent of β)."""
        if interval is not None:
            return predict_interval(
                self, newdata, interval, level, ndraws, seed, new_groups=new_groups, joint=joint
            )
        return predict(self, newdata, new_groups)

    def simulate(self, n: int = 1, seed: int | None = None) -> np.ndarray:
        """``n`` new response vectors (nobs, n) drawn from the fitted model."""
        return simulate_responses(self, n=n, seed=seed)

    # -- presentation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON contract of ``multilevel fit --json``."""
        vc = self.varcorr
        ranef = []
        cond = self.conditional
        for t, modes, cv in zip(self.schema.terms, cond.modes, cond.condvar, strict=True):
            se = np.sqrt(np.maximum(np.diagonal(cv, axis1=1, axis2=2), 0))
            for i, lev in enumerate(t.levels):
                for a, name in enumerate(t.names):
                    ranef.append(
                        {
                            "group": t.group,
                            "level": str(lev),
                            "term": name,
                            "mode": float(modes[i, a]),
                            "se": float(se[i, a]),
                        }
                    )
        return {
            "formula": self.formula,
            "family": self.family,
            "method": self.method,
            "nobs": int(self.nobs),
            "n_dropped": int(self.n_dropped),
            "n_zero_weight": int(self.schema.n_zero_weight),
            "weights": self.weights,
            "offset": self.schema.offset,
            "ngroups": {k: int(v) for k, v in self.ngroups.items()},
            "objective": self.objective,
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "sigma": self.sigma,
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
            "converged": self.converged,
            "optimizer": {"message": self.optim.message, "evaluations": self.optim.nevals},
            "dropped_columns": list(self.dropped_columns),
            "ranef": ranef,
        }
