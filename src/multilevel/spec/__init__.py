"""The formula layer: lme4's grammar and the allow-list, parsed once into a
:class:`ModelFormula` that everything downstream reads."""

from .grammar import ModelFormula, RandomTerm, offset_formula, parse_formula

__all__ = ["ModelFormula", "RandomTerm", "offset_formula", "parse_formula"]
