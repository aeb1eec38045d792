"""Plain-text tables: fixed-width columns, numbers formatted for reading."""

from __future__ import annotations

import numpy as np


def fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3e}"


def table(rows: list[list[str]], header: list[str], align_left: int = 1) -> list[str]:
    rows = [list(r) + [""] * (len(header) - len(r)) for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [
            str(c).ljust(w) if i < align_left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append(" " + " ".join(cells).rstrip())
    return out


def abbrev(name: str, width: int = 6) -> str:
    """Short column label, as R's abbreviate(): drop lower-case vowels from the right."""
    name = name.replace("(Intercept)", "(Intr)").replace("[T.", "").replace("]", "")
    chars = list(name)
    i = len(chars) - 1
    while len(chars) > width and i > 0:
        if chars[i] in "aeiou":
            del chars[i]
        i -= 1
    return "".join(chars)[:width]


def labels(names: list[str], width: int) -> list[str]:
    out = [abbrev(n, width) for n in names]
    if len(set(out)) < len(out):
        out = [f"{i + 1}:{a}"[:width] for i, a in enumerate(out)]
    return out


def confint_text(table, method: str, level: float, n: int | None = None) -> str:
    """The text of a table of confidence intervals (``fit.confint(...)``), with a heading
    naming the method and level (and the number of bootstrap replicates ``n``)."""
    head = f"Confidence intervals ({method}, {100 * level:g}%"
    head += f", {n} replicates):" if n is not None else "):"
    body = table.to_string(float_format=lambda v: f"{v:.6g}", na_rep="NA")
    return f"{head}\n{body}"
