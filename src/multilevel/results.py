"""A fitted linear mixed model: estimates, conditional modes and their uncertainty.

From the factor at the optimum (see :mod:`multilevel.deviance`), with ``L_S`` = chol(S) over
``[Z_2..Z_m | X | y]``:

* β = R_X⁻ᵀ r_Xy and σ² = r²/(n - p) (REML) or r²/n (ML);  vcov(β) = σ² (R_X R_X')⁻¹;
* u_r = L_ZZ⁻ᵀ (l_yZ - L_XZ' β), and for the first term, level by level,
  u_1 = M_c⁻¹ Λ_1'(Z_1'y - Z_1'X β - Z_1'Z_r b_r); conditional modes b = Λ u;
* Var(b | y) = σ² Λ (Λ'Z'ZΛ + I)⁻¹ Λ' (lme4's condVar: β taken as known), whose diagonal
  blocks come from the block inverse of the factor.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import solve_triangular

from .blocks import CrossProducts
from .deviance import Factorization, ProfiledDeviance
from .errors import DataError
from .frame import ModelFrame
from .optimize import BOUNDARY, OptimResult


@dataclass
class _Term:
    """Per random-effects block: its modes and conditional variance blocks."""

    group: str
    names: list[str]
    levels: pd.Index
    lam: np.ndarray
    modes: np.ndarray  # (l, k)
    condvar: np.ndarray  # (l, k, k), includes σ²
    lam_s: np.ndarray  # Λ for the scaled columns Z D⁻¹ (blocks.z_scales): scale-free


def _aliased_terms(cp: CrossProducts, frame: ModelFrame) -> list[str]:
    """Random-effects terms whose columns lie in the span of X (e.g. ``C(g)`` beside
    ``(1 | g)``): their variance is not identifiable. From the blocks: the residual of Z_i
    after projecting on X has trace tr(Z'Z) - ||L⁻¹X'Z||²_F, L = chol(X'X)."""
    p = cp.p
    if p == 0:
        return []
    L = np.linalg.cholesky(cp.ww[:p, :p])
    out = []
    for rt, D, zw in zip(frame.reterms, cp.diag, cp.zw, strict=True):
        if rt.nlevels * rt.k > p:  # more columns than X has: cannot all lie in its span
            continue
        total = float(np.trace(D, axis1=1, axis2=2).sum())
        explained = float((solve_triangular(L, zw[:, :p].T, lower=True) ** 2).sum())
        if total - explained <= 1e-9 * total:
            out.append(
                f"the random effects of {rt.term} are aliased with the fixed effects (their "
                "columns lie in the span of X): their variance cannot be estimated"
            )
    return out


#: fixed-effects columns whose scales differ by more than this get a note
SCALE_RATIO = 1e6


def _scale_note(cp: CrossProducts, names: list[str]) -> str | None:
    """A note when predictors differ in scale by orders of magnitude. The fit is exact
    (X is standardised before the cross-products), but such coefficients are hard to read
    and compare, and lme4 warns about them."""
    s = cp.std.x_scale.copy()
    if cp.std.intercept is not None:
        s[cp.std.intercept] = np.nan
    if np.isnan(s).all() or np.nanmax(s) / np.nanmin(s) < SCALE_RATIO:
        return None
    hi, lo = int(np.nanargmax(s)), int(np.nanargmin(s))
    return (
        f"predictors differ in scale by {np.log10(s[hi] / s[lo]):.0f} orders of magnitude "
        f"('{names[hi]}' ~ {s[hi]:.1g}, '{names[lo]}' ~ {s[lo]:.1g}); the fit is exact "
        "(columns are standardised internally), but consider rescaling to make the "
        "coefficients comparable"
    )


def _theta_on_data_scale(fac: Factorization, layout, z_scale) -> np.ndarray:
    """θ for Λ = D⁻¹ Λ_s, in the layout's order (element (row, col) scaled by 1/d_row)."""
    return np.array(
        [fac.theta[i] / z_scale[layout.term[i]][layout.row[i]] for i in range(layout.size)]
    )


class LinearMixedModel:
    """The result of :func:`multilevel.fit`. Attribute names follow lme4 (``fixef``, ``ranef``,
    ``varcorr``, ``theta``, ``sigma``, ``objective``)."""

    family = "gaussian"

    def __init__(
        self,
        frame: ModelFrame,
        cp: CrossProducts,
        deviance: ProfiledDeviance,
        opt: OptimResult,
        fac: Factorization,
        reml: bool,
        data_name: str | None = None,
    ):
        self._frame = frame
        self._cp = cp
        self._deviance = deviance
        self._layout = deviance.layout
        self.optim = opt
        self.reml = reml
        self.data_name = data_name
        self.formula = frame.formula.text
        #: θ on the data's scale, as lme4 reports it (the deviance works with θ for Z D⁻¹;
        #: ``fit.optim.theta`` is that one, for ``fit._deviance``)
        self.theta = _theta_on_data_scale(fac, deviance.layout, cp.z_scale)
        self.objective = float(fac.objective)
        self.nobs = cp.n
        self.n_dropped = frame.n_dropped
        self.dropped_columns = frame.dropped_columns
        self.converged = bool(opt.converged)
        n, p, qr = cp.n, cp.p, fac.qr
        L = fac.L
        Lx = L[qr : qr + p, qr : qr + p]
        lxy = L[-1, qr : qr + p]
        # the blocks hold standardised X and y (blocks.Standardization): solve there, map back
        beta_s = solve_triangular(Lx.T, lxy, lower=False) if p else np.zeros(0)
        self.sigma = math.sqrt(fac.pwrss / (n - p if reml else n))
        Lxinv = solve_triangular(Lx, np.eye(p), lower=True) if p else np.zeros((0, 0))
        T = cp.std.T
        V = self.sigma**2 * (T @ Lxinv.T @ Lxinv @ T.T)
        names = frame.xnames
        self.fixef = pd.Series(cp.std.beta(beta_s), index=names, name="Estimate")
        self.vcov = pd.DataFrame(V, index=names, columns=names)
        self.fixef_se = pd.Series(np.sqrt(np.diag(V)), index=names, name="Std. Error")
        self._terms = self._random_effects(fac, deviance, beta_s)
        self.singular_terms = self._singular_messages()
        self.singular = bool(self.singular_terms)
        self.aliased_terms = _aliased_terms(cp, frame)
        self.scale_note = _scale_note(cp, frame.xnames)
        for msg in [*self.aliased_terms, *([self.scale_note] if self.scale_note else [])]:
            warnings.warn(msg, stacklevel=3)

    def refit(self, y=None, *, reml: bool | None = None) -> LinearMixedModel:
        """The same model fitted to a new response ``y`` (n,) and/or by the other criterion
        (``reml=False`` for ML). Reuses the model's structure: no formula, no data pass
        but over y, no symbolic set-up."""
        from dataclasses import replace

        from .api import fit_deviance
        from .blocks import with_response

        frame, cp = self._frame, self._cp
        if y is not None:
            y = np.asarray(y, dtype=float)
            if y.shape != frame.y.shape:
                raise DataError(f"refit needs a response of length {frame.n}, not {y.shape}")
            cp = with_response(cp, frame, y)
            frame = replace(frame, y=y)
        dev = self._deviance.with_crossproducts(cp, reml=reml)
        return fit_deviance(frame, cp, dev, self.data_name)

    # -- conditional modes and variances ---------------------------------------------
    def _random_effects(self, fac: Factorization, dev: ProfiledDeviance, beta) -> list[_Term]:
        cp, frame = self._cp, self._frame
        p, qr = cp.p, fac.qr
        L = fac.L
        lams = fac.lambdas
        sig2 = self.sigma**2
        k1, l1 = cp.k[0], cp.nlevels[0]
        terms: list[_Term] = []
        b_rest = np.zeros(qr)
        rest_blocks = []
        if qr:
            Lzz = L[:qr, :qr]
            rhs = L[-1, :qr] - L[qr : qr + p, :qr].T @ beta
            u_r = solve_triangular(Lzz.T, rhs, lower=False)
            Linv = solve_triangular(Lzz, np.eye(qr), lower=True)
            for j in range(1, len(cp.k)):
                o, kj, lj = dev.offsets[j - 1], cp.k[j], cp.nlevels[j]
                u = u_r[o : o + lj * kj].reshape(lj, kj)
                b = u @ lams[j].T
                b_rest[o : o + lj * kj] = b.reshape(-1)
                C = Linv[:, o : o + lj * kj].reshape(qr, lj, kj)
                Minv = np.einsum("rla,rlb->lab", C, C)
                rest_blocks.append((b, sig2 * lams[j] @ Minv @ lams[j].T))
        # first term
        zw = cp.zw[0]
        c = zw[:, p] - zw[:, :p] @ beta
        if qr:
            c = c - dev.R.T @ b_rest
        c = c.reshape(l1, k1) @ lams[0]  # Λ_1' c, level by level
        u1 = np.einsum("lab,lb->la", fac.M1inv, c)
        b1 = u1 @ lams[0].T
        Minv1 = fac.M1inv.copy()
        if qr:
            Minv1 += self._first_term_correction(fac, dev, Linv)
        terms.append((b1, sig2 * lams[0] @ Minv1 @ lams[0].T))
        terms.extend(rest_blocks)
        out = []
        for rt, lam, (b, cv), d in zip(frame.reterms, lams, terms, cp.z_scale, strict=True):
            # back from Z D⁻¹ to Z: b = D⁻¹ b_s, Λ = D⁻¹ Λ_s, Var(b) = D⁻¹ Var(b_s) D⁻¹
            out.append(
                _Term(
                    rt.group, rt.names, rt.levels, lam / d[:, None], b / d, cv / np.outer(d, d), lam
                )
            )
        return out

    def _first_term_correction(self, fac, dev: ProfiledDeviance, Linv) -> np.ndarray:
        """M_11⁻¹ M_1r S⁻¹ M_r1 M_11⁻¹ per level c, with H = M_r1 M_11⁻¹ and K = L_ZZ⁻¹ H."""
        cp = self._cp
        k1, l1 = cp.k[0], cp.nlevels[0]
        lams = fac.lambdas
        left = sp.block_diag(
            [sp.kron(sp.identity(cp.nlevels[j]), lams[j].T) for j in range(1, len(cp.k))]
        ).tocsr()
        right_blocks = lams[0] @ fac.M1inv  # (l1, k1, k1): Λ_1 M_c⁻¹
        right = sp.bsr_matrix(
            (right_blocks, np.arange(l1), np.arange(l1 + 1)), shape=(l1 * k1, l1 * k1)
        ).tocsc()
        Ht = (left @ dev.R @ right).T.tocsr()  # H' is sparse: K' = H' L_ZZ⁻ᵀ costs nnz(H) qr
        qr = fac.qr
        out = np.empty((l1, k1, k1))
        chunk = max(k1, (4_000_000 // max(qr, 1)) // k1 * k1)
        LinvT = np.ascontiguousarray(Linv.T)
        for s in range(0, l1 * k1, chunk):
            e = min(s + chunk, l1 * k1)
            Kt = np.asarray(Ht[s:e] @ LinvT)
            Kb = Kt.reshape((e - s) // k1, k1, qr)
            out[s // k1 : e // k1] = np.einsum("lar,lbr->lab", Kb, Kb)
        return out

    def _singular_messages(self) -> list[str]:
        """Boundary terms, judged on the scale-free Λ_s (θ relative to σ, Z columns of unit
        size): a row of Λ_s at 0 is a zero variance; otherwise a diagonal element at 0 is
        a correlation at ±1 (or, with 3+ effects, a rank-deficient covariance)."""
        msgs = []
        for t, vc in zip(self._terms, self._varcov_matrices(), strict=True):
            row_norm = np.sqrt((t.lam_s**2).sum(axis=1))
            zero = row_norm < BOUNDARY
            for a, name in enumerate(t.names):
                if zero[a]:
                    msgs.append(f"the variance of '{name}' in {t.group} is estimated as zero")
            if zero.any() or not (np.abs(np.diag(t.lam_s)) < BOUNDARY).any():
                continue
            sd = np.sqrt(np.diag(vc))
            cor = vc / np.outer(sd, sd)
            found = False
            for a in range(len(t.names)):
                for b in range(a):
                    if abs(cor[a, b]) > 1 - 1e-6:
                        found = True
                        msgs.append(
                            f"the correlation of '{t.names[b]}' and '{t.names[a]}' in "
                            f"{t.group} is estimated as {cor[a, b]:+.0f}"
                        )
            if not found:
                msgs.append(
                    f"the covariance matrix of the random effects in {t.group} is singular "
                    "(rank deficient)"
                )
        return msgs

    def _varcov_matrices(self) -> list[np.ndarray]:
        return [self.sigma**2 * t.lam @ t.lam.T for t in self._terms]

    # -- lme4-style accessors --------------------------------------------------------
    @property
    def ngroups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self._terms:
            out[t.group] = len(t.levels)
        return out

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
        for t, vc in zip(self._terms, self._varcov_matrices(), strict=True):
            g = t.group
            if g in seen:
                seen[g] += 1
                g = f"{g}.{seen[t.group]}"
            else:
                seen[g] = 0
            sd = np.sqrt(np.maximum(np.diag(vc), 0))
            zero = np.sqrt((t.lam_s**2).sum(axis=1)) < BOUNDARY  # as in _singular_messages
            for a, name in enumerate(t.names):
                rows.append((g, name, None, vc[a, a], sd[a]))
            for a in range(len(t.names)):
                for b in range(a + 1, len(t.names)):
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
        for t in self._terms:
            se = np.sqrt(np.maximum(np.diagonal(t.condvar, axis1=1, axis2=2), 0))
            df = pd.DataFrame(t.modes, index=t.levels.copy(), columns=t.names)
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
    def _linear_predictor(self, X: np.ndarray, Zs: list[np.ndarray], codes: list[np.ndarray]):
        """η = Xβ + Σ_i Z_i b_i (n,); a code of -1 (a new level) contributes nothing to its
        term. Column by column, so the temporaries stay at a few n-vectors."""
        eta = X @ self.fixef.to_numpy()
        for t, Z, c in zip(self._terms, Zs, codes, strict=True):
            known = c >= 0
            rows = slice(None) if known.all() else known  # a slice indexes without copying
            for a in range(Z.shape[1]):
                eta[rows] += Z[rows, a] * t.modes[c[rows], a]
        return eta

    @property
    def fitted(self) -> np.ndarray:
        fr = self._frame
        return self._linear_predictor(
            fr.X, [rt.Z for rt in fr.reterms], [rt.codes for rt in fr.reterms]
        )

    @property
    def residuals(self) -> np.ndarray:
        return self._frame.y - self.fitted

    def predict(
        self,
        newdata=None,
        new_groups: str = "population",
        interval: str | None = None,
        level: float = 0.95,
        ndraws: int = 1000,
        seed=None,
    ):
        """Predictions: fixed part plus the conditional modes of the groups in ``newdata``.

        A level not seen in the fit contributes nothing (``new_groups="population"``, as
        lme4's ``allow.new.levels=TRUE``) or raises (``new_groups="error"``).
        ``interval="confidence"`` or ``"prediction"``: a DataFrame (fit, lower, upper) by
        simulation, see :func:`multilevel.predict.predict_interval` (also
        ``new_groups="draw"``)."""
        if interval is not None:
            from .predict import predict_interval

            return predict_interval(
                self, newdata, interval, level, ndraws, seed, new_groups=new_groups
            )
        if newdata is None:
            return self.fitted
        if new_groups not in ("population", "error"):
            raise ValueError("new_groups must be 'population' or 'error'")
        from .predict import newdata_design

        X, terms = newdata_design(self, newdata, new_groups)
        return self._linear_predictor(X, [Z for Z, _, _ in terms], [c for _, c, _ in terms])

    # -- inference (implemented in multilevel.inference, .intervals, .bootstrap) -------
    def test(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """t tests of the fixed effects with Satterthwaite or Kenward-Roger denominator
        degrees of freedom: Estimate, Std. Error, df, t value, Pr(>|t|)."""
        from .inference import fixef_tests

        return fixef_tests(self, ddf=ddf)

    def anova(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Type III F tests, one per fixed-effects term (lmerTest's ``anova``)."""
        from .inference import anova_type3

        return anova_type3(self, ddf=ddf)

    def confint(self, method: str = "profile", level: float = 0.95, **kwargs) -> pd.DataFrame:
        """Confidence intervals for every parameter (random-effect SDs and correlations, σ,
        fixed effects): ``method`` is "wald", "profile" or "boot"."""
        from .intervals import confint

        return confint(self, method=method, level=level, **kwargs)

    def bootstrap(self, n: int = 1000, seed: int | None = None, **kwargs):
        """Parametric bootstrap: simulate from the fit, refit, collect the estimates."""
        from .bootstrap import bootstrap

        return bootstrap(self, n=n, seed=seed, **kwargs)

    def simulate(self, n: int = 1, seed: int | None = None) -> np.ndarray:
        """``n`` new response vectors (nobs, n) drawn from the fitted model."""
        from .simulate import simulate_responses

        return simulate_responses(self, n=n, seed=seed)

    def save(self, path) -> None:
        """Write the fit to a file that :func:`multilevel.load` reads (see
        :mod:`multilevel.io` for the format)."""
        from .io import save

        save(self, path)

    # -- presentation ----------------------------------------------------------------
    def summary(self) -> str:
        from .summary import summary_text

        return summary_text(self)

    def __repr__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """The JSON contract of ``multilevel fit --json``."""
        vc = self.varcorr
        ranef = []
        for t in self._terms:
            se = np.sqrt(np.maximum(np.diagonal(t.condvar, axis1=1, axis2=2), 0))
            for i, lev in enumerate(t.levels):
                for a, name in enumerate(t.names):
                    ranef.append(
                        {
                            "group": t.group,
                            "level": str(lev),
                            "term": name,
                            "mode": float(t.modes[i, a]),
                            "se": float(se[i, a]),
                        }
                    )
        return {
            "formula": self.formula,
            "family": self.family,
            "method": self.method,
            "nobs": int(self.nobs),
            "n_dropped": int(self.n_dropped),
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
