"""The errors a user can see. Every message names the column, term or count at fault."""

from __future__ import annotations


class MultilevelError(ValueError):
    """Base class: a problem with the model or the data that the user can fix."""


class FormulaError(MultilevelError):
    """A formula that cannot be parsed, or that asks for something not allowed."""

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        if formula is not None and position is not None:
            pointer = " " * position + "^"
            message = f"{message}\n  {formula}\n  {pointer}"
        super().__init__(message)
        self.formula = formula
        self.position = position


class DataError(MultilevelError):
    """Data that cannot support the requested model (missing columns, wrong types, too few rows)."""
