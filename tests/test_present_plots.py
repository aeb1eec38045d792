"""Figures of a two-level fit: each returns a Figure with labelled axes whose drawn data are
the model's numbers; PNGs render; the CLI helpers write the figure and the summary."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

import multilevel
from multilevel import datasets
from multilevel.cli import main
from multilevel.errors import MultilevelError
from multilevel.present.plots import select_groups


@pytest.fixture(scope="module")
def radon():
    return datasets.load("radon")


@pytest.fixture(scope="module")
def seed_fit(radon):
    return multilevel.fit("log_radon ~ floor", radon, group="county", group_formula="~ log_uranium")


def _labelled(fig):
    axes = [ax for ax in fig.get_axes() if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert axes
    for ax in axes:
        if ax.get_xlabel() or ax.get_ylabel():
            continue
        # inner panels of a shared grid carry the labels on the outer ones
        assert any(o.get_xlabel() for o in axes) and any(o.get_ylabel() for o in axes)
    return axes


def _render(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=50)
    assert path.stat().st_size > 5000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_pooling_plot(seed_fit, tmp_path):
    groups = ["LAC QUI PARLE", "AITKIN", "ST LOUIS"]
    fig = seed_fit.plot_pooling(groups=groups)
    assert isinstance(fig, Figure)
    axes = _labelled(fig)
    titles = [ax.get_title() for ax in axes]
    assert titles == ["LAC QUI PARLE (n = 2)", "AITKIN (n = 4)", "ST LOUIS (n = 116)"]
    assert axes[0].get_xlabel() == "floor" and axes[0].get_ylabel() == "log_radon"
    # the partial-pooling line of a county is its α_j + β_j x
    ct = seed_fit.coef_table()
    ax = axes[2]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    x, y = lines["partial pooling"].get_data()
    np.testing.assert_allclose(
        y, ct.loc["ST LOUIS", "(Intercept)"] + ct.loc["ST LOUIS", "floor"] * x
    )
    assert {"complete pooling", "no pooling", "partial pooling"} <= set(lines)
    # the scatter holds the county's observations
    n = ax.collections[0].get_offsets().shape[0]
    assert n == 116
    _render(fig, tmp_path, "pooling")
    with pytest.raises(MultilevelError, match="'NOWHERE' is not a group"):
        seed_fit.plot_pooling(groups=["NOWHERE"])


def test_select_groups_spread_over_sizes(seed_fit):
    g = select_groups(seed_fit, 8)
    n = seed_fit.group_sizes[g]
    assert len(g) == 8 and n.is_monotonic_increasing
    assert n.iloc[0] == seed_fit.group_sizes.min() and n.iloc[-1] == seed_fit.group_sizes.max()


def test_group_regression_plot(seed_fit, tmp_path):
    fig = seed_fit.plot_group_regression()
    (ax,) = _labelled(fig)
    assert "log_uranium" in ax.get_xlabel() and "α_j" in ax.get_ylabel()
    line = ax.get_lines()[0]
    x, y = line.get_data()
    gl = seed_fit.group_level.set_index("symbol")["estimate"]
    np.testing.assert_allclose(y, gl["a0"] + gl["b0"] * x)
    pts = ax.get_lines()[1].get_data()
    np.testing.assert_allclose(np.sort(pts[1]), np.sort(seed_fit.coef_table()["(Intercept)"]))
    _render(fig, tmp_path, "group")
    fig = seed_fit.plot_group_regression("floor")
    assert "β_j" in fig.get_axes()[0].get_ylabel()
    with pytest.raises(MultilevelError, match="not a group-level predictor"):
        seed_fit.plot_group_regression(predictor="floor")


def test_group_regression_without_predictor_uses_group_size(radon):
    m = multilevel.fit("log_radon ~ floor", radon, group="county", varying="1")
    ax = m.plot_group_regression().get_axes()[0]
    assert ax.get_xscale() == "log" and "observations" in ax.get_xlabel()
    with pytest.raises(MultilevelError, match="does not vary"):
        m.plot_group_regression("floor")


def test_shrinkage_plot(seed_fit, tmp_path):
    fig = seed_fit.plot_shrinkage()
    axes = _labelled(fig)
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in axes)
    ax2 = axes[1]
    offsets = ax2.collections[0].get_offsets()
    cmp = seed_fit.compare_pooling().dropna(subset=["(Intercept): no pooling"])
    np.testing.assert_allclose(np.sort(offsets[:, 0]), np.sort(cmp["(Intercept): no pooling"]))
    np.testing.assert_allclose(np.sort(offsets[:, 1]), np.sort(cmp["(Intercept): partial"]))
    _render(fig, tmp_path, "shrinkage")


def test_caterpillar_plot(seed_fit, radon, tmp_path):
    fig = seed_fit.plot_caterpillar()
    axes = _labelled(fig)
    assert len(axes) == 2
    re = seed_fit.ranef["county"]
    ax = axes[1]
    x, _ = ax.get_lines()[0].get_data()
    np.testing.assert_allclose(x, np.sort(re["floor"]))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == re["floor"].idxmin() and len(labels) == 85
    _render(fig, tmp_path, "caterpillar")
    # any fit with random effects
    lmm = multilevel.fit("Reaction ~ Days + (Days | Subject)", datasets.load("sleepstudy"))
    assert len(_labelled(multilevel.present.plots.plot_caterpillar(lmm))) == 2


def test_overview(seed_fit, tmp_path):
    fig = seed_fit.plot_overview()
    assert len(fig.get_axes()) >= 7
    _render(fig, tmp_path, "overview")


def test_cli_helpers(radon, tmp_path, capsys):
    png = tmp_path / "radon.png"
    args = ["fit", "radon", "log_radon ~ floor", "--group", "county", "--group-formula",
            "~ log_uranium", "--plot", str(png)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr()
    assert "floor:log_uranium + (1 + floor | county)" in out.out
    assert png.stat().st_size > 10000 and "wrote" in out.err
    main(["fit", "radon", "log_radon ~ floor", "--group", "county", "--varying", "1", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["lme4_formula"] == "log_radon ~ floor + (1 | county)"
    assert list(d["group_level"]) == ["(Intercept)"]
    assert main(["fit", "radon", "log_radon ~ floor", "--varying", "1"]) == 2
    assert "need --group" in capsys.readouterr().err
    # without --group: an lme4 formula, and --plot draws its random effects
    assert main(["fit", "radon", "log_radon ~ floor + (1 | county)", "--plot", str(png)]) == 0
