"""lme4's names of the parameters: the σ-scale variance parameters of each term, ``sigma``,
then the fixed effects (``profile(fit, signames = FALSE)`` and ``confint`` in lme4)."""

from __future__ import annotations


def variance_names(layout, terms) -> list[str]:
    """lme4's names of the variance parameters in θ's order: ``sd_<term>|<group>`` for a
    diagonal element of Λ_i, ``cor_<row>.<col>|<group>`` for an off-diagonal one."""
    out = []
    for t, a, b in zip(layout.term, layout.row, layout.col, strict=True):
        term = terms[t]
        if a == b:
            out.append(f"sd_{term.names[a]}|{term.group}")
        else:
            out.append(f"cor_{term.names[a]}.{term.names[b]}|{term.group}")
    return out


def varpar_names(fit) -> list[str]:
    """The variance parameters of a linear mixed model (:func:`variance_names`), then
    ``sigma``."""
    return variance_names(fit.deviance.layout, fit.schema.terms) + ["sigma"]


def param_names(fit) -> list[str]:
    """All parameters in lme4's ``confint`` order: variance parameters, ``sigma``, fixed
    effects."""
    return varpar_names(fit) + list(fit.fixef.index)


def perc_label(a: float) -> str:
    """lme4's column label of a quantile: ``"2.5 %"``."""
    return f"{100 * a:.3g} %"
