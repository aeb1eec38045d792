"""Complete, no and partial pooling (Gelman & Hill 2007, ch. 12), and the R² and pooling
factor λ at each level of a two-level model (Gelman & Pardoe 2006, "Bayesian measures of
explained variance and pooling in multilevel models", Bayesian Analysis 1(2)).

Pooling, per group j and level-1 coefficient c:

* complete pooling: one OLS regression of y on the level-1 design X1 (n, p1), groups and
  group-level predictors ignored: the same line in every group;
* no pooling: the varying coefficients estimated separately in every group, the others
  shared (one OLS fit of y on [X1_fixed, blockdiag_j X1_varying,j]; with every coefficient
  varying these are one regression per group, with the residual SD pooled). A group whose
  own columns are rank deficient (one observation for a line, x constant) gets NaN and the
  reason;
* partial pooling: the multilevel estimates β_jc (``TwoLevelModel.coef_table``).

R² and λ. Level k has units m with θ_m^(k) = μ_m^(k) + ε_m^(k): at level 1 θ = y and
ε_i = y_i - X_i β - Z_i b_j[i]; at level 2, for each varying coefficient c, θ_j = β_jc
(= D_jc'β + η_jc) and ε_j = η_jc. Over draws s from the fitted model, with V_m the sample
variance over units and E the mean over draws,

    R²_k = 1 - E(V_m ε_m^(k)) / E(V_m θ_m^(k)),
    λ_k  = 1 - V_m(E ε_m^(k)) / E(V_m ε_m^(k)).

λ near 0: the errors are well estimated (little pooling); near 1: they are all shrunk to zero
(complete pooling). The draws follow arm's ``sim()``
(:class:`~multilevel.model.ConditionalDistribution`): σ² = pwrss/χ²_{n-p},
β ~ N(β̂, V σ²/σ̂²), b_j from its conditional distribution
N(b̂_j, C_j σ²/σ̂²); with ``joint=True`` (default) b_j is drawn given the drawn β,
b_j ~ N(b̂_j - H_j(β - β̂), C_j σ²/σ̂²) (the joint posterior of (β, b) given θ;
arm draws them independently, ``joint=False``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# -- complete and no pooling ---------------------------------------------------------------


def complete_pooling(model) -> pd.DataFrame:
    """One OLS regression of y on the level-1 design: ``estimate`` and ``se`` (p1 rows)."""
    d = model.design
    X1, y = d.X1, model.fit.frame.y
    coef, _, rank, _ = np.linalg.lstsq(X1, y, rcond=None)
    n, p = X1.shape
    resid = y - X1 @ coef
    s2 = resid @ resid / (n - p) if n > p else np.nan
    if rank < p:
        se = np.full(p, np.nan)
    else:
        se = np.sqrt(s2 * np.diag(np.linalg.inv(X1.T @ X1)))
    return pd.DataFrame({"estimate": coef, "se": se}, index=d.x1names)


def _why_not(B: np.ndarray, names: list[str]) -> str:
    """Why a group's own columns B (n_j, k) cannot be fitted."""
    nj, k = B.shape
    if nj < k:
        return f"{nj} observation{'s' if nj != 1 else ''} for {k} coefficients"
    for a, name in enumerate(names):
        if name != "(Intercept)" and np.ptp(B[:, a]) == 0 and k > 1:
            return f"'{name}' is constant in this group"
    return "the varying columns are collinear in this group"


def no_pooling(model) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Estimates (J, p1), SEs (J, p1) and the reason for NaN (J,) of the no-pooling fit.

    Block elimination of the normal equations of y on [C, blockdiag_j B_j] (C the shared
    columns, B_j group j's rows of the varying ones): with P_j = (B_j'B_j)⁻¹,
    S = C'C - Σ_j C'B_j P_j B_j'C, the shared γ = S⁻¹(C'y - Σ_j C'B_j P_j B_j'y), the
    group's β_j = P_j(B_j'y - B_j'C γ); Var(γ) = s² S⁻¹,
    Var(β_j) = s²(P_j + P_j B_j'C S⁻¹ C'B_j P_j), s² = RSS / (n - p_C - k J)."""
    d = model.design
    y = model.fit.frame.y
    J, p1 = len(d.levels), len(d.x1names)
    vcols = list(d.zcol)
    ccols = [c for c in range(p1) if c not in set(vcols)]
    vnames = [d.x1names[c] for c in vcols]
    B, C = d.X1[:, vcols], d.X1[:, ccols]
    k, pc = len(vcols), len(ccols)
    order = np.argsort(d.codes, kind="stable")
    bounds = np.searchsorted(d.codes[order], np.arange(J + 1))
    ok = np.zeros(J, bool)
    note = pd.Series("", index=d.levels.rename(model.group), name="note", dtype=object)
    P = np.full((J, k, k), np.nan)
    BtC = np.zeros((J, k, pc))
    Bty = np.zeros((J, k))
    for j in range(J):
        rows = order[bounds[j] : bounds[j + 1]]
        Bj = B[rows]
        if len(rows) >= k and np.linalg.matrix_rank(Bj) == k:
            ok[j] = True
            P[j] = np.linalg.inv(Bj.T @ Bj)
            BtC[j] = Bj.T @ C[rows]
            Bty[j] = Bj.T @ y[rows]
        else:
            note.iloc[j] = _why_not(Bj, vnames)
    use = ok[d.codes]
    est = np.full((J, p1), np.nan)
    se = np.full((J, p1), np.nan)
    if pc:
        PBtC = P[ok] @ BtC[ok]  # (J_ok, k, pc)
        S = C[use].T @ C[use] - np.einsum("jka,jkb->ab", BtC[ok], PBtC)
        r = C[use].T @ y[use] - np.einsum("jka,jk->a", PBtC, Bty[ok])
        if np.linalg.matrix_rank(S) < pc:
            note[ok] = "a shared (non-varying) column is constant within groups"
            return _frames(model, est, se, note)
        Sinv = np.linalg.inv(S)
        gam = Sinv @ r
    else:
        gam = np.zeros(0)
    bj = np.einsum("jab,jb->ja", P[ok], Bty[ok] - BtC[ok] @ gam)
    fitted = C[use] @ gam + np.einsum("na,na->n", B[use], bj[np.cumsum(ok)[d.codes[use]] - 1])
    df = int(use.sum()) - pc - k * int(ok.sum())
    s2 = float(((y[use] - fitted) ** 2).sum() / df) if df > 0 else np.nan
    est[np.ix_(ok, vcols)] = bj
    var_b = P[ok]
    if pc:
        var_b = var_b + PBtC @ Sinv @ np.swapaxes(PBtC, 1, 2)
        est[np.ix_(ok, ccols)] = gam
        se[np.ix_(ok, ccols)] = np.sqrt(s2 * np.diag(Sinv))
    se[np.ix_(ok, vcols)] = np.sqrt(s2 * np.diagonal(var_b, axis1=1, axis2=2))
    return _frames(model, est, se, note)


def _frames(model, est, se, note):
    d = model.design
    idx = d.levels.rename(model.group)
    return (
        pd.DataFrame(est, index=idx, columns=d.x1names),
        pd.DataFrame(se, index=idx, columns=d.x1names),
        note,
    )


def compare_pooling(model) -> pd.DataFrame:
    """Per group: ``n``, the no-pooling ``note`` ("" or why NaN), and for each level-1
    coefficient c the columns ``c: complete``, ``c: complete se``, ``c: no pooling``,
    ``c: no pooling se``, ``c: partial``, ``c: partial se``."""
    cp = complete_pooling(model)
    npe, nps, note = no_pooling(model)
    ct = model.coef_table()
    out = pd.DataFrame({"n": ct["n"], "note": note})
    for c in model.coefficients:
        out[f"{c}: complete"] = cp.loc[c, "estimate"]
        out[f"{c}: complete se"] = cp.loc[c, "se"]
        out[f"{c}: no pooling"] = npe[c]
        out[f"{c}: no pooling se"] = nps[c]
        out[f"{c}: partial"] = ct[c]
        out[f"{c}: partial se"] = ct[f"se({c})"]
    return out


# -- draws from the fitted model -------------------------------------------------------------


def simulate_parameters(model, ndraws: int, rng: np.random.Generator, joint: bool = True):
    """Draws (σ (S,), β (S, p), b (S, J, k)) from the fitted model's conditional
    distribution (module docstring)."""
    draws = model.fit.conditional.draw(rng, ndraws, joint=joint)
    return draws.sigma, draws.beta, draws.b[0]


def pooling_factor(eps: np.ndarray) -> float:
    """λ = 1 - V_m(E_s ε_sm) / E_s(V_m ε_sm) for draws ``eps`` (S, units); 1 when every draw
    of the errors is zero (complete pooling)."""
    ev = eps.var(axis=1, ddof=1).mean()
    if ev <= 0:
        return 1.0
    return float(1 - eps.mean(axis=0).var(ddof=1) / ev)


def r_squared(eps: np.ndarray, theta: np.ndarray) -> float:
    """R² = 1 - E_s(V_m ε_sm) / E_s(V_m θ_sm) for draws (S, units) of errors and outcomes;
    ``theta`` may be one row (data)."""
    vt = np.atleast_2d(theta).var(axis=1, ddof=1).mean()
    if vt <= 0:
        return float("nan")
    return float(1 - eps.var(axis=1, ddof=1).mean() / vt)


def _level1_moments(model, beta, b, chunk_elems: int = 4_000_000):
    """E_s V_i(ε_si) and V_i(E_s ε_si) of the level-1 errors, in chunks of draws."""
    fr = model.fit.frame
    rt = fr.reterms[0]
    y, X, Z, codes = fr.y, fr.X, rt.Z, rt.codes
    S, n = beta.shape[0], len(y)
    step = max(1, chunk_elems // max(n, 1))
    total = np.zeros(n)
    var_sum = 0.0
    for s0 in range(0, S, step):
        s1 = min(S, s0 + step)
        eps = y - beta[s0:s1] @ X.T - np.einsum("nk,snk->sn", Z, b[s0:s1][:, codes, :])
        total += eps.sum(axis=0)
        var_sum += eps.var(axis=1, ddof=1).sum()
    return var_sum / S, (total / S).var(ddof=1)


def pooling_measures(model, ndraws: int = 1000, seed=None, joint: bool = True) -> pd.DataFrame:
    """R² and λ at each level (module docstring), one row per level-1 outcome / varying
    coefficient: ``level``, ``quantity``, ``units``, ``R2``, ``lambda``, and the two
    variances behind them, ``E_var_error`` = E(V ε) and ``E_var_theta`` = E(V θ)."""
    if ndraws < 2:
        raise ValueError("ndraws must be at least 2")
    rng = np.random.default_rng(seed)
    _, beta, b = simulate_parameters(model, ndraws, rng, joint=joint)
    d = model.design
    y = model.fit.frame.y
    e_var, var_e = _level1_moments(model, beta, b)
    vy = y.var(ddof=1)
    rows = [
        (
            1,
            f"{model.spec.response} (observations)",
            len(y),
            1 - e_var / vy,
            1 - var_e / e_var if e_var > 0 else 1.0,
            e_var,
            vy,
        )
    ]
    for a, c in enumerate(d.zcol):
        name = d.x1names[c]
        eps = b[:, :, a]
        theta = beta @ d.D[:, c, :].T + eps  # (S, J)
        rows.append(
            (
                2,
                f"{model.symbols[name]}_j ({'intercept' if name == '(Intercept)' else name})",
                eps.shape[1],
                r_squared(eps, theta),
                pooling_factor(eps),
                float(eps.var(axis=1, ddof=1).mean()),
                float(theta.var(axis=1, ddof=1).mean()),
            )
        )
    out = pd.DataFrame(
        rows,
        columns=["level", "quantity", "units", "R2", "lambda", "E_var_error", "E_var_theta"],
    )
    out.attrs.update(ndraws=int(ndraws), seed=seed, joint=bool(joint))
    return out
