"""The package's surface: a light ``import multilevel``, the lazily loaded names, ``fit``'s
arguments."""

import subprocess
import sys

import pytest

import multilevel
from multilevel.errors import FormulaError

HEAVY = ("scipy", "matplotlib", "formulaic", "nlopt", "threadpoolctl", "narwhals")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return set(out) | {m.split(".")[0] for m in out}


def test_import_loads_no_heavy_dependency():
    loaded = _modules_after("import multilevel")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    assert "multilevel.api" not in loaded and "multilevel.engine" not in loaded


def test_lazy_names_load_on_first_use():
    code = (
        "import multilevel\n"
        "assert callable(multilevel.fit) and callable(multilevel.anova)\n"
        "assert multilevel.LinearMixedModel.__name__ == 'LinearMixedModel'\n"
        "assert multilevel.datasets.names()\n"
    )
    loaded = _modules_after(code)
    # the fitting layers came in when fit was asked for
    assert {"nlopt", "multilevel.api", "multilevel.engine.deviance"} <= loaded


def test_public_names():
    for name in multilevel.__all__:
        assert getattr(multilevel, name) is not None
        assert name in dir(multilevel)
    assert callable(multilevel.simulate_schools)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        multilevel.nonexistent  # noqa: B018


def test_two_level_arguments_need_group():
    df = multilevel.datasets.load("radon")
    with pytest.raises(FormulaError, match="need group="):
        multilevel.fit("log_radon ~ floor + (1 | county)", df, group_formula="~ log_uranium")
    with pytest.raises(FormulaError, match="no random-effects term"):
        multilevel.fit("log_radon ~ floor", df)
