"""Lexical helpers for formula text: quotes, brackets and top-level splits.

Positions are indices into the text, so that errors can point at the character at fault.
Nothing here evaluates anything.
"""

from __future__ import annotations

from ..errors import FormulaError

QUOTES = "'\"`"


def skip_quoted(text: str, i: int, formula: str | None = None, offset: int = 0) -> int:
    """Index of the quote closing the one at ``text[i]``."""
    end = text.find(text[i], i + 1)
    if end < 0:
        raise FormulaError(
            f"unterminated quote {text[i]}", formula or text, offset + i if formula else i
        )
    return end


def matching(text: str, start: int) -> int:
    """Index of the bracket closing the one opened at ``text[start]``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[start]]]
    i = start + 1
    while i < len(text):
        c = text[i]
        if c in QUOTES:
            i = skip_quoted(text, i)
        elif c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack[-1]:
                raise FormulaError(f"unbalanced brackets: unexpected {c!r}", text, i)
            stack.pop()
            if not stack:
                return i
        i += 1
    raise FormulaError(f"unbalanced brackets: {text[start]!r} is never closed", text, start)


def check_balanced(text: str) -> None:
    i = 0
    while i < len(text):
        c = text[i]
        if c in "([{":
            i = matching(text, i)
        elif c in ")]}":
            raise FormulaError(f"unbalanced brackets: unexpected {c!r}", text, i)
        elif c in QUOTES:
            i = skip_quoted(text, i)
        i += 1


def code_only(text: str) -> str:
    """``text`` with the contents of quotes and backticks blanked out (same length)."""
    out = list(text)
    i = 0
    while i < len(text):
        if text[i] in QUOTES:
            end = skip_quoted(text, i)
            for j in range(i + 1, end):
                out[j] = " "
            i = end
        i += 1
    return "".join(out)


def top_level_split(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` where it is not inside brackets or quotes."""
    parts, depth, last, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in QUOTES:
            i = skip_quoted(text, i)
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[last:i])
            last = i + len(sep)
            i = last
            continue
        i += 1
    parts.append(text[last:])
    return parts


def split_terms(rhs: str) -> list[tuple[int, str]]:
    """Split a right-hand side at top-level '+' and '-', keeping each '-' with its term.
    Returns ``(start, text)`` pairs, ``start`` being the index in ``rhs``."""
    parts: list[tuple[int, str]] = []
    depth, last, i = 0, 0, 0
    while i < len(rhs):
        c = rhs[i]
        if c in QUOTES:
            i = skip_quoted(rhs, i)
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c in "+-":
            prev = rhs[last:i]
            # a '-' right after an operator belongs to a number, e.g. 'x ** -1'
            if c == "-" and prev.rstrip().endswith(("*", "/", "^", "(", ":")):
                i += 1
                continue
            parts.append((last, prev))
            last = i if c == "-" else i + 1
        i += 1
    parts.append((last, rhs[last:]))
    return parts


def top_level_bars(inner: str) -> list[tuple[int, int]]:
    """``(position, length)`` of each run of '|' outside brackets and quotes."""
    runs: list[tuple[int, int]] = []
    depth, i = 0, 0
    while i < len(inner):
        c = inner[i]
        if c in QUOTES:
            i = skip_quoted(inner, i)
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "|" and depth == 0:
            j = i
            while j < len(inner) and inner[j] == "|":
                j += 1
            runs.append((i, j - i))
            i = j
            continue
        i += 1
    return runs
