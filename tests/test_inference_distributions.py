"""The t tail computed without scipy, against scipy.special.stdtr; and a summary that then
imports no scipy."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import special

from multilevel.inference.distributions import LARGE_DF, t_sf2

T = np.r_[0.0, np.geomspace(1e-8, 10.0, 80)]
DF = [0.05, 0.3, 1.0, 2.0, 3.5, 17.0, 100.0, 1e3, 2.5e4, 99_999.0, 1e5, 1e6, 9.99e6]
DF += [LARGE_DF, 1e8, 1e10, 1e14, np.inf]


def reference(t, df):
    """scipy's, or the closed forms for 1 and 2 df (where scipy loses digits near p = 1)."""
    t = np.asarray(t, dtype=float)
    if df == 1.0:  # Cauchy: (2/π) atan(1/t)
        return 2.0 / np.pi * np.arctan2(1.0, t)
    if df == 2.0:  # 1 - t/sqrt(2 + t²)
        r = np.sqrt(2.0 + t * t)
        return 2.0 / (r * (r + t))
    return 2.0 * (special.ndtr(-t) if np.isinf(df) else special.stdtr(df, -t))


@pytest.mark.parametrize("df", DF)
def test_t_tail_matches_scipy(df):
    want = reference(T, df)
    got = t_sf2(T, np.full_like(T, df))
    # relative to the tail where it is small, absolute where it is near 1
    err = np.abs(got - want) / np.minimum(want, 1.0 - want + 1e-300).clip(min=1e-300)
    tol = 1e-10 if df < 1e5 else 3e-8
    assert np.all((err < tol) | (np.abs(got - want) < 1e-15)), (df, err.max())


def test_far_tails_and_edge_cases():
    for df in (1.0, 5.0, 40.0, 1e4):
        t = np.array([30.0, 100.0, 1e4])
        np.testing.assert_allclose(t_sf2(t, np.full(3, df)), reference(t, df), rtol=1e-10)
    assert t_sf2(0.0, 5.0) == 1.0
    assert t_sf2(np.inf, 5.0) == 0.0
    assert np.isnan(t_sf2(np.nan, 5.0)) and np.isnan(t_sf2(2.0, 0.0))
    assert t_sf2(-2.0, 7.0) == t_sf2(2.0, 7.0)
    np.testing.assert_allclose(
        t_sf2(np.array([[1.0, 2.0]]), 3.0), reference(np.array([[1.0, 2.0]]), 3.0)
    )


def test_a_small_fit_and_its_summary_import_no_scipy():
    code = (
        "import sys, multilevel\n"
        "m = multilevel.fit('Reaction ~ Days + (Days | Subject)',"
        " multilevel.datasets.load('sleepstudy'))\n"
        "text = m.summary()\n"
        "assert 'Pr(>|t|)' in text and '3.26e-06' in text, text\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('scipy', 'formulaic')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
