"""A fast slice of the GLMM coverage study (validation/glmm_coverage.py): the first 30 of its
seeded studies of the binomial random-intercept-and-slope model, Wald intervals only (the
profile intervals of the full study take ~10x longer), on 2 worker processes.

What this checks, and what it does not:

* Wald coverage of each fixed effect ≥ 0.80. At the nominal 0.95, 30 studies fall below 0.80
  (≥ 7 misses) with probability 6e-4; with an SE too small by a factor 2 the true coverage is
  2Φ(1.96/2) - 1 = 0.67 and a parameter still reaches 0.80 with probability ~0.10, so both
  reaching it ~0.01. The seed is fixed, so the outcome is deterministic; these are the odds
  that a wrong SE would slip through on an arbitrary seed. Coverage cannot catch an SE that
  is too *large* (coverage near 1 is likely also at the nominal rate: 0.95³⁰ = 0.21), hence:
* the mean Wald SE within a factor 1.5 of the empirical SD of the 30 estimates (its relative
  Monte Carlo error is ~1/sqrt(58) = 13%), which catches a factor 2 either way;
* the fit's parameters have the true model's structure: 2 fixed effects named as the
  study's, 3 θ (the lower triangle of the 2x2 relative Cholesky factor of Σ), and every fit
  succeeded with finite intervals.

It is not the study: the coverage of the 200 studies, with the profile intervals, is in
validation/GLMM_COVERAGE.md (``python validation/glmm_coverage.py``).
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

VALIDATION = Path(__file__).resolve().parent.parent / "validation"
if str(VALIDATION) not in sys.path:
    sys.path.insert(0, str(VALIDATION))

import glmm_coverage as study  # noqa: E402

N_STUDIES = 30


@pytest.fixture(scope="module")
def records():
    return study.run_studies(N_STUDIES, study.BASE_SEED, workers=2, methods=("wald",))


def test_structure_of_each_fit(records):
    assert len(records) == N_STUDIES
    assert [r["index"] for r in records] == list(range(N_STUDIES))
    n_theta = len(study.true_theta())
    assert n_theta == 3
    for r in records:
        assert r["error"] is None, r["error"]
        assert r["wald_error"] is None, r["wald_error"]
        assert r["fixef_names"] == list(study.FIXED_NAMES)
        assert len(r["fixef"]) == len(study.BETA) == 2
        assert len(r["theta"]) == n_theta
        assert all(math.isfinite(v) for iv in r["wald"] for v in iv)
        assert all(lo < hi for lo, hi in r["wald"])


def test_wald_coverage_at_least_080(records):
    cov = study.coverage_table(records, methods=("wald",))
    assert list(cov["parameter"]) == list(study.FIXED_NAMES)
    assert (cov["n"] == N_STUDIES).all()
    for _, row in cov.iterrows():
        assert row["coverage"] >= 0.80, row.to_dict()


def test_wald_se_matches_spread_of_estimates(records):
    est = study.estimate_table(records)
    ratio = est["mean_se"] / est["sd_est"]
    assert np.all((ratio > 1 / 1.5) & (ratio < 1.5)), est.to_dict("records")


def test_studies_do_not_depend_on_their_number():
    # study k's data come from child k of SeedSequence(seed).spawn(n), whatever n
    a = study.simulate(study.study_seeds(3)[2])
    b = study.simulate(study.study_seeds(200)[2])
    assert a.equals(b)
    assert a.shape == (study.N_GROUPS * study.N_PER_GROUP, 3)
