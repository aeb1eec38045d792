"""Save and load: exact round trip, clear errors for foreign, newer or corrupted files."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel import datasets


@pytest.fixture(scope="module")
def fit():
    df = datasets.load("sleepstudy")
    df.loc[3, "Reaction"] = np.nan  # a dropped row must stay counted
    return multilevel.fit("Reaction ~ Days + (Days | Subject)", df, data_name="sleepstudy")


def test_round_trip_is_exact(fit, tmp_path):
    path = tmp_path / "m.mlfit"
    fit.save(path)
    m = multilevel.load(path)
    assert m.objective == fit.objective
    np.testing.assert_array_equal(m.theta, fit.theta)
    pd.testing.assert_series_equal(m.fixef, fit.fixef)
    pd.testing.assert_frame_equal(m.vcov, fit.vcov)
    pd.testing.assert_frame_equal(m.varcorr, fit.varcorr)
    pd.testing.assert_frame_equal(m.ranef["Subject"], fit.ranef["Subject"])
    assert m.sigma == fit.sigma and m.n_dropped == fit.n_dropped == 1
    assert m.converged == fit.converged and m.formula == fit.formula
    new = datasets.load("sleepstudy").head(5)
    np.testing.assert_array_equal(m.predict(new), fit.predict(new))
    assert m.summary() == fit.summary()


def _rewrite(src, dst, meta_change=None, data=None):
    with zipfile.ZipFile(src) as z:
        meta = json.loads(z.read("fit.json"))
        parquet = z.read("data.parquet")
    if meta_change:
        meta_change(meta)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("fit.json", json.dumps(meta))
        z.writestr("data.parquet", parquet if data is None else data)


def test_newer_format_version_is_refused(fit, tmp_path):
    fit.save(tmp_path / "m.mlfit")
    _rewrite(tmp_path / "m.mlfit", tmp_path / "new.mlfit", lambda m: m.update(version=99))
    with pytest.raises(multilevel.DataError, match="version 99.*upgrade"):
        multilevel.load(tmp_path / "new.mlfit")


def test_corrupted_files_are_refused(fit, tmp_path):
    fit.save(tmp_path / "m.mlfit")
    bad = tmp_path / "bad.mlfit"
    bad.write_bytes((tmp_path / "m.mlfit").read_bytes()[:200])
    with pytest.raises(multilevel.DataError, match="not a readable"):
        multilevel.load(bad)
    # parameters that do not belong to the data
    _rewrite(tmp_path / "m.mlfit", tmp_path / "t.mlfit", lambda m: m["theta"].__setitem__(0, 2.0))
    with pytest.raises(multilevel.DataError, match="corrupted"):
        multilevel.load(tmp_path / "t.mlfit")
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(multilevel.DataError):
        multilevel.load(tmp_path / "plain.txt")
    with pytest.raises(multilevel.DataError, match="no fit file"):
        multilevel.load(tmp_path / "missing.mlfit")


def test_a_formula_in_a_fit_file_cannot_run_code(fit, tmp_path):
    fit.save(tmp_path / "m.mlfit")
    target = tmp_path / "pwned"
    evil = f'Reaction ~ Days + {{__import__("os").system("touch {target}")}} + (Days | Subject)'
    _rewrite(tmp_path / "m.mlfit", tmp_path / "e.mlfit", lambda m: m.update(formula=evil))
    with pytest.raises(multilevel.MultilevelError):
        multilevel.load(tmp_path / "e.mlfit")
    assert not target.exists()
