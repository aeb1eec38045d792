"""Diagnostics of a generalized linear mixed fit, in plain words.

* **Separation** (binomial): a direction d of the fixed effects with x_i'd ≥ 0 wherever the
  row has only successes, ≤ 0 wherever it has only failures and = 0 where it has both, not
  all 0, found by the linear programme of Konis (2007) (maximise Σ_succ x_i'd - Σ_fail x_i'd
  with |d_k| ≤ 1, on columns scaled to a largest |value| of 1). Then the likelihood keeps
  rising along d: the estimates of the predictors in d drift off to ±∞ and their SEs are
  meaningless.
* **Overdispersion** (Poisson; binomial with more than one trial): the Pearson statistic
  Σ r_i² over its residual degrees of freedom n - npar; above 1.2 with P(χ² > Σ r²) < 0.01
  the counts vary more than the family allows.
* **PIRLS trouble**: PIRLS did not converge at the optimum; names the group whose score
  is farthest from 0.
"""

from __future__ import annotations

import re

import numpy as np

#: the Pearson dispersion ratio, and its p-value, above and below which a fit is called
#: overdispersed
DISPERSION_RATIO = 1.2
DISPERSION_P = 0.01


def _separating(Xs: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """A separating direction of the (scaled) columns Xs, or None (module docstring)."""
    from scipy.optimize import linprog

    succ, fail = y >= 1.0, y <= 0.0
    mixed = ~(succ | fail)
    c = -(Xs[succ].sum(axis=0) - Xs[fail].sum(axis=0))
    A_ub = np.vstack([-Xs[succ], Xs[fail]])
    A_eq = Xs[mixed] if mixed.any() else None
    b_eq = np.zeros(int(mixed.sum())) if mixed.any() else None
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(len(A_ub)), A_eq=A_eq, b_eq=b_eq,
                  bounds=[(-1, 1)] * Xs.shape[1], method="highs")  # fmt: skip
    if res.status != 0 or -res.fun < 1e-7 * max(1.0, len(y)):
        return None
    return res.x


def separation(X: np.ndarray, y: np.ndarray, xnames) -> tuple[list[str], int] | None:
    """(the predictors of a separating direction, the rows it predicts exactly) or None.
    The predictors named are the fewest found: one column alone (with the intercept, if
    any) when one separates, else one term's columns (a factor's, named by the term), else
    the programme's whole direction."""
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    d = _separating(Xs, y)
    if d is None:
        return None
    names = [str(n) for n in xnames]
    icept = [k for k, n in enumerate(names) if n == "(Intercept)"]
    singles = []
    for k in range(Xs.shape[1]):
        if k in icept:
            continue
        cols = sorted({k, *icept})
        dk = _separating(Xs[:, cols], y)
        if dk is not None:
            singles.append((names[k], int((np.abs(Xs[:, cols] @ dk) > 1e-9).sum())))
    if singles:
        return [n for n, _ in singles], max(r for _, r in singles)
    terms: dict[str, list[int]] = {}
    for k, n in enumerate(names):
        if k not in icept:
            terms.setdefault(re.sub(r"\[[^\]]*\]", "", n), []).append(k)
    for term, ks in terms.items():  # a factor's columns together
        cols = sorted({*ks, *icept})
        if len(ks) > 1 and (dk := _separating(Xs[:, cols], y)) is not None:
            return [term], int((np.abs(Xs[:, cols] @ dk) > 1e-9).sum())
    exact = int((np.abs(Xs @ d) > 1e-9).sum())
    return [n for n, v in zip(names, d, strict=True) if abs(v) > 1e-7], exact


def separation_message(names: list[str], rows: int) -> str:
    which = names[0] if len(names) == 1 else "a combination of " + ", ".join(names)
    return (
        f"separation: {which} predict{'s' if len(names) == 1 else ''} the outcome exactly "
        f"in {rows} row{'s' if rows != 1 else ''} (only successes on one side, only "
        "failures on the other), so the likelihood has no maximum in that direction: the "
        "estimates drift off towards infinity and their standard errors mean nothing; drop "
        "or merge the predictor, or use a penalised (Firth or weakly informative prior) fit"
    )


def dispersion(pearson: np.ndarray, df_resid: int) -> tuple[float, float]:
    """(Σ r_i² / df, P(χ²_df > Σ r_i²))."""
    from scipy.stats import chi2

    stat = float((pearson**2).sum())
    df = max(int(df_resid), 1)
    return stat / df, float(chi2.sf(stat, df))


def overdispersion_message(ratio: float, p: float, family: str) -> str:
    what = "counts" if family == "poisson" else "proportions"
    shown = "< 1e-16" if p < 1e-16 else f"= {p:.2g}"
    return (
        f"overdispersion: the Pearson chi-square is {ratio:.3g} times its residual degrees "
        f"of freedom (p {shown}): the {what} vary more than the {family} model allows, so "
        "the standard errors are too small; add an observation-level random effect, "
        "(1 | obs) with obs a row number, or model the extra variation"
    )


def pirls_message(message: str, group: str, level: str) -> str:
    return (
        f"PIRLS did not converge at the optimum ({message}); the conditional mode of "
        f"{group} '{level}' is farthest from its optimum: look at that group's data (few "
        "rows, all successes or failures, extreme counts)"
    )
