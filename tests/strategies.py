"""Hypothesis set-up shared by the property-based tests (``test_*_hypothesis.py``).

Profiles: ``ci`` (the default: the same 200 examples a property on every run, no
deadline), ``dev`` (30, for a quick local run) and ``thorough`` (2000 new ones a run, to
hunt for bugs). Choose one with the environment
variable ``MULTILEVEL_HYPOTHESIS_PROFILE``.

Strategies: formulas from lme4's grammar over the columns of :func:`formula_data`, mutations
of them (garbage and injected code), and simulated data sets for one grouping factor with an
optional random slope and an optional crossed factor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

import multilevel
from multilevel.errors import MultilevelError

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[*_QUIET, HealthCheck.function_scoped_fixture],
)
# ci: the same 200 examples on every run, so a red CI is a reproducible failure, never a
# draw; the 'thorough' profile draws new examples to hunt for bugs
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, **_COMMON)
settings.register_profile("dev", max_examples=30, **_COMMON)
settings.register_profile("thorough", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("MULTILEVEL_HYPOTHESIS_PROFILE", "ci"))


# -- formulas --------------------------------------------------------------------------

#: Where injected code would leave its trace. A formula must never create this file.
MARKER = Path(tempfile.gettempdir()) / f"multilevel-formula-ran-code-{uuid.uuid4().hex}"


def formula_data(n: int = 120, seed: int = 1) -> pd.DataFrame:
    """The table every generated formula is fitted to: numeric ``x`` (any sign), ``z`` and
    ``yp`` (positive), ``u``; factors ``g`` (12 levels), ``a`` (4), ``b`` (3, crossed with
    ``a``, so ``a/b`` has 12 levels), ``h`` (5, crossed with ``g``)."""
    rng = np.random.default_rng(seed)
    g = rng.permutation(np.arange(n) % 12)
    a = np.arange(n) % 4
    b = (np.arange(n) // 4) % 3
    h = rng.integers(0, 5, n)
    x = rng.normal(size=n)
    z = rng.uniform(0.5, 3.0, size=n)
    u = rng.normal(size=n)
    y = (
        1.0
        + 0.5 * x
        - 0.3 * z
        + rng.normal(size=12)[g]
        + rng.normal(scale=0.5, size=12)[g] * x
        + rng.normal(scale=0.7, size=5)[h]
        + rng.normal(scale=0.5, size=4)[a]
        + rng.normal(scale=0.8, size=n)
    )
    return pd.DataFrame(
        {
            "y": y,
            "yp": np.exp(y / 4),
            "x": x,
            "z": z,
            "u": u,
            "g": [f"g{v:02d}" for v in g],
            "a": [f"a{v}" for v in a],
            "b": [f"b{v}" for v in b],
            "h": h,
        }
    )


RESPONSES = ["y", "y", "log(yp)", "sqrt(yp)", "I(y * 2)", "scale(y)"]
ATOMS = [
    "x",
    "z",
    "u",
    "log(z)",
    "sqrt(z)",
    "abs(x)",
    "log1p(z)",
    "exp(x)",
    "I(x**2)",
    "I(x * z)",
    "scale(x)",
    "center(z)",
    "C(a)",
    "C(b, contr.sum)",
    "C(a, Sum)",
    "a",
    "{x + 1}",
    "`u`",
]
RANDOM_EXPRS = ["1", "1", "x", "1 + x", "0 + x", "x + z", "1 + log(z)", "0 + z", "1 + C(b)"]
#: the number of terms of each (so of '||' blocks), the intercept implied unless '0 +'
N_TERMS = {"1": 1, "x": 2, "1 + x": 2, "0 + x": 1, "x + z": 3, "1 + log(z)": 2, "0 + z": 1}
N_TERMS["1 + C(b)"] = 2


@dataclass(frozen=True)
class GroupSpec:
    text: str  # as written in the formula
    groups: tuple[str, ...]  # lme4's names of the blocks it expands to


GROUPINGS = [
    GroupSpec("g", ("g",)),
    GroupSpec("a", ("a",)),
    GroupSpec("h", ("h",)),
    GroupSpec("`g`", ("g",)),
    GroupSpec("a/b", ("a", "b:a")),
    GroupSpec("a:b", ("a:b",)),
    GroupSpec("g:h", ("g:h",)),
]


@dataclass(frozen=True)
class GrammarFormula:
    """A formula written from the grammar, with what parsing it must give."""

    text: str
    response: str
    blocks: tuple[tuple[str, bool], ...]  # (group, correlated) of each block, in order


@st.composite
def fixed_terms(draw) -> str:
    n = draw(st.integers(0, 3))
    terms = []
    for _ in range(n):
        left = draw(st.sampled_from(ATOMS))
        op = draw(st.sampled_from(["", "", "", ":", "*"]))
        terms.append(left if not op else f"{left}{op}{draw(st.sampled_from(ATOMS))}")
    intercept = draw(st.sampled_from(["", "", "1 + ", "0 + ", "-1"]))
    if intercept == "-1":
        return " + ".join(terms + ["x"]) + " - 1"
    if not terms:
        return intercept.strip(" +") or "1"
    return intercept + " + ".join(terms)


@st.composite
def grammar_formulas(draw) -> GrammarFormula:
    """``response ~ fixed + random``, random terms ``(expr | g)``/``(expr || g)`` over
    single, nested and interacted grouping factors (at least one random term)."""
    response = draw(st.sampled_from(RESPONSES))
    fixed = draw(fixed_terms())
    n_random = draw(st.integers(1, 3))
    blocks: list[tuple[str, bool]] = []
    parts = []
    for _ in range(n_random):
        expr = draw(st.sampled_from(RANDOM_EXPRS))
        spec = draw(st.sampled_from(GROUPINGS))
        double = draw(st.booleans())
        parts.append(f"({expr} {'||' if double else '|'} {spec.text})")
        for gname in spec.groups:  # a/b: the blocks of a, then those of b:a
            # '||': one uncorrelated block per term (lme4's expandDoubleVerts)
            blocks += [(gname, False)] * N_TERMS[expr] if double else [(gname, True)]
    random = " + ".join(parts)
    order = draw(st.booleans())
    rhs = f"{fixed} + {random}" if order else f"{random} + {fixed}"
    spaced = draw(st.sampled_from([" ~ ", "~", " ~", "~ "]))
    return GrammarFormula(f"{response}{spaced}{rhs}", response, tuple(blocks))


def _payloads(marker: Path) -> list[str]:
    """Python that creates ``marker`` if a formula ever runs it."""
    m = str(marker)
    return [
        f"__import__('os').system('touch {m}')",
        f"__import__('pathlib').Path('{m}').touch()",
        f"open('{m}', 'w')",
        f"exec(\"open('{m}', 'w')\")",
        f"eval(\"open('{m}', 'w')\")",
        f"(lambda: open('{m}', 'w'))()",
        f"lambda q: open('{m}', 'w')",
        f"globals()['open']('{m}', 'w')",
        f"[open('{m}', 'w') for _ in x]",
        f"{{open('{m}', 'w')}}",
        f"I(open('{m}', 'w'))",
        f"C(open('{m}', 'w'))",
        f"log(open('{m}', 'w'))",
        f"C(a, contr.treatment(open('{m}', 'w')))",
        f"I(x.tofile('{m}'))",
        f"{{x.to_csv('{m}')}}",
        f"x.to_csv('{m}')",
        f"getattr(x, 'to_csv')('{m}')",
        f"x.__class__.__init__.__globals__['open']('{m}', 'w')",
        f'I(f\'{{open("{m}", "w")}}\')',
        f"C(a, levels=open('{m}', 'w'))",
        f"I(np.save('{m}', x))",
        f"I(pd.DataFrame(x).to_csv('{m}'))",
        f"I(x if open('{m}', 'w') else x)",
        f"I((q := open('{m}', 'w')))",
        f"I(ｏｐｅｎ('{m}', 'w'))",  # fullwidth: NFKC folds it to 'open'
        f"I(＿＿import＿＿('os').system('touch {m}'))",  # fullwidth underscores
        f"scale(x, open('{m}', 'w'))",
        f"I(print(open('{m}', 'w')))",
        f"I(x); open('{m}', 'w')",
        f"I(*[open('{m}', 'w')])",
        f"I(**{{'a': open('{m}', 'w')}})",
        f"I({{open('{m}', 'w')}})",
        f"I(__builtins__.open('{m}', 'w'))",
        f"`x`.to_csv('{m}')",
    ]


PAYLOADS = _payloads(MARKER)
#: Test ids for :data:`PAYLOADS`: the payloads with the path written as MARKER. MARKER's name
#: is random in each process, and pytest-xdist refuses to run when its workers collect
#: different test ids.
PAYLOAD_IDS = [p.replace(str(MARKER), "MARKER") for p in PAYLOADS]

FRAGMENTS = [
    "(",
    ")",
    "|",
    "||",
    "|||",
    "( | g)",
    "(1 | )",
    "(1 |)",
    "(| g)",
    "(|)",
    "()",
    "(1 | g",
    "1 | g)",
    "(1 | g | h)",
    "(1 | (1 | g))",
    "(1 | g/)",
    "(1 | /g)",
    "(1 | g::h)",
    "(1 | g h)",
    "(1 | log(g))",
    "(1 | 3)",
    "foo(x)",
    "unknown(x)",
    "Log(x)",
    "log()",
    "log(x, y, z)",
    "I()",
    "C()",
    "x.y",
    "x[0]",
    "x if x else z",
    "not x",
    "x and z",
    "None",
    "1e999",
    "9**9**9",
    "'s'",
    '"s"',
    "`",
    "``",
    "`no such`",
    "~",
    "y ~",
    "~ x",
    "^",
    "x^2",
    "I(x^2)",
    "%in%",
    ".",
    "-",
    "+",
    "*",
    "/",
    ":",
    ",",
    "\\",
    "\n",
    "\t",
    "\x00",
    "é",
    "∑",
    "0",
    "-1",
    "+0",
    "- (1 | g)",
    "offset(x)",
    "poly(x, 2)",
    "bs(x, df=3)",
    "C(g)",
    "C(a, levels=['a1'])",
    "y",
    "I(x > 0)",
    "I(x == 0)",
    "I(x // 0)",
    "I(1 / x)",
    "log(x)",
    "sqrt(x)",
    "{x}",
    "{",
    "}",
    "[",
    "]",
    ";",
    ":=",
    "@",
    "!",
    "#",
    "$",
    "&",
    "=",
    "x = 1",
    "yield",
    "await x",
    "import os",
    "__import__",
    "__dict__",
    "_x",
    "x._y",
]


@st.composite
def mutated_formulas(draw) -> str:
    """A grammar formula with 1-3 edits: characters inserted, deleted or duplicated, or a
    span replaced by a malformed fragment or by code that would create :data:`MARKER`."""
    text = draw(grammar_formulas()).text
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 8)))
        kind = draw(st.sampled_from(["insert", "delete", "duplicate", "fragment", "payload"]))
        if kind == "insert":
            new = draw(st.text(alphabet="()|[]{}~+-*/:^,.'\"`;=@!#$%&\\ \n\t01ab_xgé", max_size=3))
            text = text[:i] + new + text[i:]
        elif kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif kind == "fragment":
            text = text[:i] + draw(st.sampled_from(FRAGMENTS)) + text[j:]
        else:
            payload = draw(st.sampled_from(PAYLOADS))
            how = draw(st.sampled_from(["replace", "term", "response", "bar", "group"]))
            if how == "replace":
                text = text[:i] + payload + text[j:]
            elif how == "term":
                text = f"{text} + {payload}"
            elif how == "response":
                text = f"{payload} ~ {text.split('~', 1)[-1]}"
            elif how == "bar":
                text = f"{text} + ({payload} | g)"
            else:
                text = f"{text} + (1 | {payload})"
    return text


def hostile_formulas() -> st.SearchStrategy[str]:
    """Mutated grammar formulas, code alone, or arbitrary text."""
    return st.one_of(
        mutated_formulas(),
        mutated_formulas(),
        mutated_formulas(),
        st.sampled_from(PAYLOADS).map(lambda p: f"y ~ {p} + (1 | g)"),
        st.text(max_size=40),
        st.text(alphabet="y~x+(1|g)z:*/-|| ", max_size=30),
    )


# -- fitting ------------------------------------------------------------------------------


def fit_or_error(formula, data, **kw):
    """The fit, or our error (a MultilevelError with a one-line message), recorded as an
    event; any other exception fails the property."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return multilevel.fit(formula, data, **kw)
    except MultilevelError as e:
        assert str(e).strip() and "\n" not in e.one_line()
        event(f"{type(e).__name__}: {str(e)[:45]}")
        return e


# -- data sets ----------------------------------------------------------------------------


@dataclass
class Design:
    """A simulated data set and the formula that fits its design."""

    data: pd.DataFrame
    formula: str
    slope: bool
    crossed: bool


@st.composite
def designs(draw, missing: bool = True) -> Design:
    """One grouping factor ``g`` (2-25 groups, sizes 1-10, balanced or not), predictors ``x``
    and ``w`` at scales 1e-6..1e6, ``y`` at scales 1e-6..1e6, a random slope on ``x`` or not,
    a crossed factor ``h`` or not, variances that may be zero, and (``missing``) missing
    values in ``y``, ``x`` and ``g``."""
    n_groups = draw(st.integers(2, 25))
    if draw(st.booleans()):
        sizes = [draw(st.integers(1, 8))] * n_groups
    else:
        sizes = draw(st.lists(st.integers(1, 10), min_size=n_groups, max_size=n_groups))
    n = sum(sizes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x_scale = 10.0 ** draw(st.integers(-6, 6))
    w_scale = 10.0 ** draw(st.integers(-6, 6))
    y_scale = 10.0 ** draw(st.integers(-6, 6))
    slope = draw(st.booleans())
    crossed = draw(st.booleans())
    sd_g, sd_slope, sd_h = (draw(st.sampled_from([0.0, 0.1, 1.0, 3.0])) for _ in range(3))
    g = np.repeat(np.arange(n_groups), sizes)
    x = rng.normal(size=n)
    w = rng.uniform(-1, 1, size=n)
    h = rng.integers(0, draw(st.integers(2, 5)), size=n)
    y = (
        1.0
        + 0.5 * x
        + 2.0 * w
        + sd_g * rng.normal(size=n_groups)[g]
        + sd_slope * rng.normal(size=n_groups)[g] * x
        + (sd_h * rng.normal(size=5)[h] if crossed else 0.0)
        + rng.normal(size=n)
    )
    df = pd.DataFrame(
        {
            "y": y * y_scale,
            "x": x * x_scale,
            "w": w * w_scale,
            "g": pd.Series([f"G{v}" for v in g], dtype=object),
            "h": h,
        }
    )
    if missing:
        for col in ("y", "x", "g"):
            frac = draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]))
            mask = rng.uniform(size=n) < frac
            df.loc[mask, col] = None
    if draw(st.booleans()):
        df = df.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    random = "(1 + x | g)" if slope else "(1 | g)"
    formula = f"y ~ x + w + {random}" + (" + (1 | h)" if crossed else "")
    return Design(df, formula, slope, crossed)


# -- known limits of the optimiser -------------------------------------------------------

#: Where an optimum is compared (with scipy's from other starts, or with the fit of a
#: transformed data set) and ours is the higher, the miss is excused only when it is of a
#: kind these properties found in the engine's optimiser (optimize.py, owned by the engine
#: and not changed here; data in tests/data/optimiser_misses):
#:
#: E3 (no convergence): a fit that reports ``converged=False`` promises no optimum. Before
#: 98c8d39 one stopped 5.4 deviance units high after relabelling the levels of a slope
#: model with x at 1e-2 (θ ~ 150); none seen since.
#: E4 (stopping precision): in a flat valley (a variance near zero beside a slope's, where
#: the correlation hardly changes the criterion) the optimiser stops up to ~1e-7
#: (relative) above the minimum, at a θ that depends on rounding: refits of permuted rows
#: agree to 1e-6 but not always to 1e-8 (seen 4.6e-5 deviance units on 400).
#:
#: No longer excused, because fixed (tests/test_optimiser_misses.py keeps them fixed):
#: E2 (an interior local minimum above a lower one on the boundary or far out, 0.03 to 5.3
#: units in data sets of 7 to 29 rows), fixed by 98c8d39 and the continued screening run;
#: E1 (a false boundary: with a random slope the fit ended with the intercept variance at
#: ~0 while the optimum has a small one with a correlation of ±1; 0.003 to 2.8 units, about
#: 1 fit in 1,500 random data sets, worst with a slope's Z column at 1e-2 or 1e-3), fixed by
#: scaling Z columns off unit size by more than 2x and by starts at correlations of ±0.95.
#:
#: Every other assertion holds for these fits too, and any other kind of miss fails. In
#: data sets of fewer than ``MIN_NOBS_COMPARED`` rows the criterion can be flat over a
#: wide range of θ (e.g. 5 rows, 2 groups and a random slope), so the invariance
#: properties compare criteria and optima there, not estimates.
MIN_NOBS_COMPARED = 20


def known_miss(fit, better_theta: np.ndarray) -> str | None:
    """Which known limit of the optimiser (E3: it says it did not converge) excuses ``fit``
    for missing the lower criterion at ``better_theta`` (in the parametrisation of
    ``fit.deviance``), if any."""
    if not fit.converged:
        return "E3"
    return None


# -- independent references ----------------------------------------------------------------


def data_lambdas(fit) -> list[np.ndarray]:
    """Λ of each term on the data's scale (relative to σ), from ``fit.theta``."""
    return fit.deviance.layout.lambdas(np.asarray(fit.theta, dtype=float))


def deviance_theta(fit, lambdas: list[np.ndarray]) -> np.ndarray:
    """θ as ``fit.deviance`` takes it for the data-scale factors ``lambdas``: the deviance
    works with the columns Z D⁻¹ (``blocks.z_scales``), so Λ_s = D Λ."""
    lay, scales = fit.deviance.layout, fit.problem.blocks.z_scale
    return np.array(
        [
            lambdas[t][r, c] * scales[t][r]
            for t, r, c in zip(lay.term, lay.row, lay.col, strict=True)
        ]
    )


def lower_factor(S: np.ndarray) -> np.ndarray:
    """A lower-triangular L with non-negative diagonal and L L' = S, for S positive
    semi-definite (a zero pivot leaves its column zero)."""
    k = S.shape[0]
    L = np.zeros_like(S)
    for j in range(k):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        scale = max(abs(S[j, j]), 1e-300)
        if d <= 1e-12 * scale:
            continue
        L[j, j] = np.sqrt(d)
        for i in range(j + 1, k):
            L[i, j] = (S[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


def dense_reference(
    fit, lambdas: list[np.ndarray] | None = None
) -> tuple[float, np.ndarray, float]:
    """The criterion, β and σ at Λ (default: the fit's), computed densely from the model
    frame and the textbook formulas, independently of the engine's blocks:

        V = I + ZΛΛ'Z',  β = (X'V⁻¹X)⁻¹X'V⁻¹y,  r² = (y - Xβ)'V⁻¹(y - Xβ),
        ML   = log|V| + n (1 + log(2π r²/n)),
        REML = log|V| + log|X'V⁻¹X| + (n-p)(1 + log(2π r²/(n-p))),

    with σ² = r²/n (ML) or r²/(n-p) (REML). X's columns are scaled to unit norm for the
    solve (and log|X'V⁻¹X| corrected), so predictors at 1e6 and 1e-6 lose no digits."""
    fr = fit.frame
    lambdas = data_lambdas(fit) if lambdas is None else lambdas
    n, X, y = fr.n, fr.X, fr.y
    rows = np.arange(n)
    blocks = []
    for rt, lam in zip(fr.reterms, lambdas, strict=True):
        ZL = rt.Z @ lam
        M = np.zeros((n, rt.nlevels * rt.k))
        for a in range(rt.k):
            M[rows, rt.codes * rt.k + a] = ZL[:, a]
        blocks.append(M)
    ZL = np.hstack(blocks)
    C = np.linalg.cholesky(np.eye(n) + ZL @ ZL.T)
    logdet_v = 2.0 * np.log(np.diag(C)).sum()
    d = np.linalg.norm(X, axis=0)
    Xw = np.linalg.solve(C, X / d)
    yw = np.linalg.solve(C, y)
    Q, R = np.linalg.qr(Xw)
    beta_s = np.linalg.solve(R, Q.T @ yw)
    r2 = float(np.sum((yw - Xw @ beta_s) ** 2))
    p = X.shape[1]
    if fit.reml:
        logdet_x = 2.0 * np.log(np.abs(np.diag(R))).sum() + 2.0 * np.log(d).sum()
        dof = n - p
        objective = logdet_v + logdet_x + dof * (1 + np.log(2 * np.pi * r2 / dof))
    else:
        dof = n
        objective = logdet_v + n * (1 + np.log(2 * np.pi * r2 / n))
    return float(objective), beta_s / d, float(np.sqrt(r2 / dof))


def assert_close(got, want, rtol: float, atol, what: str = "fixef") -> None:
    """Element-wise |got - want| <= atol + rtol |want|; ``atol`` a number or an array (e.g.
    a multiple of the standard errors, for coefficients near zero)."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    bad = ~(np.abs(got - want) <= atol + rtol * np.abs(want))
    assert not bad.any(), f"{what}: got {got}, want {want} (rtol {rtol}, atol {atol})"


# -- names in every language, hostile text, bounded time (issue 14) ---------------------------

#: letters to draw names from: accented Latin, Greek, Cyrillic, Arabic, Hebrew, CJK, Hangul,
#: Devanagari, and characters Python reads in another form (µ, fullwidth, ligatures)
NAME_LETTERS = (
    "abcxyzñáéíóúüçßøåæœ"
    "αβγδλμπσω"
    "абвгджзклмнпрстфхцчшщэюя"
    "ابتثجحدرسشعقكلمنهوي"
    "אבגדהוזחטיכלמנסעפצקרשת"
    "学校班级成绩年度区域"
    "학교반성적"
    "कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह"
    "µｘﬁ"
)
#: what may follow the first letter: digits, '_', combining accents (a decomposed é), '.'
NAME_TAIL = NAME_LETTERS + "0123456789_" + "\u0301\u0303\u0308" + "."


def _valid_name(name: str) -> bool:
    import keyword

    return name.replace(".", "_").isidentifier() and not keyword.iskeyword(name)


@st.composite
def unicode_names(draw) -> str:
    """A column name that is a Python identifier (dots allowed, as in R) in any script,
    perhaps with combining accents or characters Python reads in another form."""
    first = draw(st.sampled_from(NAME_LETTERS + "_"))
    tail = draw(st.text(alphabet=NAME_TAIL, max_size=8))
    name = (first + tail).rstrip(".")
    if not _valid_name(name) or name.startswith("__") or name in ("Intercept", "I", "C"):
        name = "n" + name.replace("_", "") if _valid_name("n" + name.replace("_", "")) else "n"
    return name


#: names that are not Python names: written in backticks
ODD_NAMES = st.one_of(
    st.sampled_from(["a-b", "my x", "1x", "class", "x²", "año escolar", "a.b c", "5", "y (kg)"]),
    st.text(
        alphabet=st.characters(
            codec="utf-8", categories=("L", "M", "N", "P", "S", "Zs"), exclude_characters="`\\"
        ),
        min_size=1,
        max_size=8,
    )
    .map(str.strip)
    .filter(lambda s: s and "_mlq_" not in s and s != "Intercept"),
)


@dataclass
class NamedDesign:
    """A data set whose columns have names in other languages, a formula that uses them
    (bare, in functions, as grouping factors nested or crossed, or backticked), and what the
    fit must show."""

    data: pd.DataFrame
    formula: str
    fixef_names: tuple[str, ...]  # some of the fixed effects' names
    groups: tuple[str, ...]  # the grouping factors' names (lme4's, e.g. 'b:a')


def _written(name: str, quoted: bool) -> str:
    return f"`{name}`" if quoted else name


@st.composite
def named_designs(draw) -> NamedDesign:
    """Columns y, x, z (positive), g (6 levels) and h (4 levels, crossed) under names drawn
    from :func:`unicode_names` (bare) or :data:`ODD_NAMES` (backticked)."""
    import unicodedata

    roles = ["y", "x", "z", "g", "h"]
    names: dict[str, str] = {}
    quoted: dict[str, bool] = {}
    seen: set[str] = set()
    for role in roles:
        odd = draw(st.integers(0, 3)) == 0
        name = draw(ODD_NAMES if odd else unicode_names())
        key = unicodedata.normalize("NFKC", name)
        if key in seen or not name:
            name, key = f"{role}_{len(seen)}", f"{role}_{len(seen)}"
        seen.add(key)
        names[role] = name
        from multilevel.spec.names import is_bare_name

        quoted[role] = not is_bare_name(name)
    n = 48
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    g = np.arange(n) % 6
    h = (np.arange(n) // 6) % 4
    x = rng.normal(size=n)
    z = rng.uniform(0.5, 3.0, size=n)
    y = 1 + 0.5 * x - 0.3 * z + rng.normal(size=6)[g] + 0.5 * rng.normal(size=4)[h]
    y = y + rng.normal(scale=0.7, size=n)
    data = pd.DataFrame(
        {
            names["y"]: y,
            names["x"]: x,
            names["z"]: z,
            names["g"]: [f"G{v}" for v in g],
            names["h"]: [f"H{v}" for v in h],
        }
    )
    w = {r: _written(names[r], quoted[r]) for r in roles}
    # inside a function a name is Python's: 'my.var' would be an attribute, so in backticks
    wf = {r: _written(names[r], quoted[r] or "." in names[r]) for r in roles}
    fixed_kind = draw(st.sampled_from(["bare", "log", "scale", "I", "poly"]))
    fixed = {
        "bare": (f"{w['x']} + {w['z']}", [names["x"], names["z"]]),
        "log": (f"{w['x']} + log({wf['z']})", [names["x"]]),
        "scale": (f"scale({wf['x']})", []),
        "I": (f"I({wf['x']} * 2) + {w['z']}", [names["z"]]),
        "poly": (f"poly({wf['x']}, 2)", []),
    }[fixed_kind]
    random_kind = draw(st.sampled_from(["one", "slope", "double", "nested", "crossed", "inter"]))
    gname, hname = names["g"], names["h"]
    random, groups = {
        "one": (f"(1 | {w['g']})", (gname,)),
        "slope": (f"(1 + {w['x']} | {w['g']})", (gname,)),
        "double": (f"({w['x']} || {w['g']})", (gname,)),
        "nested": (f"(1 | {w['h']}/{w['g']})", (hname, f"{gname}:{hname}")),
        "crossed": (f"(1 | {w['g']}) + (1 | {w['h']})", (gname, hname)),
        "inter": (f"(1 | {w['g']}:{w['h']})", (f"{gname}:{hname}",)),
    }[random_kind]
    formula = f"{w['y']} ~ {fixed[0]} + {random}"
    return NamedDesign(data, formula, tuple(fixed[1]), groups)


@st.composite
def nested_formulas(draw) -> str:
    """A grammar formula with a term wrapped in up to 120 brackets of random kinds, or with
    a run of up to 600 operators or terms: nesting, long chains, deep Python expressions."""
    text = draw(grammar_formulas()).text
    kind = draw(st.sampled_from(["brackets", "python", "chain", "power", "star", "unary"]))
    depth = draw(st.integers(1, 120))
    if kind == "brackets":
        opens = draw(
            st.lists(st.sampled_from(["(", "{", "I(", "log(", "["]), min_size=depth, max_size=depth)
        )
        closes = "".join(
            {"(": ")", "{": "}", "I(": ")", "log(": ")", "[": "]"}[o] for o in reversed(opens)
        )
        term = "".join(opens) + "x" + closes
    elif kind == "python":
        op = draw(st.sampled_from(["+", "*", "-", "**", " + ", "/"]))
        term = "I(" + op.join(["x"] * depth * 5) + ")"
    elif kind == "chain":
        op = draw(st.sampled_from(["+", ":", "-", "*", "/", "%in%"]))
        term = op.join(["x", "z", "u"] * (depth * 2))
    elif kind == "power":
        term = (
            "(" + " + ".join(["x", "z", "u", "a"][: draw(st.integers(1, 4))]) + f")^{depth * 1000}"
        )
    elif kind == "star":
        term = "*".join(f"{c}" for c in ["x", "z", "u", "a", "b", "g", "h"] * (1 + depth // 8))
    else:
        term = draw(st.sampled_from(["-", "+", "~", "- "])) * depth * 5 + "x"
    if draw(st.booleans()):
        return f"{text} + {term}"
    return text.replace("x", term, 1) if "x" in text else f"{text} + {term}"


def random_formula_strings() -> st.SearchStrategy[str]:
    """Any text at all (any Unicode), grammar formulas with Unicode names spliced in, deep
    nestings and long operator chains: for properties that every call answers, in bounded
    time, with a fit or our error."""
    spliced = st.tuples(grammar_formulas(), unicode_names() | ODD_NAMES, st.booleans()).map(
        lambda t: t[0].text.replace("x", f"`{t[1]}`" if t[2] else t[1], 1)
    )
    return st.one_of(
        st.text(max_size=80),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
        spliced,
        nested_formulas(),
        hostile_formulas(),
    )


class TookTooLong(BaseException):
    """Raised in a call that did not return in time (a BaseException: no ``except
    Exception`` in the library can swallow it)."""


@contextlib.contextmanager
def returns_within(seconds: float):
    """Bound the block's time with a timer signal: :class:`TookTooLong` if it runs longer."""

    def alarm(signum, frame):
        raise TookTooLong(f"did not return within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
