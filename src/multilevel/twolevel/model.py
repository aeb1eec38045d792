"""A fitted two-level model: a view of the lme4-formula fit in the seed's notation.

:class:`TwoLevelFit` implements nothing twice: the estimates are the underlying fit's (a
:class:`~multilevel.model.LinearMixedFit`, or a :class:`~multilevel.model.glmm.
GeneralizedLinearMixedFit` for a binomial or Poisson model, whose level 1 is
``g(μ_i) = α_j[i] + β_j[i] x_i`` with the link g on the left and no ε_i), the column maps
come from its schema (:mod:`~multilevel.twolevel.design`) and the group coefficients'
uncertainty from its conditional distribution (``fit.conditional``: exact for the linear
model, the Laplace approximation's Gaussian at the final PIRLS weights for a GLMM, with
σ = 1). For β_jc = D_jc'β + η_jc (D_jc (p,) picks w_j into the positions of γ_c in the
fixed effects β), the model with θ and σ at their estimates gives

    Var(β̂ - β)                 = V = vcov,
    Cov(b̂_j - b_j, β̂ - β)      = -H_j V,          H_j = Λ M_j⁻¹ Λ'Z_j'X_j  (k, p),
    Var(b̂_j - b_j)             = C_j + H_j V H_j',  C_j = σ² Λ M_j⁻¹ Λ'  (lme4's condVar),

so the group coefficients β_j· (p1,) = D_j β + E b_j (E (p1, k) places the varying ones) have

    Var = (D_j - E H_j) V (D_j - E H_j)' + E C_j E'.

arm's ``se.coef`` drops the cross term (takes Cov(b̂, β̂) = 0): Var = D_j V D_j' + E C_j E';
``coef_table(covariance=False)`` gives that version.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..data.materialize import INTERCEPT
from ..errors import MultilevelError
from ..inference.bootstrap import BootstrapResult, bootstrap
from ..inference.distributions import t_sf2
from ..inference.ftests import fixef_tests
from ..inference.intervals import confint
from ..inference.varpar import param_names, variance_names
from ..model.glmm import GeneralizedLinearMixedFit
from .design import TwoLevelDesign, two_level_design
from .pooling import compare_pooling, pooling_measures
from .spec import TwoLevelSpec


def _greek_symbols(names: list[str], intercept: bool) -> dict[str, str]:
    """α for the intercept, β for a single slope, β1, β2, ... for several."""
    slopes = [n for n in names if n != INTERCEPT]
    out = {INTERCEPT: "α"} if intercept else {}
    for i, n in enumerate(slopes):
        out[n] = "β" if len(slopes) == 1 else f"β{i + 1}"
    return out


#: the mean's symbol and the left-hand side of level 1 under each link
_MEAN = {"binomial": "p", "poisson": "λ"}


def _link_side(link: str, mean: str) -> str:
    return f"{mean}_i" if link == "identity" else f"{link}({mean}_i)"


def _at_i(expr: str) -> str:
    """``expr`` with the unit subscript: ``x_i``, ``(size - y)_i``."""
    simple = expr.replace("_", "").replace(".", "").isalnum()
    return f"{expr}_i" if simple else f"({expr})_i"


def _level2_letters(wnames: list[str]) -> dict[str, str]:
    """a for the level-2 constant, then b, c, d, ... for the predictors (the seed's a0, b0)."""
    letters = "abcdefghkmnpqrstuvwxyz"
    return {w: (letters[i] if i < len(letters) else f"g{i}_") for i, w in enumerate(wnames)}


class TwoLevelFit:
    """A fitted two-level model (see the module docstring), from
    ``multilevel.fit("y ~ x", data, group="school", group_formula="~ u")``.

    ``fit`` is the underlying fit of the equivalent lme4 formula (``lme4_formula``): a
    linear mixed fit, or a binomial or Poisson one (``family``, ``link``, ``method``); its
    estimates are exposed unchanged (``fixef``, ``vcov``, ``sigma``, ``theta``,
    ``objective``, ``ranef``, ``varcorr``). In the level-1 / level-2 form: ``group_level``
    (the γ's), ``Sigma`` and ``eta_sd`` / ``eta_cor`` (the η's), ``sigma_y`` (linear model
    only: a GLMM's dispersion is 1), ``coef_table()`` (β_j with SEs, on the link scale for a
    GLMM); tests and intervals named a0, b0, a1, ... (``test``, ``confint``,
    ``bootstrap``); pooling in ``compare_pooling()`` and ``pooling()`` (linear model)."""

    def __init__(self, spec: TwoLevelSpec, fit, design: TwoLevelDesign | None = None):
        self.spec = spec
        self.fit = fit
        self.design = design if design is not None else two_level_design(spec, fit)
        d = self.design
        self.symbols = _greek_symbols(d.x1names, spec.intercept)
        self.letters = _level2_letters(d.wnames)

    @property
    def lmm(self):
        """The underlying fit (``fit``; the name is the linear model's, kept for it)."""
        return self.fit

    @property
    def generalized(self) -> bool:
        """True for a binomial or Poisson model (a GLMM inner fit)."""
        return isinstance(self.fit, GeneralizedLinearMixedFit)

    @property
    def family(self) -> str:
        return self.fit.family if self.generalized else "gaussian"

    @property
    def link(self) -> str:
        return self.fit.link if self.generalized else "identity"

    @property
    def method(self) -> str:
        """How the fit was made: "REML" or "ML" (linear), "Laplace" or "AGQ(n)" (GLMM)."""
        return self.fit.method

    @property
    def statistic(self) -> str:
        """The Wald statistic of ``group_level``: "t" (linear) or "z" (GLMM, dispersion 1)."""
        return "z" if self.generalized else "t"

    def _linear_only(self, what: str) -> MultilevelError:
        return MultilevelError(
            f"{what} is for linear two-level models; this is a {self.family} model "
            f"({self.link} link)"
        )

    # -- the underlying fit ---------------------------------------------------------------
    @property
    def lme4_formula(self) -> str:
        return self.spec.lme4_formula

    formula = lme4_formula

    @property
    def group(self) -> str:
        return self.spec.group

    fixef = property(lambda self: self.fit.fixef)
    fixef_se = property(lambda self: self.fit.fixef_se)
    vcov = property(lambda self: self.fit.vcov)
    sigma = property(lambda self: self.fit.sigma)  # None for a GLMM, as its fit's
    theta = property(lambda self: self.fit.theta)
    objective = property(lambda self: self.fit.objective)
    ranef = property(lambda self: self.fit.ranef)
    varcorr = property(lambda self: self.fit.varcorr)
    nobs = property(lambda self: self.fit.nobs)
    reml = property(lambda self: self.fit.reml)  # False for a GLMM: maximum likelihood
    converged = property(lambda self: self.fit.converged)
    fitted = property(lambda self: self.fit.fitted)  # μ̂ (the response scale) for a GLMM
    residuals = property(lambda self: self.fit.residuals)  # deviance residuals for a GLMM

    @property
    def sigma_y(self) -> float:
        """σ_y, the level-1 residual SD (linear model; a GLMM has none)."""
        if self.generalized:
            raise AttributeError(
                f"a {self.family} two-level model has no σ_y: level 1 has no ε_i, the "
                "dispersion is fixed at 1"
            )
        return float(self.fit.sigma)

    @property
    def ngroups(self) -> int:
        return len(self.design.levels)

    @property
    def group_sizes(self) -> pd.Series:
        """n_j, observations per group."""
        d = self.design
        n = np.bincount(d.codes, minlength=len(d.levels))
        return pd.Series(n, index=d.levels.rename(self.group), name="n")

    @property
    def group_predictors(self) -> pd.DataFrame:
        """W (J, q): the level-2 design, one row per group (constant column included)."""
        d = self.design
        return pd.DataFrame(d.W, index=d.levels.rename(self.group), columns=d.wnames)

    @property
    def coefficients(self) -> list[str]:
        """The level-1 coefficient names (columns of the individual-level design)."""
        return list(self.design.x1names)

    @property
    def varying(self) -> list[str]:
        """The level-1 coefficients that vary by group, in the order of the η's."""
        return self.design.varying

    def predict(self, newdata=None, new_groups: str = "population", **kwargs):
        """As the underlying fit's ``predict``: :meth:`LinearMixedFit.predict
        <multilevel.model.LinearMixedFit.predict>` (``interval=``, ``level=``, ``ndraws=``,
        ``seed=`` for simulation intervals), or for a GLMM :meth:`GeneralizedLinearMixedFit.
        predict <multilevel.model.glmm.GeneralizedLinearMixedFit.predict>` (``type="link"``,
        the default, or ``"response"``)."""
        return self.fit.predict(newdata, new_groups=new_groups, **kwargs)

    def refit(self, y=None, *, reml: bool | None = None):
        """The same two-level model fitted to a new response (n,) and/or by ML/REML
        (linear model)."""
        if self.generalized:
            raise self._linear_only("refit()")
        return type(self)(self.spec, self.fit.refit(y, reml=reml), design=self.design)

    # -- level 2 ------------------------------------------------------------------------
    @property
    def Sigma(self) -> pd.DataFrame:
        """Σ (k, k) = σ² ΛΛ' (σ = 1 for a GLMM), the covariance of the η's, by varying
        coefficient."""
        lam = self.fit.lambdas[0]
        S = (1.0 if self.generalized else self.sigma**2) * lam @ lam.T
        return pd.DataFrame(S, index=self.varying, columns=self.varying)

    @property
    def eta_sd(self) -> pd.Series:
        """SD of η_c for each varying coefficient c."""
        return pd.Series(np.sqrt(np.diag(self.Sigma.to_numpy())), index=self.varying, name="sd")

    @property
    def eta_cor(self) -> pd.DataFrame:
        """The correlation matrix of the η's (NaN where an SD is zero)."""
        S = self.Sigma.to_numpy()
        sd = np.sqrt(np.diag(S))
        with np.errstate(invalid="ignore", divide="ignore"):
            R = S / np.outer(sd, sd)
        np.fill_diagonal(R, 1.0)
        return pd.DataFrame(R, index=self.varying, columns=self.varying)

    @property
    def group_level(self) -> pd.DataFrame:
        """The level-2 regressions: one row per (coefficient, predictor) with symbol
        (a0, b0, a1, ...), estimate, SE and t (z for a GLMM, ``statistic``); the η SD of each
        varying coefficient is in ``eta_sd``. Rows of interactions dropped as aliased have
        NaN."""
        d = self.design
        beta, se = self.fixef.to_numpy(), self.fixef_se.to_numpy()
        rows = []
        for c, cname in enumerate(d.x1names):
            vary = c in set(d.zcol)
            for w, wname in enumerate(d.wnames):
                if not vary and w > 0:
                    continue
                i = d.gamma[c, w]
                est, s = (beta[i], se[i]) if i >= 0 else (np.nan, np.nan)
                rows.append((cname, wname, f"{self.letters[wname]}{c}", vary, est, s, est / s))
        return pd.DataFrame(
            rows,
            columns=[
                "coefficient", "predictor", "symbol", "varying", "estimate", "se",
                self.statistic,
            ],
        )  # fmt: skip

    # -- the group coefficients -----------------------------------------------------------
    def coef_cov(self, covariance: bool = True) -> np.ndarray:
        """(J, p1, p1): Var of the group coefficients β_j· (module docstring); with
        ``covariance=False`` arm's version without Cov(b̂, β̂)."""
        d, cond = self.design, self.fit.conditional
        V = self.vcov.to_numpy()
        E = d.E
        A = d.D - (E @ cond.coupling[0] if covariance else 0.0)
        return A @ V @ np.swapaxes(A, 1, 2) + E @ cond.condvar[0] @ E.T

    def coef_estimates(self) -> np.ndarray:
        """(J, p1): β_j· = D_j β̂ + E b̂_j."""
        d = self.design
        return d.D @ self.fixef.to_numpy() + self.fit.conditional.modes[0] @ d.E.T

    def coef_table(self, covariance: bool = True) -> pd.DataFrame:
        """The group coefficients (α_j, β_j, ...) and their SEs, one row per group, with
        n_j: columns ``n``, then each coefficient and ``se(coefficient)``. The SE counts the
        fixed-effect and the conditional uncertainty (module docstring). A GLMM's are on the
        link scale (logit, log, ...)."""
        d = self.design
        est = self.coef_estimates()
        se = np.sqrt(np.maximum(np.diagonal(self.coef_cov(covariance), axis1=1, axis2=2), 0))
        idx = d.levels.rename(self.group)
        out = pd.DataFrame({"n": self.group_sizes.to_numpy()}, index=idx)
        for c, name in enumerate(d.x1names):
            out[name] = est[:, c]
        for c, name in enumerate(d.x1names):
            out[f"se({name})"] = se[:, c]
        return out

    @property
    def coef(self) -> pd.DataFrame:
        """The group coefficients (as ``coef_table()`` without SEs and n)."""
        return self.coef_table()[self.coefficients]

    # -- tests and intervals, named as the two-level model names them ------------------
    def _lme4_names(self) -> list[str]:
        """The parameters in lme4's ``confint`` order (no ``sigma`` for a GLMM)."""
        fit = self.fit
        if self.generalized:
            layout = fit.problem.deviance.layout
            return variance_names(layout, fit.schema.terms) + list(fit.fixef.index)
        return param_names(fit)

    def parameter_names(self) -> dict[str, str]:
        """lme4's parameter names (``confint``'s) -> the two-level model's: a0, b0, a1, ...
        for the fixed effects, sd(η_j1), cor(η_j1,η_j2), ... for Σ, σ_y for σ (linear
        model)."""
        d, lmm = self.design, self.fit
        out: dict[str, str] = {}
        names = self._lme4_names()
        eta = {name: f"η_j{a + 1}" for a, name in enumerate(lmm.schema.terms[0].names)}
        group = lmm.schema.terms[0].group
        for name in names:
            if name == "sigma":
                out[name] = "σ_y"
            elif name.startswith("sd_") and name.endswith(f"|{group}"):
                out[name] = f"sd({eta[name[3 : -len(group) - 1]]})"
        for a, ra in enumerate(lmm.schema.terms[0].names):
            for rb in lmm.schema.terms[0].names[:a]:
                out[f"cor_{ra}.{rb}|{group}"] = f"cor({eta[rb]},{eta[ra]})"
        fixef = list(lmm.fixef.index)
        for c in range(len(d.x1names)):
            for w, wname in enumerate(d.wnames):
                i = d.gamma[c, w]
                if i >= 0:
                    out[fixef[i]] = f"{self.letters[wname]}{c}"
        return {k: out.get(k, k) for k in names}

    def _lme4_parm(self, parm):
        if parm is None:
            return None
        names = self.parameter_names()
        back = {v: k for k, v in names.items()}
        parm = [parm] if isinstance(parm, str) else list(parm)
        bad = [p for p in parm if p not in back and p not in names]
        if bad:
            known = ", ".join(f"{v} ({k})" for k, v in names.items())
            raise MultilevelError(f"no parameter '{bad[0]}'; the parameters are {known}")
        return [back.get(p, p) for p in parm]

    def confint(self, method: str = "profile", level: float = 0.95, parm=None, **kwargs):
        """Confidence intervals of every parameter (:func:`multilevel.inference.intervals.
        confint`, or :func:`~multilevel.inference.glmm_intervals.glmm_confint` for a GLMM),
        indexed by the two-level names (a0, b0, ..., sd(η_j1), σ_y) with lme4's name in the
        column ``parameter``; ``parm`` takes either name."""
        if self.generalized:
            from ..inference.glmm_intervals import glmm_confint as intervals
        else:
            intervals = confint
        tab = intervals(self.fit, method=method, level=level, parm=self._lme4_parm(parm), **kwargs)
        names = self.parameter_names()
        out = tab.copy()
        out.insert(0, "parameter", list(tab.index))
        out.index = pd.Index([names[p] for p in tab.index], name=None)
        return out

    def test(self, ddf: str | None = None) -> pd.DataFrame:
        """The level-2 regressions (``group_level``) with denominator df and p values of
        their t tests (``ddf``: "satterthwaite", the default, or "kenward-roger",
        :func:`multilevel.inference.ftests.fixef_tests`); for a GLMM, the p values of the
        z tests (the dispersion is known: no ``ddf``). ``parameter``: lme4's name."""
        gl = self.group_level
        d = self.design
        index = {
            (cname, wname): d.gamma[c, w]
            for c, cname in enumerate(d.x1names)
            for w, wname in enumerate(d.wnames)
        }
        rows = [index[(r.coefficient, r.predictor)] for r in gl.itertuples()]
        names = list(self.fixef.index)
        if self.generalized:
            if ddf is not None:
                raise MultilevelError(
                    f"the tests of a {self.family} model are z tests (the dispersion is "
                    f"known): there are no denominator df, so no ddf= (got {ddf!r})"
                )
            gl["p"] = t_sf2(gl["z"].to_numpy(), np.inf)
            gl["parameter"] = [names[i] if i >= 0 else "" for i in rows]
            return gl
        tests = fixef_tests(self.fit, ddf="satterthwaite" if ddf is None else ddf)
        gl["se"] = [tests["Std. Error"].iloc[i] if i >= 0 else np.nan for i in rows]
        gl["t"] = gl["estimate"] / gl["se"]
        gl["df"] = [tests["df"].iloc[i] if i >= 0 else np.nan for i in rows]
        gl["p"] = [tests["Pr(>|t|)"].iloc[i] if i >= 0 else np.nan for i in rows]
        gl["parameter"] = [names[i] if i >= 0 else "" for i in rows]
        return gl

    def bootstrap(self, n: int = 1000, seed: int | None = None, **kwargs) -> BootstrapResult:
        """Parametric bootstrap of the underlying fit (:func:`~multilevel.inference.
        bootstrap.bootstrap`, or :func:`~multilevel.inference.glmm_bootstrap.glmm_bootstrap`
        for a GLMM), its columns named as :meth:`parameter_names`."""
        if self.generalized:
            from ..inference.glmm_bootstrap import glmm_bootstrap as boot
        else:
            boot = bootstrap
        return boot(self.fit, n=n, seed=seed, **kwargs).renamed(self.parameter_names())

    # -- pooling ---------------------------------------------------------------------------
    def compare_pooling(self) -> pd.DataFrame:
        """Complete, no and partial pooling side by side, per group (linear model); see
        :func:`multilevel.twolevel.pooling.compare_pooling`."""
        if self.generalized:
            raise self._linear_only("compare_pooling() (least-squares pooling fits)")
        return compare_pooling(self)

    def pooling(self, ndraws: int = 1000, seed: int | None = None, joint: bool = True):
        """Gelman & Pardoe's R² and pooling factor λ at each level, from draws of the
        conditional distribution (linear model); see :func:`multilevel.twolevel.pooling.
        pooling_measures`."""
        if self.generalized:
            raise self._linear_only("pooling() (R² and λ from exact draws of σ, β and b)")
        return pooling_measures(self, ndraws=ndraws, seed=seed, joint=joint)

    # -- presentation -------------------------------------------------------------------
    def equations(self) -> list[str]:
        """The model in the seed's notation, one line per equation."""
        d, spec = self.design, self.spec
        varying = set(d.varying)
        sub = "j[i]"
        parts = []
        for name in d.x1names:
            s = self.symbols[name] + (f"_{sub}" if name in varying else "")
            parts.append(s if name == INTERCEPT else f"{s}·{name}_i")
        schema = self.fit.schema
        offsets = [f"{o}_i" for o in ([schema.offset] if schema.offset else [])]
        offsets += [f"offset({e})_i" for e in schema.formula.offsets]
        rhs = " + ".join(parts + offsets)
        if self.generalized:
            mean = _MEAN.get(self.family, "μ")
            lines = [f"{_link_side(self.link, mean)} = {rhs},   {self._distribution(mean)}"]
        else:
            noise = "N(0, σ_y²/w_i)" if schema.weights else "N(0, σ_y²)"
            lines = [f"{spec.response}_i = {rhs} + ε_i,   ε_i ~ {noise}"]
        gl = self.group_level
        eta_names = [f"η_j{a + 1}" for a in range(len(d.zcol))]
        for c, name in enumerate(d.x1names):
            rows = gl[gl.coefficient == name]
            terms = []
            for r in rows.itertuples():
                terms.append(
                    r.symbol if r.predictor == INTERCEPT else f"{r.symbol}·{r.predictor}_j"
                )
            if name in varying:
                a = int(np.flatnonzero(d.zcol == c)[0])
                lines.append(f"{self.symbols[name]}_j = {' + '.join(terms)} + {eta_names[a]}")
            else:
                lines.append(f"{self.symbols[name]} = {' + '.join(terms)}  (same in every group)")
        if len(eta_names) > 1:
            lines.append(f"({', '.join(eta_names)}) ~ N(0, Σ)")
        else:
            lines.append(f"{eta_names[0]} ~ N(0, σ_{self.symbols[d.varying[0]]}²)")
        return lines

    def _distribution(self, mean: str) -> str:
        """Level 1's response distribution of a GLMM: ``y_i ~ Bernoulli(p_i)``,
        ``s_i ~ Binomial(n_i, p_i), n_i = s_i + f_i`` (cbind), ``w_i·y_i ~ Binomial(w_i, p_i)``
        (proportions with trials w), ``y_i ~ Poisson(λ_i)``."""
        schema = self.fit.schema
        w = schema.weights
        if self.family == "binomial":
            cbind = schema.formula.binomial
            if cbind is not None:
                s, f = (_at_i(e) for e in cbind)
                out = f"{s} ~ Binomial(n_i, {mean}_i), n_i = {s} + {f}"
                return out + (f" (prior weights {w}_i)" if w else "")
            y = _at_i(self.spec.response)
            if w:
                return f"{w}_i·{y} ~ Binomial({w}_i, {mean}_i)"
            return f"{y} ~ Bernoulli({mean}_i)"
        out = f"{_at_i(self.spec.response)} ~ {self.family.capitalize()}({mean}_i)"
        return out + (f" (prior weights {w}_i)" if w else "")

    def to_dict(self) -> dict:
        """JSON: the specification, ``group_level`` (one entry per varying coefficient:
        ``coef``, ``se`` by predictor and ``sd`` of its η), ``constant`` (the coefficients
        that do not vary), ``eta_correlation``, ``sigma_y`` (None for a GLMM), ``coef`` (one
        row per group: n, estimates and SEs, on the link scale for a GLMM), ``family``,
        ``link``, ``method`` and ``fit`` (the lme4-formula fit's own JSON)."""
        d = self.design
        gl = self.group_level
        sd = self.eta_sd

        def num(x):
            x = float(x)
            return None if math.isnan(x) else x

        group_level, constant = {}, {}
        for name in d.x1names:
            rows = gl[gl.coefficient == name]
            entry = {
                "symbol": self.symbols[name],
                "coef": {r.predictor: num(r.estimate) for r in rows.itertuples()},
                "se": {r.predictor: num(r.se) for r in rows.itertuples()},
                "symbols": {r.predictor: r.symbol for r in rows.itertuples()},
            }
            if name in sd.index:
                entry["sd"] = float(sd[name])
                group_level[name] = entry
            else:
                constant[name] = entry
        ct = self.coef_table()
        coef = []
        for lev, r in ct.iterrows():
            coef.append(
                {
                    "group": str(lev),
                    "n": int(r["n"]),
                    "coef": {n: float(r[n]) for n in d.x1names},
                    "se": {n: float(r[f"se({n})"]) for n in d.x1names},
                }
            )
        R = self.eta_cor.to_numpy()
        return {
            "model": "two-level",
            "formula": self.spec.formula,
            "group": self.spec.group,
            "group_formula": self.spec.group_formula,
            "varying": list(d.varying),
            "lme4_formula": self.spec.lme4_formula,
            "translation": list(self.spec.translation),
            "equations": self.equations(),
            "family": self.family,
            "link": self.link,
            "method": self.method,
            "nobs": int(self.nobs),
            "ngroups": self.ngroups,
            "objective": self.objective,
            "sigma_y": None if self.generalized else self.sigma_y,
            "group_level": group_level,
            "constant": constant,
            "eta_correlation": {
                "terms": list(d.varying),
                "matrix": [[num(v) for v in row] for row in R],
            },
            "coef": coef,
            "dropped": list(d.dropped),
            "fit": self.fit.to_dict(),
        }
