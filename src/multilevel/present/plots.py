"""Figures of a two-level fit (Gelman & Hill 2007, chapter 12), with matplotlib.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, no display needed: ``fig.savefig("f.png")`` renders with Agg). Pass ``fig=`` (a
Figure or SubFigure) to draw into an existing one.

* :func:`plot_pooling`           data of selected groups with the complete-, no- and
                                 partial-pooling lines (G&H figure 12.4);
* :func:`plot_group_regression`  the group coefficients β̂_jc ± 1 SE against a group-level
                                 predictor, with the level-2 regression line (figure 12.6);
* :func:`plot_shrinkage`         no-pooling against partial-pooling estimates by group size;
* :func:`plot_caterpillar`       the conditional modes of the random effects with intervals;
* :func:`plot_overview`          the four in one figure (the CLI's ``--plot``).
"""

from __future__ import annotations

import numpy as np

from ..errors import MultilevelError
from ..inference.distributions import norm_ppf

INTERCEPT = "(Intercept)"
_COLORS = {"complete": "#7f7f7f", "none": "#d62728", "partial": "#1f77b4"}


def _new_figure(fig, figsize):
    if fig is not None:
        return fig
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _slope_column(model, x: str | None) -> int:
    names = model.coefficients
    if x is None:
        slopes = [i for i, n in enumerate(names) if n != INTERCEPT]
        if not slopes:
            raise MultilevelError("the individual-level formula has no predictor to plot against")
        return slopes[0]
    if x not in names:
        raise MultilevelError(
            f"'{x}' is not an individual-level coefficient (choose from {', '.join(names)})"
        )
    return names.index(x)


def _label(name: str) -> str:
    return "intercept" if name == INTERCEPT else name


def select_groups(model, n: int = 8) -> list[str]:
    """``n`` groups spread over the range of group sizes (smallest to largest)."""
    sizes = model.group_sizes.sort_values(kind="stable")
    if len(sizes) <= n:
        return list(sizes.index)
    pick = np.unique(np.round(np.linspace(0, len(sizes) - 1, n)).astype(int))
    return list(sizes.index[pick])


def plot_pooling(model, groups=None, x: str | None = None, ncols: int = 4, fig=None):
    """Figure 12.4: for each group in ``groups`` (default: 8 spread over group sizes) its data
    (x jittered when it takes two values) and three lines: complete pooling (one regression
    for all), no pooling (the group's own regression) and partial pooling (the multilevel
    estimate). Other level-1 columns are held at their group means."""
    d = model.design
    cx = _slope_column(model, x)
    xname = d.x1names[cx]
    groups = select_groups(model) if groups is None else [str(g) for g in groups]
    unknown = [g for g in groups if g not in set(d.levels)]
    if unknown:
        raise MultilevelError(f"{model.group} '{unknown[0]}' is not a group of the fit")
    cmp = model.compare_pooling()
    y = model.fit.frame.y
    xv = d.X1[:, cx]
    binary = len(np.unique(xv)) <= 2
    span = np.ptp(xv) if np.ptp(xv) > 0 else 1.0
    grid = np.linspace(xv.min() - 0.05 * span, xv.max() + 0.05 * span, 50)
    rng = np.random.default_rng(0)
    ncols = min(ncols, len(groups))
    nrows = int(np.ceil(len(groups) / ncols))
    fig = _new_figure(fig, (3.0 * ncols, 2.7 * nrows + 0.6))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False))
    names = d.x1names
    for ax in axes.flat[len(groups) :]:
        ax.set_visible(False)
    for ax, g in zip(axes.flat, groups, strict=False):
        j = d.levels.get_loc(g)
        rows = d.codes == j
        xs = xv[rows] + (rng.uniform(-0.05, 0.05, rows.sum()) * span if binary else 0)
        ax.scatter(xs, y[rows], s=14, color="black", alpha=0.7, lw=0)
        base = d.X1[rows].mean(axis=0)
        Xg = np.tile(base, (len(grid), 1))
        Xg[:, cx] = grid
        row = cmp.loc[g]
        lines = [
            ("complete", "complete pooling", "--"),
            ("no pooling", "no pooling", ":"),
            ("partial", "partial pooling", "-"),
        ]
        for kind, label, style in lines:
            coef = np.array([row[f"{n}: {kind}"] for n in names], dtype=float)
            if np.isnan(coef).any():
                continue
            color = _COLORS[{"complete": "complete", "no pooling": "none"}.get(kind, "partial")]
            ax.plot(grid, Xg @ coef, style, color=color, lw=1.6, label=label)
        title = f"{g} (n = {int(row['n'])})"
        ax.set_title(title, fontsize=10)
        if row["note"]:
            ax.text(
                0.03, 0.04, f"no pooling: {row['note']}", transform=ax.transAxes, fontsize=7,
                color=_COLORS["none"], va="bottom",
            )  # fmt: skip
    for ax in axes[-1]:
        ax.set_xlabel(xname)
    for ax in axes[:, 0]:
        ax.set_ylabel(model.spec.response)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls=style, color=_COLORS[key], lw=1.6)
        for key, style in (("complete", "--"), ("none", ":"), ("partial", "-"))
    ]
    labels = ["complete pooling", "no pooling", "partial pooling"]
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    fig.suptitle(f"Complete, no and partial pooling by {model.group}", fontsize=11)
    return fig


def _predictor_column(model, predictor: str | None) -> int | None:
    d = model.design
    if predictor is None:
        cols = [w for w in range(1, len(d.wnames)) if np.ptp(d.W[:, w]) > 0]
        return cols[0] if cols else None
    if predictor not in d.wnames[1:]:
        raise MultilevelError(
            f"'{predictor}' is not a group-level predictor (the model has: "
            f"{', '.join(d.wnames[1:]) or 'none'})"
        )
    return d.wnames.index(predictor)


def _varying_coefficient(model, coefficient: str | None) -> str:
    if coefficient is None:
        return model.varying[0]
    if coefficient not in model.varying:
        raise MultilevelError(
            f"'{coefficient}' does not vary by {model.group} (varying: {', '.join(model.varying)})"
        )
    return coefficient


def plot_group_regression(
    model, coefficient: str | None = None, predictor: str | None = None, ax=None, fig=None
):
    """Figure 12.6: β̂_jc ± 1 SE (default c: the intercept, α_j) against the group-level
    predictor u_j (default: the first), with the level-2 line w'γ̂_c (other group-level
    predictors at their mean over groups). Without group-level predictors the estimates are
    drawn against the group size, with the line at γ̂_c0."""
    d = model.design
    name = _varying_coefficient(model, coefficient)
    w = _predictor_column(model, predictor)
    ct = model.coef_table()
    est, se = ct[name].to_numpy(), ct[f"se({name})"].to_numpy()
    gl = model.group_level
    gam = gl[gl.coefficient == name].set_index("predictor")["estimate"]
    if ax is None:
        fig = _new_figure(fig, (5.5, 4.2))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    sym = model.symbols[name] + "_j"
    if w is None:
        xs = ct["n"].to_numpy().astype(float)
        ax.set_xscale("log")
        ax.set_xlabel(f"observations in the {model.group} (log scale)")
        ax.axhline(gam[INTERCEPT], color=_COLORS["partial"], lw=1.5, label=f"{sym} mean")
    else:
        xs = d.W[:, w]
        grid = np.linspace(xs.min(), xs.max(), 50)
        wbar = d.W.mean(axis=0)
        coef = np.array([gam.get(wn, np.nan) for wn in d.wnames])
        Wg = np.tile(wbar, (len(grid), 1))
        Wg[:, w] = grid
        ax.plot(grid, Wg @ np.nan_to_num(coef), color=_COLORS["partial"], lw=1.5)
        ax.set_xlabel(f"{d.wnames[w]} ({model.group}-level predictor)")
    ax.errorbar(xs, est, yerr=se, fmt="o", ms=3.5, color="black", ecolor="#999999", lw=0.8)
    scale = f", {model.link} scale" if getattr(model, "generalized", False) else ""
    ax.set_ylabel(f"estimated {sym} ({_label(name)}{scale}) ± 1 SE")
    title = f"{model.group}-level regression of {sym}" if w is not None else f"{sym} by group size"
    ax.set_title(title, fontsize=11)
    return fig


def plot_shrinkage(model, coefficient: str | None = None, fig=None):
    """Shrinkage: left, each group's no-pooling estimate (open) moved to its partial-pooling
    estimate (filled) against the group size; right, partial against no pooling with the
    identity line, coloured by group size. Groups without a no-pooling estimate are left
    out of the right panel."""
    name = _varying_coefficient(model, coefficient)
    cmp = model.compare_pooling()
    n = cmp["n"].to_numpy().astype(float)
    nopool = cmp[f"{name}: no pooling"].to_numpy()
    partial = cmp[f"{name}: partial"].to_numpy()
    complete = float(cmp[f"{name}: complete"].iloc[0])
    fig = _new_figure(fig, (10, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    jit = n * np.exp(np.random.default_rng(1).uniform(-0.08, 0.08, len(n)))
    ok = ~np.isnan(nopool)
    ax1.vlines(jit[ok], nopool[ok], partial[ok], color="#bbbbbb", lw=0.8)
    ax1.scatter(jit[ok], nopool[ok], s=18, facecolors="none", edgecolors=_COLORS["none"],
                label="no pooling")  # fmt: skip
    ax1.scatter(jit, partial, s=14, color=_COLORS["partial"], label="partial pooling")
    ax1.axhline(complete, ls="--", color=_COLORS["complete"], label="complete pooling")
    d = model.design
    c = d.x1names.index(name)
    level2 = d.D[:, c, :] @ model.fixef.to_numpy()  # w_j'γ̂_c, what partial pooling shrinks to
    if len(d.wnames) > 1:
        ax1.scatter(jit, level2, s=22, marker="_", color="black", lw=1.0,
                    label="group-level prediction")  # fmt: skip
    else:
        ax1.axhline(level2[0], color="black", lw=0.8, label="group-level mean")
    ax1.set_xscale("log")
    ax1.set_xlabel(f"observations in the {model.group} (log scale)")
    sym = model.symbols[name] + "_j"
    ax1.set_ylabel(f"estimate of {sym} ({_label(name)})")
    ax1.legend(fontsize=8, loc="best")
    ax1.set_title("Estimates by group size", fontsize=11)
    sc = ax2.scatter(nopool[ok], partial[ok], c=np.log10(n[ok]), s=18, cmap="viridis")
    lo = np.nanmin([nopool[ok].min(), partial.min()]) if ok.any() else partial.min()
    hi = np.nanmax([nopool[ok].max(), partial.max()]) if ok.any() else partial.max()
    ax2.plot([lo, hi], [lo, hi], color="#999999", lw=0.8, label="no shrinkage")
    ax2.axhline(complete, ls="--", color=_COLORS["complete"], lw=0.8, label="complete pooling")
    ax2.set_xlabel(f"no-pooling estimate of {sym}")
    ax2.set_ylabel(f"partial-pooling estimate of {sym}")
    ax2.legend(fontsize=8, loc="upper left")
    cb = fig.colorbar(sc, ax=ax2)
    cb.set_label(f"log10(observations in the {model.group})")
    ax2.set_title("Partial against no pooling", fontsize=11)
    return fig


def plot_caterpillar(model, level: float = 0.95, terms=None, labels=None, fig=None):
    """The conditional modes of the random effects, sorted, with ``level`` intervals
    (mode ± z·conditional SD), one panel per term. Works for any fitted model with
    ``ranef``. Group labels are shown when there are at most 120 groups (``labels``)."""
    ranef = model.ranef
    panels = []
    for g, df in ranef.items():
        names = [c for c in df.columns if not c.startswith("se(")]
        for t in names:
            if terms is None or t in terms:
                panels.append((g, t, df[t].to_numpy(), df[f"se({t})"].to_numpy(), df.index))
    if not panels:
        raise MultilevelError(f"no random-effects term among {terms}")
    J = max(len(p[2]) for p in panels)
    show = J <= 120 if labels is None else bool(labels)
    height = min(22.0, max(4.0, 0.13 * J + 1.5)) if show else 4.5
    fig = _new_figure(fig, (3.6 * len(panels) + (1.2 if show else 0), height))
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    z = float(norm_ppf(0.5 + level / 2))
    for ax, (g, t, mode, se, idx) in zip(axes, panels, strict=True):
        order = np.argsort(mode)
        pos = np.arange(len(mode))
        ax.hlines(pos, mode[order] - z * se[order], mode[order] + z * se[order],
                  color="#999999", lw=1.0)  # fmt: skip
        ax.plot(mode[order], pos, "o", ms=3, color="black")
        ax.axvline(0, color=_COLORS["partial"], lw=0.8)
        if show:
            ax.set_yticks(pos, [str(v) for v in np.asarray(idx)[order]], fontsize=6.5)
        else:
            ax.set_yticks([])
            ax.set_ylabel(f"{g} (sorted)")
        ax.set_ylim(-1, len(mode))
        ax.set_xlabel(f"random effect: {_label(t)}")
        ax.set_title(f"{_label(t)} | {g}", fontsize=10)
    fig.suptitle(f"Conditional modes with {level:.0%} intervals", fontsize=11)
    return fig


def plot_overview(model, groups=None, fig=None):
    """Four panels: pooling lines for 4 groups, the group-level regression, shrinkage and
    the random effects of the first varying coefficient. A binomial or Poisson model (whose
    pooling comparison is not computed) gets the last two: the group-level regression (on
    the link scale) and the random effects."""
    if getattr(model, "generalized", False):
        fig = _new_figure(fig, (11, 4.8))
        left, right = fig.subfigures(1, 2, width_ratios=[1.4, 1])
        plot_group_regression(model, fig=left)
        plot_caterpillar(model, terms=[model.varying[0]], labels=False, fig=right)
        return fig
    fig = _new_figure(fig, (15, 10.5))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1])
    tl, tr = top.subfigures(1, 2, width_ratios=[1.1, 1])
    if groups is None:
        groups = select_groups(model, 4)
    plot_pooling(model, groups=groups, ncols=2, fig=tl)
    plot_group_regression(model, fig=tr)
    bl, br = bottom.subfigures(1, 2, width_ratios=[2, 1])
    plot_shrinkage(model, fig=bl)
    plot_caterpillar(model, terms=[model.varying[0]], labels=False, fig=br)
    return fig
