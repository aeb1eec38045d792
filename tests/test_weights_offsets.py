"""Prior weights and offsets, against lme4 1.1-31 / lmerTest 3.1-3 / pbkrtest 0.5.2, dense
brute force and exact invariances.

With prior weights w and offset o, y = Xβ + Zb + o + ε, b ~ N(0, σ²ΛΛ'), ε ~ N(0, σ²W⁻¹):

* lme4: the full fits are in tests/data/reference (tests/test_reference.py); the inference
  figures in tests/data/reference/weighted, made by tests/data/reference/
  make_weighted_references.R. lme4's profile of a fixed effect and pbkrtest's Kenward-Roger
  mishandle prior weights, so for those the reference is the exactly equivalent unweighted
  model of the rows scaled by sqrt(w) ("sqrt_w_model" in the JSON, and :func:`sqrt_w_twin`
  here): Var(W^½ y) = σ²(W^½ZΛΛ'Z'W^½ + I) with the same θ, β, σ and modes, and a criterion
  larger by Σ log w.
* brute force: the profiled deviance from the dense V = ZΛΛ'Z' + W⁻¹ (its log-determinant
  carries the -Σ log w), the modes and conditional variances, Kenward-Roger from the dense
  Σ = ZGZ' + σ²W⁻¹;
* invariances: weights of 1, weights scaled by c, offset(z) against I(y - z), the offset
  column against offset(), offsets that add up.
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_data, reference, reference_weights
from scipy.stats import norm

import multilevel
from multilevel import DataError, datasets
from multilevel.cli import main
from multilevel.data import build_frame
from multilevel.engine import one_blas_thread
from multilevel.errors import MultilevelError
from multilevel.fitting.lmm import prepare
from multilevel.inference.intervals import Profile
from multilevel.inference.kenward_roger import kenward_roger

HERE = Path(__file__).parent
WEIGHTED = HERE / "data" / "reference" / "weighted"
SLEEP = "Reaction ~ Days + (Days | Subject)"
RADON = "log_radon ~ floor + offset(log_uranium) + (1 | county)"
Z95 = float(norm.ppf(0.975))


def rel(a, b, floor=0.1):
    return abs(a - b) / max(abs(b), floor)


def weighted_ref(name: str) -> dict:
    return json.loads((WEIGHTED / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def sleep_w():
    return load_data("sleepstudy_w")


@pytest.fixture(scope="module")
def sleep_wo(sleep_w):
    """sleepstudy with weights and an offset column o (a fixed effect of 3 per day, and a
    wiggle), so that a lost offset moves the Days coefficient by 3."""
    return sleep_w.assign(o=3.0 * sleep_w.Days + np.sin(np.arange(len(sleep_w))))


@pytest.fixture(scope="module")
def fit_w(sleep_w):
    return multilevel.fit(SLEEP, sleep_w, weights="w")


@pytest.fixture(scope="module")
def fit_wo(sleep_wo):
    return multilevel.fit(SLEEP, sleep_wo, weights="w", offset="o")


@pytest.fixture(scope="module")
def radon_w():
    return load_data("radon_w")


@pytest.fixture(scope="module")
def fit_radon_w(radon_w):
    return multilevel.fit(RADON, radon_w, weights="w")


def simulate(seed, n=160, ng1=11, ng2=6):
    """Unbalanced groups, crossed factors, weights from 0.2 to 3 and an offset."""
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, ng1, n)
    g2 = rng.integers(0, ng2, n)
    x = rng.normal(size=n)
    z = rng.uniform(-1, 1, size=n)
    w = rng.uniform(0.2, 3.0, size=n)
    o = rng.normal(scale=2.0, size=n)
    y = (
        1
        + 0.5 * x
        + o
        + rng.normal(size=ng1)[g1] * 0.8
        + rng.normal(size=ng1)[g1] * 0.4 * x
        + rng.normal(size=ng2)[g2] * 0.6
        + rng.normal(size=ng2)[g2] * 0.3 * z
        + rng.normal(size=n) / np.sqrt(w)
    )
    return pd.DataFrame(
        {"y": y, "x": x, "z": z, "w": w, "o": o, "g1": g1, "g2": [f"b{v}" for v in g2]}
    )


# ---------------------------------------------------------------------------------------
# dense algebra
# ---------------------------------------------------------------------------------------
def dense_Z(frame):
    """Z (n, q), terms in the engine's order, columns level-major (level * k + a)."""
    blocks = []
    for rt in frame.reterms:
        Zi = np.zeros((frame.n, rt.nlevels * rt.k))
        for a in range(rt.k):
            Zi[np.arange(frame.n), rt.codes * rt.k + a] = rt.Z[:, a]
        blocks.append(Zi)
    return np.hstack(blocks)


def dense_blockdiag(frame, mats):
    """blockdiag over terms of I_l ⊗ mats[t] in the level-major order of :func:`dense_Z`."""
    q = sum(rt.nlevels * rt.k for rt in frame.reterms)
    out = np.zeros((q, q))
    o = 0
    for rt, m in zip(frame.reterms, mats, strict=True):
        for lv in range(rt.nlevels):
            s = o + lv * rt.k
            out[s : s + rt.k, s : s + rt.k] = m
        o += rt.nlevels * rt.k
    return out


def weights_of(frame):
    return np.ones(frame.n) if frame.weights is None else frame.weights


def working(frame):
    return frame.y if frame.offset is None else frame.y - frame.offset


@one_blas_thread()
def brute(frame, lams, reml):
    """The profiled criterion at Λ (data scale) from V = ZΛΛ'Z' + W⁻¹, with β̂, r'V⁻¹r and
    (X'V⁻¹X)⁻¹."""
    Z, X, y = dense_Z(frame), frame.X, working(frame)
    n, p = X.shape
    Lam = dense_blockdiag(frame, lams)
    V = Z @ Lam @ Lam.T @ Z.T + np.diag(1.0 / weights_of(frame))
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    r2 = r @ Vi @ r
    ld = np.linalg.slogdet(V)[1]  # = log|Λ'Z'WZΛ + I| - Σ log w
    if reml:
        obj = ld + np.linalg.slogdet(XtViX)[1] + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))
    else:
        obj = ld + n * (1 + np.log(2 * np.pi * r2 / n))
    return {"objective": obj, "beta": beta, "pwrss": r2, "vcov_unscaled": np.linalg.inv(XtViX)}


def sqrt_w_twin(data, y, xs, slopes, group, w="w", offset=None):
    """The unweighted model of the rows scaled by sqrt(w) (module docstring): data and formula.
    ``xs``: the fixed-effects columns besides the intercept, ``slopes`` those of the random
    term."""
    sw = np.sqrt(data[w].to_numpy())
    yy = data[y].to_numpy() - (0.0 if offset is None else data[offset].to_numpy())
    out = pd.DataFrame({"yt": sw * yy, "sw": sw, group: data[group]})
    for x in xs:
        out[f"sw_{x}"] = sw * data[x].to_numpy()
    fixed = " + ".join(["0", "sw"] + [f"sw_{x}" for x in xs])
    rand = " + ".join(["0", "sw"] + [f"sw_{x}" for x in slopes])
    return out, f"yt ~ {fixed} + ({rand} | {group})"


# ---------------------------------------------------------------------------------------
# 1. the reference models through the CLI (multilevel.fit: tests/test_reference.py)
# ---------------------------------------------------------------------------------------
CLI_CASES = {
    "sleepstudy_weights_reml": [],
    "sleepstudy_weights_ml": ["--ml"],
    "radon_offset_reml": [],
    "radon_w_offset_reml": [],
    "penicillin_wo_ml": ["--ml"],
}


def check_against_lme4(d: dict, ref: dict) -> None:
    assert d["objective"] <= ref["objective"] + 1e-6 * abs(ref["objective"])
    assert d["nobs"] == ref["nobs"] and d["converged"]
    for k, v in ref["fixef"].items():
        assert rel(d["fixef"][k], v) < 1e-4, k
        assert rel(d["fixef_se"][k], ref["fixef_se"][k]) < 1e-4, k
    assert rel(d["sigma"], ref["sigma"]) < 1e-4
    for r in ref["varcorr"]:
        if r["grp"] == "Residual" or r.get("var2"):
            continue
        ours = [
            v
            for v in d["varcorr"]
            if v["group"] == r["grp"] and v["term1"] == r["var1"] and v["term2"] is None
        ]
        assert len(ours) == 1 and rel(ours[0]["sdcor"], r["sdcor"]) < 1e-4, r
    modes = {(m["group"], m["level"], m["term"]): m for m in d["ranef"]}
    assert len(modes) == len(ref["ranef"])
    for r in ref["ranef"]:
        m = modes[(r["grpvar"], str(r["grp"]), r["term"])]
        assert rel(m["mode"], r["condval"]) < 1e-3, r
        assert rel(m["se"], r["condsd"]) < 1e-3, r


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_cli_json_matches_lme4(name, capsys):
    ref = reference(name)
    local = HERE / "data" / "datasets" / f"{ref['data']}.csv"
    data = str(local) if local.is_file() else ref["data"]
    weights = reference_weights(ref)
    argv = ["fit", data, ref["formula"], "--json", *CLI_CASES[name]]
    if weights:
        argv += ["--weights", weights]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    check_against_lme4(d, ref)
    assert d["weights"] == weights and d["offset"] is None and d["n_zero_weight"] == 0


def test_cli_offset_option_is_the_formula_offset(capsys):
    ref = reference("penicillin_wo_ml")
    data = str(HERE / "data" / "datasets" / "penicillin_wo.csv")
    formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    assert main(["fit", data, formula, "--json", "--ml", "--weights", "w", "--offset", "o"]) == 0
    d = json.loads(capsys.readouterr().out)
    check_against_lme4(d, ref)
    assert d["offset"] == "o" and d["weights"] == "w"


def test_the_weighted_references_are_not_the_unweighted_fits():
    """Else the comparisons above would not test the weights."""
    for name, plain in [
        ("sleepstudy_weights_reml", "sleepstudy_slope_reml"),
        ("sleepstudy_weights_ml", "sleepstudy_slope_ml"),
    ]:
        a, b = reference(name), reference(plain)
        assert rel(a["fixef"]["Days"], b["fixef"]["Days"]) > 1e-2
        assert rel(a["sigma"], b["sigma"]) > 1e-2


# ---------------------------------------------------------------------------------------
# 2. the weighted profiled deviance against dense brute force
# ---------------------------------------------------------------------------------------
FORMULAS = [
    "y ~ x + (1 + x | g1)",
    "y ~ x + (1 | g1) + (1 | g2)",
    "y ~ x + z + (1 + x | g1) + (1 + z | g2)",
    "y ~ x + offset(z) + (1 | g1) + (0 + x | g2)",
]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_weighted_deviance_equals_brute_force(formula, reml):
    df = simulate(1)
    df.loc[[4, 17, 90], "w"] = 0.0  # dropped before anything is computed
    frame = build_frame(formula, df, weights="w", offset="o")
    assert frame.n == len(df) - 3 and frame.schema.n_zero_weight == 3
    dev = prepare(frame, reml).deviance
    rng = np.random.default_rng(2)
    for _ in range(3):
        theta = dev.layout.start + rng.normal(scale=0.4, size=dev.layout.size)
        theta = np.where(dev.layout.lower == 0, np.abs(theta), theta)
        fac = dev.factor(theta)
        want = brute(frame, fac.lambdas_data, reml)
        assert dev(theta) == pytest.approx(want["objective"], rel=1e-10)
        assert fac.objective == pytest.approx(want["objective"], rel=1e-10)
        np.testing.assert_allclose(fac.beta, want["beta"], rtol=1e-8, atol=1e-10)
        assert fac.pwrss == pytest.approx(want["pwrss"], rel=1e-9)
        np.testing.assert_allclose(fac.vcov_unscaled, want["vcov_unscaled"], rtol=1e-8)
        # the -Σ log w term, on its own: log|V| = log|Λ'Z'WZΛ + I| - Σ log w
        Z, w = dense_Z(frame), frame.weights
        Lam = dense_blockdiag(frame, fac.lambdas_data)
        P = Lam.T @ Z.T @ (w[:, None] * Z) @ Lam + np.eye(Z.shape[1])
        assert fac.ldL2 == pytest.approx(np.linalg.slogdet(P)[1], rel=1e-10)
        ld = fac.log_determinants - (fac.ldRX2 if reml else 0.0)
        assert ld == pytest.approx(np.linalg.slogdet(P)[1] - np.log(w).sum(), rel=1e-10)


@pytest.mark.parametrize("formula", FORMULAS[:3])
def test_weighted_modes_and_conditional_variances_against_dense_algebra(formula):
    """b̂ = ΛP⁻¹Λ'Z'W(y - o - Xβ̂), Var(b | y) = σ²ΛP⁻¹Λ' with P = Λ'Z'WZΛ + I; β̂ the GLS
    estimate and vcov(β̂) = σ²(X'V⁻¹X)⁻¹."""
    m = multilevel.fit(formula, simulate(3), weights="w", offset="o")
    frame = m.frame
    Z, w = dense_Z(frame), frame.weights
    Lam = dense_blockdiag(frame, m.lambdas)
    Minv = np.linalg.inv(Lam.T @ Z.T @ (w[:, None] * Z) @ Lam + np.eye(Z.shape[1]))
    r = working(frame) - frame.X @ m.fixef.to_numpy()
    b = Lam @ Minv @ Lam.T @ Z.T @ (w * r)
    cv = m.sigma**2 * Lam @ Minv @ Lam.T
    o = 0
    for t, modes, condvar in zip(
        m.schema.terms, m.conditional.modes, m.conditional.condvar, strict=True
    ):
        k, q = len(t.names), len(t.levels) * len(t.names)
        np.testing.assert_allclose(modes.reshape(-1), b[o : o + q], rtol=1e-6, atol=1e-9)
        for lv in range(len(t.levels)):
            s = o + lv * k
            np.testing.assert_allclose(condvar[lv], cv[s : s + k, s : s + k], rtol=1e-6)
        o += q
    want = brute(frame, m.lambdas, True)
    np.testing.assert_allclose(m.fixef.to_numpy(), want["beta"], rtol=1e-8)
    np.testing.assert_allclose(m.vcov.to_numpy(), m.sigma**2 * want["vcov_unscaled"], rtol=1e-8)
    assert m.sigma**2 == pytest.approx(want["pwrss"] / (frame.n - frame.X.shape[1]), rel=1e-9)


def test_weighted_fit_is_the_unweighted_fit_of_rows_scaled_by_sqrt_w(fit_wo, sleep_wo):
    """Everything but the criterion (larger by Σ log w) is the same for the twin."""
    data, formula = sqrt_w_twin(sleep_wo, "Reaction", ["Days"], ["Days"], "Subject", offset="o")
    twin = multilevel.fit(formula, data)
    m = fit_wo
    assert twin.objective == pytest.approx(m.objective + np.log(sleep_wo.w).sum(), rel=1e-9)
    np.testing.assert_allclose(twin.theta, m.theta, rtol=2e-5)
    np.testing.assert_allclose(twin.fixef.to_numpy(), m.fixef.to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(twin.fixef_se.to_numpy(), m.fixef_se.to_numpy(), rtol=1e-5)
    assert twin.sigma == pytest.approx(m.sigma, rel=1e-6)
    np.testing.assert_allclose(
        twin.ranef["Subject"].to_numpy(), m.ranef["Subject"].to_numpy(), rtol=1e-4, atol=1e-6
    )


# ---------------------------------------------------------------------------------------
# 3. invariances
# ---------------------------------------------------------------------------------------
def test_weights_of_one_are_no_weights_exactly(sleep_w):
    m0 = multilevel.fit(SLEEP, sleep_w)
    m1 = multilevel.fit(SLEEP, sleep_w.assign(one=1.0), weights="one")
    assert m1.objective == m0.objective
    np.testing.assert_array_equal(m1.theta, m0.theta)
    np.testing.assert_array_equal(m1.fixef, m0.fixef)
    np.testing.assert_array_equal(m1.fixef_se, m0.fixef_se)
    assert m1.sigma == m0.sigma
    np.testing.assert_array_equal(m1.ranef["Subject"], m0.ranef["Subject"])
    assert m1.weights == "one" and "Weights: one" in m1.summary()


@pytest.mark.parametrize("c", [4.0, 0.01])
def test_weights_times_c(c, sleep_w, fit_w):
    """Var(ε) = σ²/(c w) is the same model with σ_c = sqrt(c) σ and θ_c = θ/sqrt(c) (θ is
    relative to σ): the same likelihood, β, random-effect SDs and modes."""
    m, mc = fit_w, multilevel.fit(SLEEP, sleep_w.assign(w=c * sleep_w.w), weights="w")
    assert mc.objective == pytest.approx(m.objective, rel=1e-10)
    assert mc.sigma == pytest.approx(math.sqrt(c) * m.sigma, rel=1e-6)
    np.testing.assert_allclose(mc.theta, m.theta / math.sqrt(c), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mc.fixef, m.fixef, rtol=1e-8)
    np.testing.assert_allclose(mc.fixef_se, m.fixef_se, rtol=1e-5)
    vc, vcc = m.varcorr, mc.varcorr
    sub = vc.group != "Residual"
    np.testing.assert_allclose(vcc.sdcor[sub], vc.sdcor[sub], rtol=1e-4)
    np.testing.assert_allclose(mc.ranef["Subject"], m.ranef["Subject"], rtol=1e-4, atol=1e-6)
    # and exactly, at any θ: d_c(θ/sqrt(c)) = d(θ)
    th = m.factorization.theta * 1.3
    assert mc.deviance(th / math.sqrt(c)) == pytest.approx(m.deviance(th), rel=1e-11)


def test_offset_term_is_the_response_less_the_offset():
    df = simulate(5)
    a = multilevel.fit("y ~ x + offset(z) + (1 + x | g1)", df)
    b = multilevel.fit("I(y - z) ~ x + (1 + x | g1)", df)
    assert a.objective == pytest.approx(b.objective, rel=1e-12)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-10)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-10)
    np.testing.assert_allclose(a.fitted, b.fitted + df.z, rtol=1e-12)
    np.testing.assert_allclose(a.residuals, b.residuals, rtol=1e-9, atol=1e-12)
    # ... and not the fit without the offset
    c = multilevel.fit("y ~ x + (1 + x | g1)", df)
    assert abs(c.objective - a.objective) > 1


def test_offset_column_is_the_offset_term():
    df = simulate(6)
    a = multilevel.fit("y ~ x + (1 | g1) + (1 | g2)", df, weights="w", offset="o")
    b = multilevel.fit("y ~ x + offset(o) + (1 | g1) + (1 | g2)", df, weights="w")
    assert a.objective == b.objective
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.fixef, b.fixef)
    np.testing.assert_array_equal(a.fitted, b.fitted)
    assert a.schema.offset == "o" and b.schema.offset is None


def test_offsets_add_up():
    df = simulate(7)
    df["oz"] = df.o + 2 * df.z
    base = multilevel.fit("y ~ x + (1 | g1)", df, offset="oz")
    forms = [
        ("y ~ x + offset(o) + offset(2 * z) + (1 | g1)", None),
        ("y ~ x + offset(2 * z) + (1 | g1)", "o"),
        ("y ~ x + offset(o + 2 * z) + (1 | g1)", None),
    ]
    for formula, offset in forms:
        m = multilevel.fit(formula, df, offset=offset)
        assert m.objective == pytest.approx(base.objective, rel=1e-12), formula
        np.testing.assert_allclose(m.fixef, base.fixef, rtol=1e-10)
        np.testing.assert_allclose(m.theta, base.theta, rtol=1e-8)
        np.testing.assert_allclose(m.fitted, base.fitted, rtol=1e-12)
        np.testing.assert_allclose(m.frame.offset, df.oz, rtol=1e-14)


# ---------------------------------------------------------------------------------------
# 4. data handling
# ---------------------------------------------------------------------------------------
def test_zero_weights_are_dropped_and_counted(sleep_w, tmp_path, capsys):
    d = sleep_w.copy()
    d.loc[[3, 50], "w"] = 0.0
    m = multilevel.fit(SLEEP, d, weights="w")
    ref = multilevel.fit(SLEEP, sleep_w.drop(index=[3, 50]), weights="w")
    assert m.nobs == 178 and m.schema.n_zero_weight == 2 and m.n_dropped == 0
    assert m.objective == ref.objective
    np.testing.assert_array_equal(m.fixef, ref.fixef)
    assert m.to_dict()["n_zero_weight"] == 2
    text = m.summary()
    assert "   2 rows with weight 0 dropped" in text.splitlines()
    assert "missing values dropped" not in text
    path = tmp_path / "zero.csv"
    d.to_csv(path, index=False)
    assert main(["fit", str(path), SLEEP, "--weights", "w", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_zero_weight"] == 2 and out["nobs"] == 178 and out["weights"] == "w"
    assert out["objective"] == pytest.approx(ref.objective, rel=1e-9)
    one = sleep_w.copy()
    one.loc[7, "w"] = 0.0
    line = multilevel.fit(SLEEP, one, weights="w").summary().splitlines()
    assert "   1 row with weight 0 dropped" in line


def test_all_zero_weights_are_refused(sleep_w):
    with pytest.raises(DataError, match=r"every row has a weight of 0 .*'w'"):
        multilevel.fit(SLEEP, sleep_w.assign(w=0.0), weights="w")


def _labelled(sleep_w):
    """The data with row labels 1000, 1001, ... (messages must name the caller's rows)."""
    return sleep_w.set_axis(sleep_w.index + 1000)


@pytest.mark.parametrize(
    "value, words",
    [
        (-1.0, ["'w'", "negative", "-1", "row 1007"]),
        (np.nan, ["'w'", "missing", "row 1007"]),
        (np.inf, ["'w'", "infinite", "row 1007"]),
        ("heavy", ["'w'", "'heavy'", "row 1007"]),
    ],
)
def test_bad_weights_are_refused_naming_column_and_row(sleep_w, value, words):
    d = _labelled(sleep_w).astype({"w": object} if isinstance(value, str) else {})
    d.loc[1007, "w"] = value
    with pytest.raises(DataError) as e:
        multilevel.fit(SLEEP, d, weights="w")
    for word in words:
        assert word in str(e.value), (word, str(e.value))


@pytest.mark.parametrize("kind", ["text", "bool", "category"])
def test_non_numeric_weights_are_refused_naming_column_and_row(sleep_w, kind):
    d = _labelled(sleep_w)
    d["w"] = {
        "text": d.w.astype(str),
        "bool": d.w > 1,
        "category": pd.Categorical(d.w),
    }[kind]
    with pytest.raises(DataError) as e:
        multilevel.fit(SLEEP, d, weights="w")
    msg = str(e.value)
    assert "'w'" in msg and "numeric" in msg and "row 1000" in msg, msg


def test_a_row_dropped_for_a_missing_value_is_not_checked_for_its_weight(sleep_w):
    d = sleep_w.copy()
    d.loc[7, ["Reaction", "w"]] = np.nan
    m = multilevel.fit(SLEEP, d, weights="w")
    assert m.nobs == 179 and m.n_dropped == 1 and m.schema.n_zero_weight == 0


@pytest.mark.parametrize("what", ["weights", "offset"])
def test_unknown_weights_or_offset_column_is_named(sleep_w, what):
    with pytest.raises(DataError, match=rf"the {what} column 'nope' is not in the data"):
        multilevel.fit(SLEEP, sleep_w, **{what: "nope"})
    with pytest.raises(DataError, match=rf"{what}= takes the name of a column"):
        multilevel.fit(SLEEP, sleep_w, **{what: 3})


def test_missing_offset_values_drop_the_row(sleep_wo):
    d = sleep_wo.copy()
    d.loc[[10, 11], "o"] = np.nan
    m = multilevel.fit(SLEEP, d, weights="w", offset="o")
    ref = multilevel.fit(SLEEP, sleep_wo.drop(index=[10, 11]), weights="w", offset="o")
    assert m.nobs == 178 and m.n_dropped == 2 and m.schema.n_zero_weight == 0
    assert m.objective == ref.objective
    np.testing.assert_array_equal(m.fixef, ref.fixef)
    assert "   2 rows with missing values dropped" in m.summary().splitlines()


def test_bad_offset_values_are_refused_naming_column_and_row(sleep_wo):
    d = _labelled(sleep_wo)
    d.loc[1009, "o"] = np.inf
    with pytest.raises(DataError, match=r"offset column 'o'.*infinite.*row 1009"):
        multilevel.fit(SLEEP, d, offset="o")
    d = _labelled(sleep_wo).assign(o=lambda f: f.o.astype(str))
    with pytest.raises(DataError, match=r"offset column 'o' must be numeric.*row 1000"):
        multilevel.fit(SLEEP, d, offset="o")


# ---------------------------------------------------------------------------------------
# 5. downstream: fitted values, predictions, simulation, refits, intervals, tests, files
# ---------------------------------------------------------------------------------------
def test_fitted_residuals_and_pearson_residuals_by_hand(fit_wo, sleep_wo):
    m, d = fit_wo, sleep_wo
    re = m.ranef["Subject"].loc[d.Subject.astype(str)]
    by_hand = (
        m.fixef["(Intercept)"]
        + re["(Intercept)"].to_numpy()
        + (m.fixef["Days"] + re["Days"].to_numpy()) * d.Days
        + d.o
    ).to_numpy()
    np.testing.assert_allclose(m.fitted, by_hand, rtol=1e-12)
    np.testing.assert_allclose(m.residuals, d.Reaction - by_hand, rtol=1e-9, atol=1e-9)
    pearson = np.sqrt(d.w.to_numpy()) * (d.Reaction.to_numpy() - by_hand)
    np.testing.assert_allclose(m.pearson_residuals, pearson, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m.predict(), by_hand, rtol=1e-12)
    np.testing.assert_allclose(m.predict(d), by_hand, rtol=1e-12)


@pytest.mark.parametrize("name", ["sleepstudy_weights_reml", "radon_w_offset_reml"])
def test_fitted_and_scaled_residuals_match_lme4(name):
    wref = weighted_ref(name)
    m = fit_reference(name)
    np.testing.assert_allclose(m.fitted, wref["fitted"], rtol=1e-5)
    q = np.quantile(m.pearson_residuals / m.sigma, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(q, wref["scaled_residual_quantiles"], rtol=1e-3, atol=1e-4)
    lines = m.summary().splitlines()
    row = lines[lines.index("Scaled residuals:") + 2].split()
    np.testing.assert_allclose([float(v) for v in row], q, atol=1e-4)


def test_summary_names_weights_and_offset(fit_wo, fit_w):
    lines = fit_wo.summary().splitlines()
    assert lines[2:4] == ["Weights: w", " Offset: o"]
    assert "Weights: w" in fit_w.summary().splitlines()
    assert not any("Offset" in x for x in fit_w.summary().splitlines())
    d = fit_wo.to_dict()
    assert d["weights"] == "w" and d["offset"] == "o"


def test_predict_uses_the_offset_of_the_new_data(fit_wo, sleep_wo):
    nd = sleep_wo.iloc[[0, 25, 99]].copy()
    base = fit_wo.predict(nd)
    shifted = fit_wo.predict(nd.assign(o=nd.o + np.array([1.0, -2.0, 10.0])))
    np.testing.assert_allclose(shifted - base, [1.0, -2.0, 10.0], rtol=1e-10)
    with pytest.raises(DataError, match=r"newdata has no column 'o'.*offset"):
        fit_wo.predict(nd.drop(columns="o"))
    with pytest.raises(DataError, match=r"'o'"):
        fit_wo.predict(nd.drop(columns="o"), interval="confidence", ndraws=10, seed=1)


def test_predict_reevaluates_offset_terms_as_lme4():
    """lme4's predict(newdata) with another log_uranium and a new county."""
    ref = weighted_ref("radon_offset_reml")
    m = multilevel.fit(RADON, datasets.load("radon"))
    pr = ref["predict"]
    nd = datasets.load("radon").iloc[pr["rows"]].copy()
    nd["log_uranium"], nd["county"] = pr["log_uranium"], pr["county"]
    np.testing.assert_allclose(m.predict(nd), pr["fit"], rtol=1e-7)
    with pytest.raises(DataError, match="log_uranium"):
        m.predict(nd.drop(columns="log_uranium"))


def test_prediction_intervals_add_noise_of_variance_sigma2_over_w(fit_wo, sleep_wo):
    """Same seed: the same draws of the mean, then noise σ_s ε/sqrt(w) with w from the new
    data's weights column. Width/2z ≈ sqrt(Var_conf + σ²/w) (σ_s varies: ~1%)."""
    nd = sleep_wo.iloc[[0, 1, 2, 3]].copy()
    nd["w"] = [1.0, 4.0, 1e8, 0.25]
    kw = {"seed": 11, "ndraws": 20000}
    conf = fit_wo.predict(nd, interval="confidence", **kw)
    pred = fit_wo.predict(nd, interval="prediction", **kw)
    np.testing.assert_allclose(pred.fit, conf.fit, rtol=1e-12)
    var_conf = ((conf.upper - conf.lower) / (2 * Z95)) ** 2
    want = np.sqrt(var_conf + fit_wo.sigma**2 / nd.w)
    np.testing.assert_allclose((pred.upper - pred.lower) / (2 * Z95), want, rtol=0.03)
    # a row of weight 1e8 has (almost) no noise: the confidence interval
    assert pred.upper.iloc[2] - pred.lower.iloc[2] == pytest.approx(
        conf.upper.iloc[2] - conf.lower.iloc[2], rel=1e-3
    )
    # no weights column in the new data: weight 1
    plain = fit_wo.predict(nd.drop(columns="w"), interval="prediction", **kw)
    np.testing.assert_allclose(plain.iloc[0], pred.iloc[0], rtol=1e-12)
    bad = nd.assign(w=[1.0, -1.0, 1.0, 1.0]).set_axis([10, 11, 12, 13])
    with pytest.raises(MultilevelError, match=r"weights column 'w'.*-1\.0 in row 11"):
        fit_wo.predict(bad, interval="prediction", **kw)


def test_simulate_mean_and_residual_variance():
    """Random intercepts: differences of two rows of one group cancel the group effect, so
    y*_i - y*_j ~ N(μ_i - μ_j, σ²(1/w_i + 1/w_j)) with μ = Xβ̂ + o exactly."""
    df = simulate(8, n=200)
    df["w"] = np.where(np.arange(200) % 2, 0.25, 4.0)  # σ²/w differs 16-fold
    m = multilevel.fit("y ~ x + (1 | g1)", df, weights="w", offset="o")
    S = 20000
    Y = m.simulate(S, seed=3)
    assert Y.shape == (200, S)
    mu = m.frame.X @ m.fixef.to_numpy() + df.o.to_numpy()
    lam = m.lambdas[0][0, 0]
    total = m.sigma**2 * (lam**2 + 1.0 / df.w.to_numpy())
    zmean = (Y.mean(axis=1) - mu) / np.sqrt(total / S)
    assert np.abs(zmean).max() < 4.5
    order = np.argsort(df.g1.to_numpy(), kind="stable")
    g = df.g1.to_numpy()[order]
    i, j = order[:-1][g[:-1] == g[1:]], order[1:][g[:-1] == g[1:]]
    diff = Y[i] - Y[j]
    want_var = m.sigma**2 * (1 / df.w.to_numpy()[i] + 1 / df.w.to_numpy()[j])
    ratio = diff.var(axis=1) / want_var
    assert np.abs(ratio - 1).max() < 6 * math.sqrt(2 / S)
    assert abs(ratio.mean() - 1) < 0.01
    dz = (diff.mean(axis=1) - (mu[i] - mu[j])) / np.sqrt(want_var / S)
    assert np.abs(dz).max() < 4.5
    # the whole variance, with the group effect: σ²(λ² + 1/w) per row
    np.testing.assert_allclose(Y.var(axis=1) / total, 1.0, atol=6 * math.sqrt(2 / S))


def test_refit_keeps_weights_and_offset(fit_wo, sleep_wo):
    m = fit_wo
    same = m.refit(m.frame.y)
    assert same.objective == pytest.approx(m.objective, rel=1e-12)
    np.testing.assert_allclose(same.theta, m.theta, rtol=1e-6)
    np.testing.assert_allclose(same.fixef, m.fixef, rtol=1e-9)
    y = m.simulate(1, seed=5)[:, 0]
    new = m.refit(y)
    direct = multilevel.fit(SLEEP, sleep_wo.assign(Reaction=y), weights="w", offset="o")
    assert new.objective == pytest.approx(direct.objective, rel=1e-9)
    np.testing.assert_allclose(new.fixef, direct.fixef, rtol=1e-6)
    np.testing.assert_allclose(new.fitted, direct.fitted, rtol=1e-6)
    ml = m.refit(reml=False)
    direct = multilevel.fit(SLEEP, sleep_wo, weights="w", offset="o", reml=False)
    assert ml.objective == pytest.approx(direct.objective, rel=1e-10)
    np.testing.assert_allclose(ml.theta, direct.theta, rtol=1e-5)


def test_ml_refit_and_likelihood_ratio_test_match_lme4(fit_w, sleep_w):
    ref, lrt = reference("sleepstudy_weights_ml"), weighted_ref("sleepstudy_weights_reml")["lrt"]
    ml = fit_w.refit(reml=False)
    assert ml.objective <= ref["objective"] + 1e-6 * ref["objective"]
    np.testing.assert_allclose(ml.theta, ref["theta"], rtol=1e-3)
    m0 = multilevel.fit("Reaction ~ Days + (1 | Subject)", sleep_w, weights="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = multilevel.anova(m0, fit_w)
    assert tab["deviance"].iloc[1] == pytest.approx(lrt["ml_deviance"], rel=1e-8)
    assert tab["deviance"].iloc[0] == pytest.approx(lrt["ml_deviance_null"], rel=1e-8)
    assert tab["Chisq"].iloc[1] == pytest.approx(lrt["chisq"], rel=1e-5)


def test_bootstrap_replicates_are_refits_of_weighted_offset_simulations(fit_wo, sleep_wo):
    """Replicate r is the fit of the response simulated from SeedSequence(seed).spawn(n)[r]:
    both the simulation and the refit keep the weights and the offset."""
    n, seed = 12, 7
    res = fit_wo.bootstrap(n, seed=seed)
    children = np.random.SeedSequence(seed).spawn(n)
    for r in (0, 5, 11):
        y = fit_wo.simulate(1, seed=np.random.default_rng(children[r]))[:, 0]
        direct = multilevel.fit(SLEEP, sleep_wo.assign(Reaction=y), weights="w", offset="o")
        est = res.estimates.iloc[r]
        np.testing.assert_allclose(est[["(Intercept)", "Days"]], direct.fixef, rtol=1e-5)
        assert est["sigma"] == pytest.approx(direct.sigma, rel=1e-5)
        assert res.objective[r] == pytest.approx(direct.objective, rel=1e-9)


def test_bootstrap_is_centred_on_the_weighted_offset_fit(fit_wo):
    """A lost offset biases Days by 3 (~25 bootstrap SEs of the mean), lost weights bias σ by
    ~15%."""
    res = fit_wo.bootstrap(200, seed=1)
    est = res.estimates
    se_mean = est.std(ddof=1) / math.sqrt(len(est))
    assert res.failed == 0
    for k in ["(Intercept)", "Days"]:
        assert abs(est[k].mean() - fit_wo.fixef[k]) < 4 * se_mean[k], k
    assert abs(est["sigma"].mean() - fit_wo.sigma) < 0.02 * fit_wo.sigma


def test_wald_intervals_of_a_weighted_fit_match_lme4(fit_w):
    ref = weighted_ref("sleepstudy_weights_reml")["wald_ci"]
    ci = fit_w.confint("wald")
    assert list(ci.index) == ref["params"]
    for p, lo, hi in zip(ref["params"], ref["lower"], ref["upper"], strict=True):
        if lo is None:
            assert ci.loc[p].isna().all()
        else:
            np.testing.assert_allclose(ci.loc[p], [lo, hi], rtol=1e-6)


PROFILE_CASES = ["radon_offset_reml", "radon_w_offset_reml", "sleepstudy_weights_reml"]


def fit_reference(name: str):
    ref = reference(name)
    return multilevel.fit(ref["formula"], load_data(ref["data"]), weights=reference_weights(ref))


@pytest.fixture(scope="module")
def profiles():
    out = {}
    for name in PROFILE_CASES:
        m = fit_reference(name)
        out[name] = (m, Profile(m), m.confint("profile"))
    return out


@pytest.mark.parametrize("name", PROFILE_CASES)
def test_profile_intervals_of_weighted_and_offset_fits(name, profiles):
    """Against lme4's confint(method = "profile"): the variance parameters of the weighted
    fit itself, the fixed effects (which lme4 gets wrong with weights) of its sqrt(w) twin;
    ζ = 0 at the ML estimate, |ζ| = z at the limits, which bracket the estimate."""
    m, prof, ci = profiles[name]
    wref = weighted_ref(name)
    direct = wref["profile_ci"]
    twin = wref.get("sqrt_w_model", wref)["profile_ci"]
    assert list(ci.index) == direct["params"]
    for i, p in enumerate(direct["params"]):
        src = twin if p in m.fixef.index else direct
        for ours, want in zip(ci.loc[p], (src["lower"][i], src["upper"][i]), strict=True):
            assert rel(ours, want) < 1e-3, (p, ours, want)
        est = prof.estimate(p)
        assert prof.zeta(p, est) == pytest.approx(0.0, abs=1e-4)
        lo, hi = ci.loc[p]
        assert lo < est < hi
        for x in (lo, hi):
            assert abs(prof.zeta(p, x)) == pytest.approx(Z95, abs=1e-6)


def test_lme4_profile_of_weighted_fixed_effects_is_off(profiles):
    """Why the sqrt(w) twin is the reference there: lme4's weighted limits are far inside."""
    for name in ["sleepstudy_weights_reml", "radon_w_offset_reml"]:
        m, prof, _ = profiles[name]
        direct = weighted_ref(name)["profile_ci"]
        i = direct["params"].index("floor" if "floor" in m.fixef else "Days")
        assert abs(prof.zeta(direct["params"][i], direct["upper"][i])) < 0.5


@pytest.mark.parametrize("name", PROFILE_CASES)
def test_satterthwaite_df_match_lmertest(name):
    tab = fit_reference(name).test()
    want = weighted_ref(name)["satterthwaite"]
    assert list(tab.index) == want["terms"]
    np.testing.assert_allclose(tab["df"], want["df"], rtol=1e-4)
    np.testing.assert_allclose(tab["Pr(>|t|)"], want["p"], rtol=1e-3)


@pytest.mark.parametrize("name", ["sleepstudy_weights_reml", "radon_w_offset_reml"])
def test_weighted_kenward_roger_matches_pbkrtest_on_the_sqrt_w_twin(name):
    wref = weighted_ref(name)
    tab = fit_reference(name).test("kenward-roger")
    np.testing.assert_allclose(tab["df"], wref["sqrt_w_model"]["kenward_roger"]["df"], rtol=1e-5)
    if name == "radon_w_offset_reml":  # pbkrtest on the weighted fit ignores the weights
        assert rel(tab["df"].iloc[0], wref["pbkrtest_kenward_roger"]["df"][0]) > 0.1


def test_offset_kenward_roger_matches_pbkrtest():
    wref = weighted_ref("radon_offset_reml")
    tab = multilevel.fit(RADON, datasets.load("radon")).test("kenward-roger")
    np.testing.assert_allclose(tab["df"], wref["pbkrtest_kenward_roger"]["df"], rtol=1e-5)


@one_blas_thread()
def brute_kenward_roger(fit, weighted=True):
    """Φ_A and the df of each coefficient from the dense Σ = ZGZ' + σ²W⁻¹, its derivatives
    G_r in the covariance parameters (each term's lower triangle of Var(b_level), then σ²)
    and the REML information ½ tr(𝒫G_r𝒫G_s), 𝒫 = Σ⁻¹ - Σ⁻¹XΦX'Σ⁻¹ (Kenward & Roger 1997)."""
    frame = fit.frame
    X, Z = frame.X, dense_Z(frame)
    n, p = X.shape
    winv = 1.0 / weights_of(frame) if weighted else np.ones(n)
    s2 = fit.sigma**2
    covs = [s2 * lam @ lam.T for lam in fit.lambdas]
    G = []
    for t, rt in enumerate(frame.reterms):
        for a in range(rt.k):
            for b in range(a + 1) if rt.correlated else [a]:
                E = [np.zeros((r.k, r.k)) for r in frame.reterms]
                E[t][a, b] = E[t][b, a] = 1.0
                G.append(Z @ dense_blockdiag(frame, E) @ Z.T)
    G.append(np.diag(winv))
    Sigma = Z @ dense_blockdiag(frame, covs) @ Z.T + s2 * np.diag(winv)
    Si = np.linalg.inv(Sigma)
    Phi = np.linalg.inv(X.T @ Si @ X)
    Pm = Si - Si @ X @ Phi @ X.T @ Si
    m = len(G)
    P = [-X.T @ Si @ Gr @ Si @ X for Gr in G]
    Q = [[X.T @ Si @ G[r] @ Si @ G[s] @ Si @ X for s in range(m)] for r in range(m)]
    info = np.array([[0.5 * np.trace(Pm @ G[r] @ Pm @ G[s]) for s in range(m)] for r in range(m)])
    W = np.linalg.inv(info)
    U = sum(W[r, s] * (Q[r][s] - P[r] @ Phi @ P[s]) for r in range(m) for s in range(m))
    Phi_A = Phi + 2 * Phi @ U @ Phi
    dfs = []
    for j in range(p):
        L = np.eye(p)[[j]]
        q = 1
        Theta = L.T @ np.linalg.inv(L @ Phi @ L.T) @ L
        u = [Theta @ Phi @ P[r] @ Phi for r in range(m)]
        A1 = sum(W[r, s] * np.trace(u[r]) * np.trace(u[s]) for r in range(m) for s in range(m))
        A2 = sum(W[r, s] * np.trace(u[r] @ u[s]) for r in range(m) for s in range(m))
        B = (A1 + 6 * A2) / (2 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        den = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        rho = ((1 - A2 / q) / (1 - c2 * B)) ** 2 * (1 + c1 * B) / ((1 - c3 * B) * q)
        dfs.append(4 + (q + 2) / (q * rho - 1))
    return Phi_A, np.array(dfs)


@pytest.mark.parametrize(
    "formula", ["y ~ x + (1 + x | g1)", "y ~ x + z + (1 | g1) + (1 | g2)", "y ~ x + (x || g1)"]
)
def test_weighted_kenward_roger_against_dense_brute_force(formula):
    df = simulate(9, n=120)
    m = multilevel.fit(formula, df, weights="w", offset="o")
    Phi_A, dfs = brute_kenward_roger(m)
    kr = kenward_roger(m)
    np.testing.assert_allclose(kr.phi_adj, Phi_A, rtol=1e-7)
    tab = m.test("kenward-roger")
    np.testing.assert_allclose(tab["df"], dfs, rtol=1e-7)
    np.testing.assert_allclose(tab["Std. Error"], np.sqrt(np.diag(Phi_A)), rtol=1e-7)
    # the weights matter here: pbkrtest's Σ (ZGZ' + σ²I) gives other df
    _, unweighted = brute_kenward_roger(m, weighted=False)
    assert np.abs(unweighted / dfs - 1).max() > 1e-3


def test_inference_of_a_weighted_fit_is_that_of_its_sqrt_w_twin(fit_wo, sleep_wo):
    """The same likelihood (up to a constant) in the same parameters: Satterthwaite and
    Kenward-Roger df, and the profile intervals, agree with the unweighted twin's."""
    data, formula = sqrt_w_twin(sleep_wo, "Reaction", ["Days"], ["Days"], "Subject", offset="o")
    twin = multilevel.fit(formula, data)
    for ddf in ["satterthwaite", "kenward-roger"]:
        a, b = fit_wo.test(ddf), twin.test(ddf)
        np.testing.assert_allclose(a["df"], b["df"], rtol=1e-4)
        np.testing.assert_allclose(a["Std. Error"], b["Std. Error"], rtol=1e-5)
    ci, cit = fit_wo.confint("profile"), twin.confint("profile")
    np.testing.assert_allclose(ci.to_numpy(), cit.to_numpy(), rtol=1e-4)


def test_save_and_load_keep_weights_and_offset(fit_wo, tmp_path):
    path = tmp_path / "wo.mlfit"
    fit_wo.save(path)
    back = multilevel.load(path)
    assert back.objective == fit_wo.objective
    assert back.schema.weights == "w" and back.schema.offset == "o"
    np.testing.assert_array_equal(back.frame.weights, fit_wo.frame.weights)
    np.testing.assert_array_equal(back.frame.offset, fit_wo.frame.offset)
    np.testing.assert_allclose(back.fitted, fit_wo.fitted, rtol=1e-12)
    np.testing.assert_allclose(back.fixef, fit_wo.fixef, rtol=1e-12)
    assert back.summary().splitlines()[2:4] == ["Weights: w", " Offset: o"]


def test_two_level_form_with_weights_and_offset(sleep_wo, fit_wo):
    t = multilevel.fit("Reaction ~ Days", sleep_wo, group="Subject", weights="w", offset="o")
    assert isinstance(t, multilevel.TwoLevelModel)
    assert t.lmm.objective == pytest.approx(fit_wo.objective, rel=1e-12)
    np.testing.assert_allclose(t.lmm.fixef, fit_wo.fixef, rtol=1e-10)
    assert t.lmm.schema.weights == "w" and t.lmm.schema.offset == "o"
    assert "Weights: w" in t.summary()
    with pytest.raises(DataError, match="the weights column 'nope'"):
        multilevel.fit("Reaction ~ Days", sleep_wo, group="Subject", weights="nope")


def test_save_and_load_keep_the_zero_weight_count(sleep_w, tmp_path):
    d = sleep_w.copy()
    d.loc[[3, 50], "w"] = 0.0
    m = multilevel.fit(SLEEP, d, weights="w")
    path = tmp_path / "zero.mlfit"
    m.save(path)
    back = multilevel.load(path)
    assert back.schema.n_zero_weight == 2 and back.nobs == 178
    assert "   2 rows with weight 0 dropped" in back.summary().splitlines()
    assert back.objective == m.objective


def test_two_level_equations_show_the_weights_and_the_offset(sleep_wo):
    """Level 1 of a weighted fit reads ε_i ~ N(0, σ_y²/w_i), and the offset is a term of it;
    an offset(expr) of the individual-level formula reaches the lme4 formula."""
    t = multilevel.fit("Reaction ~ Days", sleep_wo, group="Subject", weights="w", offset="o")
    assert t.equations()[0].endswith("+ o_i + ε_i,   ε_i ~ N(0, σ_y²/w_i)")
    f = multilevel.fit("Reaction ~ Days + offset(o)", sleep_wo, group="Subject", weights="w")
    assert f.lme4_formula == "Reaction ~ Days + offset(o) + (1 + Days | Subject)"
    assert f.objective == pytest.approx(t.objective, rel=1e-12)
    assert "offset(o)_i" in f.equations()[0]
    plain = multilevel.fit("Reaction ~ Days", sleep_wo, group="Subject")
    assert plain.equations()[0].endswith("+ ε_i,   ε_i ~ N(0, σ_y²)")


def test_cli_compare_takes_weights_and_offset(sleep_wo, tmp_path, capsys):
    path = tmp_path / "wo.csv"
    sleep_wo.to_csv(path, index=False)
    args = ["compare", str(path), "Reaction ~ Days + (1 | Subject)", SLEEP]
    assert main([*args, "--weights", "w", "--offset", "o", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    m0 = multilevel.fit("Reaction ~ Days + (1 | Subject)", sleep_wo, weights="w", offset="o")
    m1 = multilevel.fit(SLEEP, sleep_wo, weights="w", offset="o")
    want = multilevel.anova(m0, m1)
    assert out["test"]["chisq"] == pytest.approx(want["Chisq"].iloc[-1], rel=1e-8)
