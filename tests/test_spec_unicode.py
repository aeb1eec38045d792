"""Column names in every language (issue 14): a name that is a Python identifier in any
script works bare, in the fixed part, inside functions and as a grouping factor, nested or
crossed; any other name works in backticks (as R and formulaic quote it); the error for a
name that is neither says how to quote it; the summary, JSON and plots show the names as
they are."""

import json
import unicodedata

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel.cli import main
from multilevel.errors import DataError, FormulaError
from multilevel.spec import parse_formula
from multilevel.spec.names import (
    alias_names,
    aliased_column,
    column_alias,
    identifiers,
    is_bare_name,
    python_regions,
    quote_unreadable,
    quoted,
    restore_names,
)


def spanish(n: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.arange(n) % 6
    h = (np.arange(n) // 6) % 5
    return pd.DataFrame(
        {
            "puntuación": 2 + rng.normal(size=6)[g] + rng.normal(size=n),
            "x": rng.normal(size=n),
            "tamaño": rng.uniform(1, 3, size=n),
            "escuela_año": [f"e{v}" for v in g],
            "región": [f"r{v}" for v in h],
        }
    )


def test_the_issues_spanish_example_fits():
    fit = multilevel.fit("puntuación ~ x + (1 | escuela_año)", spanish())
    assert list(fit.ngroups) == ["escuela_año"]
    assert fit.frame.response_name == "puntuación"
    assert "escuela_año" in fit.summary() and "puntuación ~ x" in fit.summary()


@pytest.mark.parametrize(
    "formula, fixef, groups",
    [
        ("puntuación ~ tamaño + (1 | escuela_año)", ["tamaño"], ["escuela_año"]),
        ("puntuación ~ log(tamaño) + (1 | escuela_año)", ["log(tamaño)"], ["escuela_año"]),
        (
            "puntuación ~ scale(tamaño) + I(tamaño ** 2) + (1 | escuela_año)",
            ["scale(tamaño)", "I(tamaño ** 2)"],
            ["escuela_año"],
        ),
        ("puntuación ~ x + (1 | región/escuela_año)", ["x"], ["escuela_año:región", "región"]),
        ("puntuación ~ x + (1 | escuela_año) + (1 | región)", ["x"], ["escuela_año", "región"]),
        ("puntuación ~ x + (1 | escuela_año:región)", ["x"], ["escuela_año:región"]),
        ("puntuación ~ x + (tamaño || escuela_año)", ["x"], ["escuela_año"]),
        ("puntuación ~ x + (1 + tamaño | escuela_año)", ["x"], ["escuela_año"]),
        ("puntuación ~ C(región) + (1 | escuela_año)", ["C(región)[T.r1]"], ["escuela_año"]),
        ("puntuación ~ región + (1 | escuela_año)", ["región[T.r1]"], ["escuela_año"]),
        ("puntuación ~ x + offset(log(tamaño)) + (1 | escuela_año)", ["x"], ["escuela_año"]),
    ],
)
def test_a_python_identifier_works_bare_everywhere(formula, fixef, groups):
    fit = multilevel.fit(formula, spanish())
    assert set(fixef) <= set(fit.fixef.index)
    assert sorted(fit.ngroups) == sorted(groups)


SCRIPTS = {
    "Größe": "Größe",  # German
    "δ_1": "δ_1",  # Greek
    "класс": "класс",  # Cyrillic
    "学校": "学校",  # CJK
    "مدرسة": "مدرسة",  # Arabic
    "x̄": "x̄",  # x + combining macron: formulaic's tokenizer would split it
}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_names_in_every_script(name):
    rng = np.random.default_rng(2)
    n = 60
    df = pd.DataFrame(
        {
            f"{name}_y": rng.normal(size=n),
            name: rng.uniform(1, 2, size=n),
            f"{name}_g": [f"v{i % 5}" for i in range(n)],
            f"{name}_h": [f"w{i % 4}" for i in range(n)],
        }
    )
    y, g, h = f"{name}_y", f"{name}_g", f"{name}_h"
    fit = multilevel.fit(f"{y} ~ {name} + log({name}) + (1 | {g}) + (1 | {h}/{g})", df)
    assert fit.frame.response_name.strip("`") == y  # quoted when formulaic needs it
    assert sorted(fit.ngroups) == sorted([g, h, f"{g}:{h}"])
    assert list(fit.fixef.index)[1] == name
    assert unicodedata.normalize("NFC", list(fit.fixef.index)[2]) == unicodedata.normalize(
        "NFC", f"log({name})"
    )


@pytest.mark.parametrize("name", ["a-b", "my x", "1x", "class", "a.b c", "x²", "año escolar"])
def test_any_other_name_works_in_backticks_everywhere(name):
    rng = np.random.default_rng(3)
    n = 60
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            name: rng.uniform(1, 2, size=n),
            f"{name} g": [f"v{i % 5}" for i in range(n)],
            f"{name} h": [f"w{i % 3}" for i in range(n)],
        }
    )
    q, g, h = f"`{name}`", f"`{name} g`", f"`{name} h`"
    fit = multilevel.fit(f"y ~ {q} + I({q} * 2) + log({q}) + (1 + {q} | {g}) + (1 | {h}/{g})", df)
    assert list(fit.fixef.index)[1] == name
    assert sorted(fit.ngroups) == sorted([f"{name} g", f"{name} h", f"{name} g:{name} h"])
    assert fit.predict(df.head(3)).shape == (3,)


def test_backticked_names_in_contrasts_and_offsets():
    df = spanish().rename(columns={"región": "la región", "tamaño": "el tamaño"})
    fit = multilevel.fit(
        "puntuación ~ C(`la región`, sum) + offset(log(`el tamaño`)) + (1 | escuela_año)", df
    )
    assert any(c.startswith("C(`la región`, contr.sum)") for c in fit.fixef.index)


@pytest.mark.parametrize(
    "formula, error, message",
    [
        ("y ~ a-b + (1 | g)", DataError, "goes in backticks: `a-b`"),
        ("y ~ x + (1 | a-b)", FormulaError, r"goes in backticks: '`a-b`'"),
        ("y ~ x + (1 | my g)", FormulaError, "goes in backticks: `my g`"),
        ("y ~ my x + (1 | g)", FormulaError, "goes in backticks: `my x`"),
        ("y ~ log(my x) + (1 | g)", FormulaError, r"goes in backticks, e\.g\. log\(`my x`\)"),
        ("y ~ class + (1 | g)", FormulaError, "a column named 'class' goes in backticks: `class`"),
        ("y ~ log(a.b) + (1 | g)", FormulaError, "a column named 'a.b' goes in backticks: `a.b`"),
    ],
)
def test_the_error_for_a_name_that_needs_quoting_says_how(formula, error, message):
    rng = np.random.default_rng(4)
    n = 40
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "a-b": rng.normal(size=n),
            "my x": rng.uniform(1, 2, n),
            "class": rng.normal(size=n),
            "a.b": rng.uniform(1, 2, n),
            "g": np.arange(n) % 4,
            "my g": np.arange(n) % 4,
        }
    )
    with pytest.raises(error, match=message):
        multilevel.fit(formula, df)


def test_a_keyword_inside_a_name_is_not_a_keyword():
    # 'señor' was read as 'se', 'or' by an ASCII scan, and refused as the keyword 'or'
    df = spanish().rename(columns={"x": "señor", "tamaño": "niño_if"})
    fit = multilevel.fit("puntuación ~ señor + log(niño_if) + (1 | escuela_año)", df)
    assert list(fit.fixef.index) == ["(Intercept)", "señor", "log(niño_if)"]


def test_names_python_reads_in_another_form_are_read_as_written():
    # inside a function Python reads µ (micro sign) as μ (Greek mu) and a decomposed accent
    # composed (NFKC); the column is the name as written, everywhere
    decomposed = unicodedata.normalize("NFD", "tamaño")
    assert decomposed != "tamaño"
    df = spanish().rename(columns={"tamaño": decomposed, "x": "µg"})
    formula = f"puntuación ~ µg + log(µg) + {decomposed} + scale({decomposed}) + (1 | escuela_año)"
    mf = parse_formula(formula)
    assert mf.fixed_columns == {"µg", decomposed}
    df["µg"] = df["µg"].abs() + 1  # (not assign(µg=...): Python reads that keyword as μg)
    fit = multilevel.fit(formula, df)
    assert list(fit.fixef.index)[1:3] == ["µg", "log(µg)"]
    assert fit.predict(df.head(4)).shape == (4,)


def test_a_normal_form_written_beside_is_that_column():
    # 'ｘ' (fullwidth) and 'x' both written: inside a function Python reads 'x'
    mf = parse_formula("y ~ ｘ + log(ｘ) + x + (1 | g)")
    assert mf.fixed_columns == {"ｘ", "x"}


def test_the_allow_list_reads_names_as_python_does():
    # fullwidth letters are still the functions Python would call: refused
    with pytest.raises(FormulaError, match="function 'open' is not allowed"):
        parse_formula("y ~ I(ｏｐｅｎ('f', 'w')) + (1 | g)")
    for text in [
        "y ~ I(＿＿import＿＿('os')) + (1 | g)",
        "y ~ I(`__class__`) + (1 | g)",
        "y ~ `open`(x) + (1 | g)",
        "y ~ I(_mlq_5f5f636c6173735f5f_) + (1 | g)",  # the alias of __class__
    ]:
        with pytest.raises(FormulaError):
            parse_formula(text)


def test_the_summary_json_and_plots_show_the_names_as_they_are(tmp_path, capsys):
    df = spanish()
    fit = multilevel.fit("puntuación ~ tamaño + (1 | escuela_año)", df)
    text = fit.summary()
    for name in ("puntuación", "tamaño", "escuela_año"):
        assert name in text
    path = tmp_path / "datos.csv"
    df.to_csv(path, index=False)
    capsys.readouterr()
    assert main(["fit", str(path), "puntuación ~ tamaño + (1 | escuela_año)", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["formula"] == "puntuación ~ tamaño + (1 | escuela_año)"
    assert "tamaño" in json.dumps(out, ensure_ascii=False)
    fig = fit.plot_caterpillar()
    shown = " ".join(
        t.get_text() for ax in fig.get_axes() for t in [ax.title, *ax.get_yticklabels()]
    )
    assert "escuela_año" in shown or any(f"e{i}" in shown for i in range(6))


def test_the_two_level_form_writes_names_back_bare_or_quoted():
    df = spanish()
    df["media"] = df.groupby("escuela_año").x.transform("mean")
    df = df.rename(columns={"media": "media de x"})
    fit = multilevel.fit(
        "puntuación ~ tamaño", df, group="escuela_año", group_formula="~ `media de x`"
    )
    assert "(1 + tamaño | escuela_año)" in fit.spec.lme4_formula
    assert "`media de x`" in fit.spec.lme4_formula


@pytest.mark.parametrize(
    "name, bare",
    [
        ("x", True),
        ("escuela_año", True),
        ("my.var", True),
        ("_x", True),
        ("学校", True),
        ("x̄", False),  # a combining mark: formulaic's tokenizer would split it
        ("a-b", False),
        ("my x", False),
        ("1x", False),
        (".5", False),
        ("class", False),
        ("", False),
        ("x²", False),
    ],
)
def test_bare_names(name, bare):
    assert is_bare_name(name) is bare
    assert quoted(name) == (name if bare else f"`{name}`")


def test_quote_unreadable_and_identifiers():
    name = unicodedata.normalize("NFD", "año")
    # quoted where formulaic's tokenizer would split it; an expression is Python's to read
    assert quote_unreadable(f"{name} + log({name}) + `{name}` + '{name}'") == (
        f"`{name}` + log({name}) + `{name}` + '{name}'"
    )
    assert quote_unreadable("x + año") == "x + año"
    assert [w for w, _, _ in identifiers("a1 + 2b + é_x + x̄")] == ["a1", "b", "é_x", "x̄"]


def test_aliases_inside_expressions():
    text = "x + log(`class`) + µg + I(µg * 2) + {`my x` + 1} + C(`x²`, sum) + x.real"
    assert python_regions(text)[0] == (4, 16)
    aliased = alias_names(text)
    assert aliased == (
        f"x + log({column_alias('class')}) + µg + I({column_alias('µg')} * 2) + "
        f"{{{column_alias('my x')} + 1}} + C({column_alias('x²')}, sum) + x.real"
    )
    assert aliased_column(column_alias("class")) == "class"
    assert aliased_column("_mlq_zz_") is None
    assert restore_names(aliased) == (
        "x + log(`class`) + µg + I(µg * 2) + {`my x` + 1} + C(`x²`, sum) + x.real"
    )
    # the names of functions and attributes stay: the allow-list reads them as Python does
    assert alias_names("I(ｏｐｅｎ('f')) + x.ｒｅａｌ") == "I(ｏｐｅｎ('f')) + x.ｒｅａｌ"


def test_type_iii_tests_and_predictions_of_backticked_names_inside_functions():
    # an alias stands for the column inside the expression; the tests and predictions see
    # the names as written, as for any other column
    df = spanish().rename(columns={"tamaño": "el tamaño", "región": "la región"})
    quoted_fit = multilevel.fit(
        "puntuación ~ log(`el tamaño`) * C(`la región`) + (1 | escuela_año)", df
    )
    plain_fit = multilevel.fit(
        "puntuación ~ log(t) * C(r) + (1 | escuela_año)",
        df.rename(columns={"el tamaño": "t", "la región": "r"}),
    )
    assert quoted_fit.objective == pytest.approx(plain_fit.objective, rel=1e-12)
    assert list(quoted_fit.fixef.index)[1] == "log(`el tamaño`)"
    quoted_anova, plain_anova = quoted_fit.anova(), plain_fit.anova()
    assert list(quoted_anova.index) == [
        "log(`el tamaño`)",
        "C(`la región`)",
        "log(`el tamaño`):C(`la región`)",
    ]
    np.testing.assert_allclose(quoted_anova.to_numpy(float), plain_anova.to_numpy(float), rtol=1e-8)
    np.testing.assert_allclose(
        quoted_fit.predict(df.head(5)),
        plain_fit.predict(df.head(5).rename(columns={"el tamaño": "t", "la región": "r"})),
        rtol=1e-10,
    )
