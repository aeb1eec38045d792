"""The errors a user can see. Every message names the column, term or count at fault."""

from __future__ import annotations


class MultilevelError(ValueError):
    """Base class: a problem with the model or the data that the user can fix."""

    def one_line(self) -> str:
        """The message on one line (for the command line)."""
        return " ".join(part.strip() for part in str(self).splitlines() if part.strip())


class FormulaError(MultilevelError):
    """A formula that cannot be parsed, or that asks for something not allowed.

    ``str(error)`` shows the formula with a caret under ``position`` when it is known;
    ``reason`` is the message alone."""

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        self.reason = message
        self.formula = formula
        if formula is not None and position is not None:
            position = max(0, min(position, len(formula)))
            # the caret must line up with the formula as printed: one line, tabs as spaces
            shown = formula.replace("\n", " ").replace("\t", " ")
            message = f"{message}\n  {shown}\n  {' ' * position}^"
        self.position = position
        super().__init__(message)

    def one_line(self) -> str:
        if self.formula is None or self.position is None:
            return super().one_line()
        shown = " ".join(self.formula.split())
        near = self.formula[self.position :].strip()
        near = " ".join(near.split())
        where = f", near '{near[:30]}'" if near else ", at the end"
        reason = " ".join(self.reason.split())  # it may quote a part of the formula
        return f"{reason} (column {self.position + 1}{where} of '{shown}')"


class DataError(MultilevelError):
    """Data that cannot support the requested model (missing columns, wrong types, too few rows)."""
