"""What a fit says about itself in plain words: singular (boundary) estimates, random effects
aliased with the fixed effects, predictors on very different scales."""

from __future__ import annotations

import numpy as np

from ..engine import CrossProducts
from ..engine.linalg import solve_triangular
from ..fitting.optimize import BOUNDARY

#: fixed-effects columns whose scales differ by more than this get a note
SCALE_RATIO = 1e6


def zero_rows(lam_s: np.ndarray) -> np.ndarray:
    """(k,) whether each row of a scale-free Λ_s is 0: the variance of that effect is 0."""
    return np.sqrt((lam_s**2).sum(axis=1)) < BOUNDARY


def aliased_terms(cp: CrossProducts, terms) -> list[str]:
    """Random-effects terms whose columns lie in the span of X (e.g. ``C(g)`` beside
    ``(1 | g)``): their variance is not identifiable. From the blocks: the residual of Z_i
    after projecting on X has trace tr(Z'Z) - ||L⁻¹X'Z||²_F, L = chol(X'X)."""
    p = cp.p
    if p == 0:
        return []
    L = np.linalg.cholesky(cp.ww[:p, :p])
    out = []
    for t, D, zw in zip(terms, cp.diag, cp.zw, strict=True):
        if t.nlevels * t.k > p:  # more columns than X has: cannot all lie in its span
            continue
        total = float(np.trace(D, axis1=1, axis2=2).sum())
        explained = float((solve_triangular(L, zw[:, :p].T, lower=True) ** 2).sum())
        if total - explained <= 1e-9 * total:
            out.append(
                f"the random effects of {t.term} are aliased with the fixed effects (their "
                "columns lie in the span of X): their variance cannot be estimated"
            )
    return out


def scale_note(cp: CrossProducts, names: list[str]) -> str | None:
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


def singular_messages(terms, lambdas_s: list[np.ndarray], varcov: list[np.ndarray]) -> list[str]:
    """Boundary terms, judged on the scale-free Λ_s (θ relative to σ, Z columns of unit
    size): a row of Λ_s at 0 is a zero variance; otherwise a diagonal element at 0 is a
    correlation at ±1 (or, with 3+ effects, a rank-deficient covariance)."""
    msgs = []
    for t, lam_s, vc in zip(terms, lambdas_s, varcov, strict=True):
        zero = zero_rows(lam_s)
        for a, name in enumerate(t.names):
            if zero[a]:
                msgs.append(f"the variance of '{name}' in {t.group} is estimated as zero")
        if zero.any() or not (np.abs(np.diag(lam_s)) < BOUNDARY).any():
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
