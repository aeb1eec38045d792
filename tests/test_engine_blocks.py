"""The cross-product blocks: weighted sums equal to the dense products, a pattern built once
that gives the same blocks for a new response or new weights as a fresh pass."""

import numpy as np
import pandas as pd
import pytest

from multilevel.data import build_frame
from multilevel.engine import BlockPattern, Design, ProfiledDeviance, RandomBlock, Response
from multilevel.engine.layout import theta_for_deviance
from multilevel.fitting.lmm import design_of, prepare, response_of

FORMULAS = [
    "y ~ x + (1 + x | g1) + (1 | g2)",
    "y ~ x + (1 | g1) + (1 + x | g2) + (1 | g3)",
    "y ~ x + (1 + x | g1)",
]


def simulate(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n) * 3.0 + 1.0,
            "g1": rng.integers(0, 15, n),
            "g2": rng.integers(0, 6, n),
            "g3": rng.integers(0, 4, n),
            "w": rng.uniform(0.2, 3.0, n),
        }
    )
    df["y"] = 2.0 + 0.5 * df.x + rng.normal(size=15)[df.g1] + rng.normal(size=n)
    return df


def dense_blocks(frame, pattern, weights, y):
    """[Z D⁻¹ X_s y_s]'W[Z D⁻¹ X_s y_s] written out densely, with the pattern's scalings."""
    std = pattern.std.with_y_center(y, weights)
    Xs, ys = std.transform(frame.X, y)
    cols = []
    for rt, d in zip(frame.reterms, pattern.z_scale, strict=True):
        Z = np.zeros((frame.n, rt.nlevels * rt.k))
        for a in range(rt.k):
            Z[np.arange(frame.n), rt.codes * rt.k + a] = rt.Z[:, a] / d[a]
        cols.append(Z)
    M = np.column_stack([*cols, Xs, ys])
    w = np.ones(frame.n) if weights is None else weights
    return M.T @ (w[:, None] * M), [c.shape[1] for c in cols]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("weighted", [False, True])
def test_blocks_are_the_dense_weighted_products(formula, weighted):
    df = simulate(1)
    frame = build_frame(formula, df, weights="w" if weighted else None)
    pattern = BlockPattern(design_of(frame), frame.weights)
    cp = pattern.crossproducts(response_of(frame))
    full, q = dense_blocks(frame, pattern, frame.weights, frame.y)
    off = np.concatenate([[0], np.cumsum(q)])
    for i, rt in enumerate(frame.reterms):
        blk = full[off[i] : off[i + 1], off[i] : off[i + 1]]
        for lv in range(rt.nlevels):
            s = slice(lv * rt.k, (lv + 1) * rt.k)
            np.testing.assert_allclose(cp.diag[i][lv], blk[s, s], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(cp.zw[i], full[off[i] : off[i + 1], off[-1] :], rtol=1e-11)
        for j in range(i + 1, len(frame.reterms)):
            want = full[off[j] : off[j + 1], off[i] : off[i + 1]]
            np.testing.assert_allclose(cp.off[(j, i)].toarray(), want, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cp.ww, full[off[-1] :, off[-1] :], rtol=1e-11, atol=1e-8)
    expected = float(np.log(frame.weights).sum()) if weighted else 0.0
    assert cp.log_weights == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("formula", FORMULAS)
def test_a_new_response_costs_one_pass_and_gives_the_same_deviance(formula):
    """BlockPattern.with_response (only the y column recomputed) and a fresh pass give the
    same deviance at any θ (y₀ differs; any centring gives the same fit)."""
    df = simulate(2)
    frame = build_frame(formula, df, weights="w")
    problem = prepare(frame)
    y2 = frame.y + np.random.default_rng(3).normal(size=frame.n) * 2.0
    response = problem.response.with_y(y2)
    shared = problem.deviance.with_crossproducts(
        problem.pattern.with_response(problem.blocks, response)
    )
    fresh = prepare(frame.with_response(y2)).deviance
    rng = np.random.default_rng(4)
    for _ in range(4):
        theta = np.abs(fresh.layout.start + rng.normal(scale=0.5, size=fresh.layout.size))
        assert shared(theta) == pytest.approx(fresh(theta), rel=1e-11)


@pytest.mark.parametrize("formula", FORMULAS)
def test_reweighted_blocks_reuse_the_pattern(formula):
    """New weights (as PIRLS makes them) through the same pattern and the deviance's
    ``reweighted``: the same deviance as everything built afresh for those weights."""
    df = simulate(5)
    frame = build_frame(formula, df)
    problem = prepare(frame)
    w2 = np.random.default_rng(6).uniform(0.5, 2.0, frame.n)
    response = Response(frame.y, w2)
    cp2 = problem.pattern.crossproducts(response)
    reused = problem.deviance.reweighted(cp2)
    fresh_pattern = BlockPattern(design_of(frame), w2)
    fresh = ProfiledDeviance(
        fresh_pattern.crossproducts(response), design_of(frame).correlated, reml=True
    )
    rng = np.random.default_rng(7)
    for _ in range(4):
        theta = np.abs(fresh.layout.start + rng.normal(scale=0.5, size=fresh.layout.size))
        assert reused(theta) == pytest.approx(fresh(theta), rel=1e-10)
    # and the pattern is shared, not rebuilt
    if problem.deviance.pairs is not None:
        assert reused.pairs is problem.deviance.pairs


def test_weights_are_rows_scaled_by_their_root():
    """Var(ε_i) = σ²/w_i is the unweighted model of sqrt(w)·(X, Z, y): the same profiled
    deviance at every θ up to lme4's -Σ log w_i (REML and ML)."""
    df = simulate(8)
    frame = build_frame("y ~ x + (1 + x | g1) + (1 | g2)", df, weights="w")
    design, w = design_of(frame), frame.weights
    r = np.sqrt(w)
    scaled = Design(
        design.X * r[:, None],
        tuple(
            RandomBlock(b.Z * r[:, None], b.codes, b.nlevels, b.correlated) for b in design.blocks
        ),
    )
    for reml in (True, False):
        weighted = ProfiledDeviance(
            BlockPattern(design, w).crossproducts(Response(frame.y, w)), design.correlated, reml
        )
        plain = ProfiledDeviance(
            BlockPattern(scaled).crossproducts(Response(frame.y * r)), design.correlated, reml
        )
        rng = np.random.default_rng(9)
        lay = plain.layout
        for _ in range(3):
            theta = np.abs(lay.start + rng.normal(scale=0.5, size=lay.size))  # for Z, unscaled
            tw = theta_for_deviance(lay, theta, weighted.cp.z_scale)
            tp = theta_for_deviance(lay, theta, plain.cp.z_scale)
            assert weighted(tw) == pytest.approx(plain(tp) - np.log(w).sum(), rel=1e-10)
