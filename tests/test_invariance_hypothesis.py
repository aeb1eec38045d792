"""Property-based tests of invariances on random data sets (see ``strategies.designs``):
the order of the rows, the labels of the levels, an affine rescaling of a predictor and a
rescaling of the response change a fit only as the model says they must.

Each property checks, for a data set and its changed copy:

* both fit, or both fail with the same kind of MultilevelError;
* the criteria are the same function: the changed fit's deviance at the original optimum
  (θ mapped through the change) equals the original criterion plus the change's Jacobian
  term, and the other way round, to 1e-9 (this part does not depend on the optimiser);
* the two optima agree (to 1e-8 for row order and labels, to 1e-6 for the rescalings,
  as in ``test_fit_hypothesis``), and so do the estimates, mapped through the change.
  Where row order or labels move the optimum by more than 1e-8 but less than 1e-6, the
  optimiser stopped in a flat valley (E4 in ``strategies``, counted in the statistics).
  Where the optima differ by more, the higher fit must have missed the lower one's point
  for a known limit of the optimiser (E3; then the estimates are not compared); any
  other difference fails.

θ at an optimum is known only to the optimiser's precision in flat directions (e.g. the
correlation of a random slope with an intercept whose variance is near zero, where θ
can move by 1 for 1e-5 of deviance), so the estimates are compared on the scale of their
standard errors: fixed effects within 1e-3 SE for row order and labels (1e-2 SE where the
optima agree only to 1e-6; conditional modes within 5e-2 of the largest conditional SE of
their level), within 1e-2 SE for the rescalings, which reparametrise θ and send the
optimiser along another path; a slope's variance (smooth in θ near zero, unlike its SD)
within 1e-2 of (σ/sd(x))². In data sets of fewer than 20 rows the criterion can be flat
over a wide range of θ, and only the criteria and optima are compared.
"""

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from strategies import (
    MIN_NOBS_COMPARED,
    assert_close,
    data_lambdas,
    designs,
    deviance_theta,
    fit_or_error,
    known_miss,
    lower_factor,
)

from multilevel.errors import MultilevelError


def both(design, changed: pd.DataFrame, reml: bool):
    """The fits of the design's data and of ``changed``, or None when both fail alike."""
    a = fit_or_error(design.formula, design.data, reml=reml)
    b = fit_or_error(design.formula, changed, reml=reml)
    if isinstance(a, MultilevelError) or isinstance(b, MultilevelError):
        assert type(a) is type(b), f"{a!r} against {b!r}"
        event(f"both fail: {type(a).__name__}")
        return None
    assert np.isfinite(a.objective) and np.isfinite(b.objective)
    assert a.nobs == b.nobs and a.n_dropped == b.n_dropped
    return a, b


def same_criterion(a, b, to_b, to_a, shift: float) -> None:
    """b's criterion at a's optimum (Λ mapped by ``to_b``) is a's plus ``shift``, and a's
    at b's optimum (mapped by ``to_a``) is b's minus ``shift``."""
    at_a = b.deviance(deviance_theta(b, to_b(data_lambdas(a))))
    assert at_a == pytest.approx(a.objective + shift, rel=1e-9, abs=1e-9)
    at_b = a.deviance(deviance_theta(a, to_a(data_lambdas(b))))
    assert at_b == pytest.approx(b.objective - shift, rel=1e-9, abs=1e-9)


#: optima agree to this (relative) wherever they are compared, as in test_fit_hypothesis
OPTIMUM_RTOL = 1e-6


def optima_agree(a, b, shift: float, to_b, to_a, rtol: float) -> float | None:
    """Check that b's optimum is a's plus ``shift`` and say how closely the estimates must
    then agree, in standard errors (None: not compared).

    To ``rtol``: 1e-3 SE (θ is free to ~1e-3 in flat directions even then). Only to
    :data:`OPTIMUM_RTOL` (the optimiser stopped in a flat valley, E4 in ``strategies``):
    1e-2 SE. Further apart, the higher of the two must have missed the other's point for a
    known limit of the optimiser (E3), and the estimates are not compared; any other
    disagreement fails. In data sets of fewer than ``MIN_NOBS_COMPARED`` rows the criterion
    can be flat over a wide range of θ: there the estimates are not compared."""
    diff = b.objective - (a.objective + shift)
    scale = max(1.0, abs(a.objective + shift))
    if abs(diff) <= rtol * scale:
        event("optima agree" + (" (singular)" if a.singular else ""))
        tolerance = 1e-3
    elif abs(diff) <= OPTIMUM_RTOL * scale:
        event(f"optima agree to {OPTIMUM_RTOL:g}, not to {rtol:g} (E4)")
        tolerance = 1e-2
    else:
        worse, better, to_worse = (b, a, to_b) if diff > 0 else (a, b, to_a)
        why = known_miss(worse, deviance_theta(worse, to_worse(data_lambdas(better))))
        assert why, f"optima differ by {diff!r}: θ {a.optim.theta} and {b.optim.theta}"
        event(f"optima differ, a known limit ({why})")
        return None
    if a.nobs < MIN_NOBS_COMPARED:
        event(f"estimates not compared: fewer than {MIN_NOBS_COMPARED} observations")
        return None
    return tolerance


def same(lams):
    return lams


def slope_sd(fit) -> float:
    vc = fit.varcorr
    row = vc[(vc.group == "g") & (vc.term1 == "x") & vc.term2.isna()]
    return float(row.sdcor.iloc[0])


@given(designs(), st.booleans(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(design, reml, rnd):
    perm = list(range(len(design.data)))
    rnd.shuffle(perm)
    fits = both(design, design.data.iloc[perm], reml)
    if fits is None:
        return
    a, b = fits
    same_criterion(a, b, same, same, 0.0)
    tol = optima_agree(a, b, 0.0, same, same, 1e-8)
    if tol is None:
        return
    assert_close(b.fixef, a.fixef, 1e-5, tol * a.fixef_se.to_numpy())
    # fitted values follow their rows (those without missing values)
    kept = design.data.notna().all(axis=1)
    fa = pd.Series(a.fitted, index=design.data.index[kept])
    fb = pd.Series(b.fitted, index=design.data.index[perm][kept.to_numpy()[perm]])
    assert_close(fb.sort_index(), fa, 1e-5, 1e-2 * a.sigma, "fitted")


@given(designs(), st.booleans(), st.randoms(use_true_random=False))
def test_level_labels_do_not_matter(design, reml, rnd):
    df = design.data
    levels = sorted(df.g.dropna().unique())
    new = [f"L{rnd.randrange(10**6)}_{i}" for i in range(len(levels))]
    rnd.shuffle(new)  # the new labels sort in another order
    relabel = dict(zip(levels, new, strict=True))
    hmap = {h: rnd.choice([-1, 1]) * (10 * h + rnd.randrange(10)) for h in df.h.unique()}
    changed = df.assign(g=df.g.map(relabel), h=df.h.map(hmap))
    fits = both(design, changed, reml)
    if fits is None:
        return
    a, b = fits
    same_criterion(a, b, same, same, 0.0)
    ra, rb = a.ranef["g"], b.ranef["g"]
    assert sorted(rb.index) == sorted(relabel[g] for g in ra.index)
    tol = optima_agree(a, b, 0.0, same, same, 1e-8)
    if tol is None:
        return
    assert_close(b.fixef, a.fixef, 1e-5, tol * a.fixef_se.to_numpy())
    # the conditional modes follow their levels, to 5e-2 of the level's largest conditional
    # SE (θ moves in flat valleys, and with it the mode of a variance near 0, whose own SE
    # is tiny)
    modes = [c for c in ra.columns if not c.startswith("se(")]
    ses = [f"se({c})" for c in modes]
    floor = 1e-9 * (np.abs(ra[modes].to_numpy()).max() + a.sigma)  # modes of a zero variance
    for old in ra.index:
        got, want = rb.loc[relabel[old], modes], ra.loc[old, modes]
        atol = 5e-2 * ra.loc[old, ses].to_numpy(float).max() + floor
        assert_close(got, want, 1e-4, atol, "modes")


@given(
    designs(),
    st.booleans(),
    st.floats(-3, 3),
    st.booleans(),
    st.floats(-5, 5),
)
def test_affine_rescaling_of_a_predictor(design, reml, log10_a, negative, shift):
    """x -> a x + b with b = a s sd(x): the same model, reparametrised. The ML deviance is
    unchanged; the REML criterion gains 2 log|a| (the Jacobian of the fixed-effects
    columns, log|X'V⁻¹X|); the coefficient of x is divided by a, the SD of a random slope
    on x by |a|."""
    a = (-1.0 if negative else 1.0) * 10.0**log10_a
    df = design.data
    sd_x = float(np.nanstd(df.x.to_numpy(float)))
    b = a * shift * sd_x
    fits = both(design, df.assign(x=a * df.x + b), reml)
    if fits is None:
        return
    f0, f1 = fits
    jacobian = 2 * np.log(abs(a)) if reml else 0.0

    # random effects u on Z = [1 x] are T⁻¹u on Z T = [1 a x + b]: Σ -> T⁻¹ Σ T⁻ᵀ
    T = np.array([[1.0, b], [0.0, a]])
    Tinv = np.linalg.inv(T)

    def mapped(lams, M):
        out = list(lams)
        if design.slope:  # the (1 + x | g) term is the first: g has the most levels
            i = next(j for j, lam in enumerate(lams) if lam.shape == (2, 2))
            out[i] = lower_factor(M @ lams[i] @ lams[i].T @ M.T)
        return out

    to_f1, to_f0 = (lambda L: mapped(L, Tinv)), (lambda L: mapped(L, T))
    same_criterion(f0, f1, to_f1, to_f0, jacobian)
    if optima_agree(f0, f1, jacobian, to_f1, to_f0, 1e-6) is None:
        return
    se = f0.fixef_se
    assert_close(f1.fixef["x"] * a, f0.fixef["x"], 1e-5, 1e-2 * se["x"], "fixef x")
    assert_close(f1.fixef["w"], f0.fixef["w"], 1e-5, 1e-2 * se["w"], "fixef w")
    assert f1.sigma == pytest.approx(f0.sigma, rel=1e-3)
    if design.slope:
        # variances, not SDs: the criterion is smooth in a variance near 0, not in its root
        unit = (f0.sigma / sd_x) ** 2  # the natural size of a slope's variance on x
        v0, v1 = slope_sd(f0) ** 2, slope_sd(f1) ** 2 * a**2
        assert_close(v1, v0, 1e-3, 1e-2 * unit, "slope variance")


@given(designs(), st.booleans(), st.floats(-4, 4), st.booleans())
def test_rescaling_the_response(design, reml, log10_c, negative):
    """y -> c y: the estimates scale by c (σ by |c|), θ (relative to σ) is unchanged and
    the criterion gains 2 (n - p) log|c| (REML) or 2 n log|c| (ML)."""
    c = (-1.0 if negative else 1.0) * 10.0**log10_c
    fits = both(design, design.data.assign(y=c * design.data.y), reml)
    if fits is None:
        return
    a, b = fits
    n, p = a.nobs, len(a.fixef)
    jacobian = 2 * (n - p if reml else n) * np.log(abs(c))
    same_criterion(a, b, same, same, jacobian)
    if optima_agree(a, b, jacobian, same, same, 1e-6) is None:
        return
    assert_close(b.fixef / c, a.fixef, 1e-5, 1e-2 * a.fixef_se.to_numpy())
    assert b.sigma == pytest.approx(abs(c) * a.sigma, rel=1e-3)
    # θ (relative to σ) is unchanged: same_criterion checked that each criterion at the
    # other's θ is its own optimum; the two optimisers' θ can differ in flat directions
