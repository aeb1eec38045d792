"""The command line: every bad input gives one line ``error: ...`` on stderr and exit status
2, never a traceback; ``--json`` output is JSON with the documented keys.

Most cases run ``main()`` in-process (an exception escaping it fails the test just as a
traceback would); a representative set also runs as real subprocesses, started together so
that the file stays fast."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from multilevel import datasets
from multilevel.cli import main, read_data
from multilevel.errors import DataError

JSON_KEYS = {
    "formula",
    "family",
    "method",
    "nobs",
    "n_dropped",
    "ngroups",
    "objective",
    "loglik",
    "aic",
    "bic",
    "sigma",
    "theta",
    "fixef",
    "fixef_se",
    "varcorr",
    "singular",
    "converged",
    "ranef",
}


def synthetic(n_groups=6, per_group=10, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    g = np.repeat([f"g{i}" for i in range(n_groups)], per_group)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": 2
            + x
            + rng.normal(size=n_groups)[np.repeat(np.arange(n_groups), per_group)]
            + rng.normal(scale=0.5, size=n),
            "x": x,
            "g": g,
        }
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Data files for the error cases, by name."""
    d = tmp_path_factory.mktemp("cli")
    paths = {}

    def write(name, text):
        p = d / name
        p.write_text(text)
        paths[name] = str(p)

    df = synthetic()
    df.to_csv(d / "good.csv", index=False)
    paths["good.csv"] = str(d / "good.csv")
    na = df.copy()
    na.loc[[0, 3, 8], "x"] = np.nan
    na.to_csv(d / "na.csv", index=False)
    paths["na.csv"] = str(d / "na.csv")
    df.to_parquet(d / "good.parquet")
    paths["good.parquet"] = str(d / "good.parquet")
    write("empty.csv", "")
    write("header_only.csv", "y,x,g\n")
    write("ragged.csv", "y,x,g\n1,2,a\n3,4,b,5,6\n")
    write("dup.csv", "y,x,x,g\n1,2,3,a\n4,5,6,b\n")
    write("text_y.csv", df.assign(y=[f"v{i}" for i in range(len(df))]).to_csv(index=False))
    write("one_group.csv", df.assign(g="only").to_csv(index=False))
    write("few_rows.csv", synthetic(n_groups=6, per_group=2).to_csv(index=False))
    write("all_na.csv", df.assign(x=np.nan).to_csv(index=False))
    inf = df.copy()
    inf.loc[5, "y"] = np.inf
    write("inf_y.csv", inf.to_csv(index=False))
    infx = df.copy()
    infx.loc[2, "x"] = -np.inf
    write("inf_x.csv", infx.to_csv(index=False))
    typo = df.to_csv(index=False).replace(f"{df.x[4]}", "oops", 1)
    write("typo_x.csv", typo)
    write("semicolon.csv", df.to_csv(index=False, sep=";"))
    write("spaces.csv", df.to_csv(index=False).replace(",", ", "))
    (d / "binary.csv").write_bytes(b"\x00\x01\xff\xfe\xfa")
    paths["binary.csv"] = str(d / "binary.csv")
    write("bad.parquet", "not parquet")
    (d / "folder").mkdir()
    paths["folder"] = str(d / "folder")
    paths["missing.csv"] = str(d / "no-such-file.csv")
    return paths


def run_main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *words):
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


# -- errors in-process -------------------------------------------------------------------

ERROR_CASES = [
    # (file or dataset, formula, words in the message)
    ("sleepstudy", "Reaction ~ Dayz + (1 | Subject)", ["unknown column 'Dayz'", "'Days'"]),
    ("sleepstudy", "Reaction ~ Days + (Dayz | Subject)", ["unknown column 'Dayz'"]),
    ("sleepstudy", "Reaction ~ Days + (1 | Subjects)", ["'Subjects'", "did you mean 'Subject'"]),
    ("text_y.csv", "y ~ x + (1 | g)", ["response 'y' must be numeric"]),
    ("one_group.csv", "y ~ x + (1 | g)", ["'g'", "1 level", "only 'only'"]),
    ("few_rows.csv", "y ~ x + (1 + x | g)", ["(1 + x | g)", "12 random effects", "12 obs"]),
    ("all_na.csv", "y ~ x + (1 | g)", ["no rows left", "all 60 rows", "'x' 60"]),
    ("inf_y.csv", "y ~ x + (1 | g)", ["response 'y' has 1 infinite value", "row 5"]),
    ("inf_x.csv", "y ~ x + (1 | g)", ["column 'x' has 1 infinite value", "row 2"]),
    ("typo_x.csv", "y ~ x + (1 | g)", ["column 'x' holds numbers as text", "'oops'"]),
    ("dup.csv", "y ~ x + (1 | g)", ["column 'x' appears 2 times", "dup.csv"]),
    ("empty.csv", "y ~ x + (1 | g)", ["is empty"]),
    ("header_only.csv", "y ~ x + (1 | g)", ["has a header but no rows"]),
    ("ragged.csv", "y ~ x + (1 | g)", ["cannot read", "Expected 3 fields in line 3, saw 5"]),
    ("binary.csv", "y ~ x + (1 | g)", ["not UTF-8"]),
    ("bad.parquet", "y ~ x + (1 | g)", ["cannot read", "bad.parquet"]),
    ("folder", "y ~ x + (1 | g)", ["is a directory"]),
    ("missing.csv", "y ~ x + (1 | g)", ["neither a file nor a bundled dataset", "sleepstudy"]),
    ("good.csv", "y ~ x + (1 | g", ["never closed", "column 9"]),
    ("good.csv", "y ~ x + ( | g)", ["nothing on the left of '|'", "column 9"]),
    ("good.csv", "y ~ x + (1 | )", ["no grouping factor", "column 14"]),
    ("good.csv", "y ~", ["nothing on the right of '~'"]),
    ("good.csv", "y x + (1 | g)", ["exactly one '~'"]),
    ("good.csv", "y ~ x || g", ["'|' must be inside", "column 7"]),
    ("good.csv", "y ~ x + (1 ||| g)", ["'|||'"]),
    ("good.csv", "y ~ x", ["no random-effects term"]),
    ("good.csv", "y ~ np.log(x) + (1 | g)", ["function 'np.log' is not allowed"]),
    ("good.csv", "y ~ x + {__import__('os').getcwd()} + (1 | g)", ["'__import__'"]),
]


@pytest.mark.parametrize("data, formula, words", ERROR_CASES)
def test_errors_are_one_line_with_status_2(capsys, files, data, formula, words):
    path = files.get(data, data)
    code, out, err = run_main(capsys, "fit", path, formula)
    assert_one_line_error(code, out, err, *words)


def test_ml_flag_and_json_errors_too(capsys, files):
    code, out, err = run_main(
        capsys, "fit", files["good.csv"], "y ~ xx + (1 | g)", "--ml", "--json"
    )
    assert_one_line_error(code, out, err, "unknown column 'xx'")


def test_internal_errors_do_not_show_a_traceback(capsys, monkeypatch):
    import multilevel.api

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(multilevel.api, "fit", broken)
    code, out, err = run_main(capsys, "fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)")
    assert code == 1
    assert err.startswith("error: internal error (ZeroDivisionError: boom)")
    assert len(err.strip().splitlines()) == 1


# -- read_data ---------------------------------------------------------------------------


def test_read_data_bundled_and_files(files):
    df, name = read_data("SleepStudy")
    assert name == "sleepstudy" and len(df) == 180
    good, name = read_data(files["good.csv"])
    assert name == "good.csv"
    assert list(good.columns) == ["y", "x", "g"]
    pq, _ = read_data(files["good.parquet"])
    pd.testing.assert_frame_equal(pq.reset_index(drop=True), good, check_dtype=False)
    for alt in ["semicolon.csv", "spaces.csv"]:
        other, _ = read_data(files[alt])
        assert list(other.columns) == ["y", "x", "g"]
        np.testing.assert_allclose(other.x, good.x)


def test_read_data_duplicate_header_is_not_renamed(files):
    with pytest.raises(DataError, match="column 'x' appears 2 times in the header"):
        read_data(files["dup.csv"])


# -- successful runs ---------------------------------------------------------------------


def test_fit_prints_summary_with_dropped_rows(capsys, files):
    code, out, err = run_main(capsys, "fit", files["na.csv"], "y ~ x + (1 | g)")
    assert code == 0, err
    assert "3 rows with missing values dropped" in out
    assert "Number of obs: 57" in out


def test_rank_deficiency_warns_on_stderr(capsys, files, tmp_path):
    df = pd.read_csv(files["good.csv"]).assign(x2=lambda d: 3 * d.x)
    p = tmp_path / "aliased.csv"
    df.to_csv(p, index=False)
    code, out, err = run_main(capsys, "fit", str(p), "y ~ x + x2 + (1 | g)", "--json")
    assert code == 0
    assert "warning: fixed-effect model matrix is rank deficient so dropping 1 column: x2" in err
    assert json.loads(out)["dropped_columns"] == ["x2"]


def check_json(d: dict, formula: str) -> None:
    assert JSON_KEYS <= set(d)
    assert d["formula"] == formula
    assert d["family"] == "gaussian"
    assert d["method"] in ("REML", "ML")
    assert d["ngroups"] == {"Subject": 18}
    assert d["nobs"] == 180 and d["n_dropped"] == 0
    assert set(d["fixef"]) == set(d["fixef_se"]) == {"(Intercept)", "Days"}
    assert d["loglik"] == pytest.approx(-d["objective"] / 2)
    for row in d["varcorr"]:
        assert set(row) >= {"group", "term1", "term2", "vcov", "sdcor"}
    assert d["varcorr"][-1]["group"] == "Residual"
    assert d["varcorr"][-1]["sdcor"] == pytest.approx(d["sigma"])
    assert len(d["ranef"]) == 18 * 2
    for row in d["ranef"]:
        assert set(row) >= {"group", "level", "term", "mode", "se"}
    assert {r["level"] for r in d["ranef"]} == {str(s) for s in SUBJECTS}
    assert isinstance(d["singular"], bool) and isinstance(d["converged"], bool)
    assert len(d["theta"]) == 3


SUBJECTS = set(datasets.load("sleepstudy").Subject)


@pytest.mark.parametrize("ml", [False, True])
def test_json_output(capsys, ml):
    formula = "Reaction ~ Days + (Days | Subject)"
    argv = ["fit", "sleepstudy", formula, "--json"] + (["--ml"] if ml else [])
    code, out, err = run_main(capsys, *argv)
    assert code == 0, err
    d = json.loads(out)
    check_json(d, formula)
    assert d["method"] == ("ML" if ml else "REML")


def test_datasets_lists_names(capsys):
    code, out, _ = run_main(capsys, "datasets")
    assert code == 0
    listed = [line.split()[0] for line in out.strip().splitlines()]
    assert listed == datasets.names()
    assert "radon" in listed and "sleepstudy" in listed


# -- real subprocesses -------------------------------------------------------------------

SUBPROCESS_CASES = {
    "unknown column": (
        ["fit", "sleepstudy", "Reaction ~ Dayz + (1 | Subject)"],
        2,
        "unknown column 'Dayz'",
    ),
    "syntax": (["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject"], 2, "never closed"),
    "code": (
        ["fit", "sleepstudy", "Reaction ~ Days + {__import__('os').system('touch MARKER')}"],
        2,
        "'__import__'",
    ),
    "empty csv": (["fit", "empty.csv", "y ~ x + (1 | g)"], 2, "is empty"),
    "ragged csv": (["fit", "ragged.csv", "y ~ x + (1 | g)"], 2, "Expected 3 fields"),
    "json": (["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--json"], 0, ""),
    "datasets": (["datasets"], 0, ""),
}


@pytest.fixture(scope="module")
def subprocess_results(files, tmp_path_factory):
    """Run every case as ``python -m multilevel.cli``, all at once."""
    marker = tmp_path_factory.mktemp("marker") / "pwned"
    procs = {}
    for name, (argv, _, _) in SUBPROCESS_CASES.items():
        argv = [files.get(a, a).replace("MARKER", str(marker)) for a in argv]
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "multilevel.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    results = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=120)
        results[name] = (p.returncode, out, err)
    return results, marker


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
def test_subprocess(subprocess_results, case):
    results, marker = subprocess_results
    code, out, err = results[case]
    _, expected_code, words = SUBPROCESS_CASES[case]
    assert "Traceback" not in err
    assert code == expected_code, err
    if expected_code == 2:
        assert_one_line_error(code, out, err, words)
    elif case == "json":
        check_json(json.loads(out), "Reaction ~ Days + (Days | Subject)")
    else:
        assert "sleepstudy" in out
    assert not marker.exists()


def test_cli_confidence_intervals_and_compare(capsys):
    from multilevel.cli import main

    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--ci", "wald"]) == 0
    out = capsys.readouterr().out
    assert "Confidence intervals (wald, 95%)" in out and "238.029" in out
    assert (
        main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--ci", "wald", "--json"])
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    rows = {r["param"]: r for r in d["confint"]["intervals"]}
    assert rows["Days"]["lower"] == pytest.approx(7.43759531836327, rel=1e-6)
    assert rows["sigma"]["lower"] is None  # Wald gives no interval for sigma, as lme4
    assert (
        main(
            [
                "compare",
                "sleepstudy",
                "Reaction ~ Days + (1 | Subject)",
                "Reaction ~ Days + (Days | Subject)",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "42.139" in out.out and "refitting model(s) with ML" in out.out + out.err


def test_cli_two_level_fit_with_plot(tmp_path, capsys):
    from multilevel.cli import main

    png = tmp_path / "r.png"
    code = main(
        [
            "fit",
            "radon",
            "log_radon ~ floor",
            "--group",
            "county",
            "--group-formula",
            "~ log_uranium",
            "--varying",
            "1",
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "log_radon ~ floor + log_uranium + (1 | county)" in out.replace("  ", " ")
    assert png.stat().st_size > 10_000


TWO_LEVEL = ["fit", "radon", "log_radon ~ floor", "--group", "county"]
TWO_LEVEL += ["--group-formula", "~ log_uranium"]
# the seed's names of lme4's parameters of log_radon ~ floor * log_uranium + (1 + floor | county)
SEED_NAMES = {
    "sd_(Intercept)|county": "sd(η_j1)",
    "cor_floor.(Intercept)|county": "cor(η_j1,η_j2)",
    "sd_floor|county": "sd(η_j2)",
    "sigma": "σ_y",
    "(Intercept)": "a0",
    "floor": "a1",
    "log_uranium": "b0",
    "floor:log_uranium": "b1",
}


def _ci_rows(out: str) -> dict[str, list[str]]:
    """The rows (split into cells, by first cell) of the printed interval table."""
    lines = out.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("Confidence intervals"))
    return {line.split()[0]: line.split() for line in lines[i + 2 :] if line.strip()}


def test_cli_two_level_wald_intervals_have_both_names(capsys):
    from conftest import reference

    ref = reference("inference/radon_seed_eq1")["wald_ci"]
    assert main([*TWO_LEVEL, "--ci", "wald"]) == 0
    out = capsys.readouterr().out
    assert "Level-2 regressions:" in out and "Pr(>|t|)" in out  # the two-level summary
    assert "Confidence intervals (wald, 95%)" in out
    rows = _ci_rows(out)
    assert list(rows) == list(SEED_NAMES.values())
    for name, lo, hi in zip(ref["params"], ref["lower"], ref["upper"], strict=True):
        cells = rows[SEED_NAMES[name]]
        assert cells[1] == name  # lme4's name next to the seed's
        if lo is None:
            assert cells[2:] == ["NA", "NA"]
        else:
            assert float(cells[2]) == pytest.approx(lo, rel=1e-5)
            assert float(cells[3]) == pytest.approx(hi, rel=1e-5)
    assert main([*TWO_LEVEL, "--ci", "wald", "--json", "--level", "0.9"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] == "two-level"
    ci = d["confint"]
    assert ci["method"] == "wald" and ci["level"] == 0.9
    assert [(r["lme4"], r["param"]) for r in ci["intervals"]] == list(SEED_NAMES.items())
    by = {r["param"]: r for r in ci["intervals"]}
    b1 = d["group_level"]["floor"]
    half = 1.6448536269514722 * b1["se"]["log_uranium"]
    assert by["b1"]["lower"] == pytest.approx(b1["coef"]["log_uranium"] - half, rel=1e-12)
    assert by["σ_y"]["lower"] is None and by["σ_y"]["upper"] is None


def test_cli_two_level_profile_and_boot_intervals(capsys):
    import multilevel

    m = multilevel.fit(
        "log_radon ~ floor",
        datasets.load("radon"),
        group="county",
        group_formula="~ log_uranium",
    )
    assert main([*TWO_LEVEL, "--ci", "boot", "--boot-n", "30", "--seed", "5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    boot = m.bootstrap(30, seed=5).confint()
    assert [r["param"] for r in d["confint"]["intervals"]] == list(boot.index)
    for r in d["confint"]["intervals"]:
        assert r["lower"] == pytest.approx(boot.loc[r["param"], "2.5 %"], rel=1e-12)
        assert r["upper"] == pytest.approx(boot.loc[r["param"], "97.5 %"], rel=1e-12)
        assert SEED_NAMES[r["lme4"]] == r["param"]
    assert main([*TWO_LEVEL, "--varying", "1", "--ci", "profile"]) == 0
    out = capsys.readouterr().out
    rows = _ci_rows(out)
    assert list(rows) == ["sd(η_j1)", "σ_y", "a0", "a1", "b0"]
    m1 = multilevel.fit(
        "log_radon ~ floor",
        datasets.load("radon"),
        group="county",
        group_formula="~ log_uranium",
        varying="1",
    )
    prof = m1.lmm.confint("profile")
    for sym, cells in rows.items():
        assert float(cells[2]) == pytest.approx(prof.loc[cells[1], "2.5 %"], rel=1e-5), sym
        assert float(cells[3]) == pytest.approx(prof.loc[cells[1], "97.5 %"], rel=1e-5), sym


def test_a_closed_pipe_ends_quietly():
    """``multilevel fit ... | head``: when the reader has gone, the program stops without a
    traceback or an 'internal error' (exit status 141, as a program killed by SIGPIPE)."""
    import subprocess
    import sys

    code = "from multilevel.cli import main; raise SystemExit(main())"
    args = [sys.executable, "-c", code, "fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before anything is written
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141
    assert err == ""
