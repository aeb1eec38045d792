"""Column names in a formula, in every language.

A name is *bare* (written as it is) when it is a Python identifier in any script
(``puntuación``, ``escuela_año``, ``Größe``, ``δ``, ``класс``, ``学校``), dots allowed as in R
(``my.var``), and not a Python keyword. Any other column name is written in backticks, as R
and formulaic quote it: `` `a-b` ``, `` `my x` ``, `` `1x` ``, `` `class` ``. Inside a function
(``log(`my x`)``) a backticked name is read by the allow-list as a placeholder identifier
(:func:`quoted_aliases`) and by formulaic as the column itself.

Python reads identifiers in NFKC normal form: inside a function ``µg`` (micro sign) would be
``μg`` (Greek mu) and a decomposed ``é`` (``e`` + combining accent, as macOS writes names) a
composed one; a keyword (`` `class` ``) or `` `x²` `` cannot be a Python name at all, even
backticked (formulaic unquotes identifiers and keywords). :func:`alias_names` replaces such
names inside expressions by an alias (:func:`column_alias`) that the data layer evaluates
as the column and :func:`restore_names` writes back; :func:`quote_unreadable` backticks the
bare names that formulaic's tokenizer would split (at a combining accent).
"""

from __future__ import annotations

import keyword
import re
import unicodedata

from .text import QUOTES

#: a character formulaic's tokenizer reads as part of a name
_WORD_CHAR = re.compile(r"[\w.]")


def identifiers(text: str, start: int = 0, end: int | None = None):
    """``(word, start, end)`` of each maximal run of ``text[start:end]`` that Python reads
    as an identifier (a letter or '_' of any script, then letters, digits, '_' and
    combining marks), in a loop over the characters."""
    end = len(text) if end is None else end
    i = start
    while i < end:
        if not text[i].isidentifier():
            i += 1
            continue
        j = i + 1
        while j < end and ("_" + text[j]).isidentifier():
            j += 1
        yield text[i:j], i, j
        i = j


def is_bare_name(name: str) -> bool:
    """Whether a formula can hold the column name ``name`` without backticks."""
    if not name or keyword.iskeyword(name):
        return False
    if name[0] == "." and name[1:2].isdigit():  # '.5' is a number
        return False
    # formulaic's tokenizer splits a name at a combining accent: such a name is quoted
    # (:func:`quote_unreadable` does it for the user)
    return name.replace(".", "_").isidentifier() and all(_WORD_CHAR.match(c) for c in name)


def quoted(name: str) -> str:
    """A column name as formula text: bare when it can be (:func:`is_bare_name`), else in
    backticks."""
    return name if is_bare_name(name) else f"`{name}`"


def _skip(text: str, i: int) -> int:
    """Index just after the quoted span that starts at ``text[i]`` (the end of the text when
    it is unterminated)."""
    end = text.find(text[i], i + 1)
    return len(text) if end < 0 else end + 1


def unquoted_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the parts of ``text`` outside quotes and backticks."""
    spans, start, i = [], 0, 0
    while i < len(text):
        if text[i] in QUOTES:
            spans.append((start, i))
            i = start = _skip(text, i)
        else:
            i += 1
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def quote_unreadable(text: str) -> str:
    """``text`` with every name that formulaic's tokenizer would split (one with a character
    it does not take as part of a word, such as a combining accent: ``puntuacio\u0301n``) in
    backticks, outside quotes and expressions; not the names of functions (``name(``) nor
    attributes."""
    if text.isascii():
        return text
    out: list[str] = []
    last = 0
    inside = python_regions(text)  # formulaic takes an expression whole: Python reads it
    for a, b in unquoted_spans(text):
        for word, s, e in identifiers(text, a, b):
            if all(_WORD_CHAR.match(c) for c in word) or any(p <= s < q for p, q in inside):
                continue
            before = text[s - 1] if s > 0 else ""
            after = text[e:b].lstrip()[:1]
            if before in (".", "`") or before.isdigit() or after == "(":
                continue
            out += [text[last:s], f"`{word}`"]
            last = e
    return "".join([*out, text[last:]]) if out else text


# -- names Python cannot read as written, inside expressions ---------------------------------

#: the identifier that stands for a column inside a Python expression (the data layer
#: evaluates it as the column): the name's UTF-8 bytes in hex
_COLUMN_ALIAS = re.compile(r"_mlq_([0-9a-f]+)_")


def column_alias(name: str) -> str:
    """The identifier that stands for the column ``name`` inside an expression."""
    return f"_mlq_{name.encode('utf-8').hex()}_"


def aliased_column(word: str) -> str | None:
    """The column an identifier from :func:`column_alias` stands for, else None."""
    m = _COLUMN_ALIAS.fullmatch(word)
    if m is None:
        return None
    try:
        return bytes.fromhex(m.group(1)).decode("utf-8")
    except ValueError:
        return None


def _region_end(text: str, i: int) -> int:
    """Index just after the bracket closing the one at ``text[i]`` (quotes skipped)."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c in QUOTES:
            i = _skip(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def _alias_region(text: str) -> str:
    """One Python expression with its backticked names, and its bare names that Python would
    read in another form, replaced by their aliases (formulaic's own quoting inside Python
    unquotes identifiers and keywords and breaks on quotes in names)."""
    out: list[str] = []
    last = i = 0
    while i < len(text):
        c = text[i]
        if c in "'\"":
            i = _skip(text, i)
        elif c == "`":
            end = _skip(text, i)
            name = text[i + 1 : end - 1]
            after = text[end:].lstrip()[:1]
            if end - 1 > i and text[end - 1] == "`" and after != "(":
                out += [text[last:i], column_alias(name)]
                last = end
            i = end
        elif c.isidentifier():
            j = i + 1
            while j < len(text) and ("_" + text[j]).isidentifier():
                j += 1
            word, before = text[i:j], text[i - 1] if i > 0 else ""
            after = text[j:].lstrip()[:1]
            if (
                unicodedata.normalize("NFKC", word) != word
                and before != "."
                and not before.isdigit()
                and after != "("
            ):
                out += [text[last:i], column_alias(word)]
                last = j
            i = j
        else:
            i += 1
    return "".join([*out, text[last:]]) if out else text


def python_regions(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the parts of formula text that formulaic evaluates as Python:
    ``name(...)`` (the name directly before the bracket, as formulaic's tokenizer reads a
    call) and ``{...}``."""
    regions: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in QUOTES:
            i = _skip(text, i)
            if c == "`" and text[i : i + 1] in ("(", "["):  # `f`(x): a call, as formulaic
                end = _region_end(text, i)
                regions.append((i, end))
                i = end
        elif c == "{":
            end = _region_end(text, i)
            regions.append((i, end))
            i = end
        elif c.isidentifier():
            j = i + 1
            while j < len(text) and (("_" + text[j]).isidentifier() or text[j] == "."):
                j += 1
            if text[j : j + 1] in ("(", "["):
                end = _region_end(text, j)
                regions.append((i, end))
                i = end
            else:
                i = j
        else:
            i += 1
    return regions


def alias_names(text: str) -> str:
    """``text`` (formula text) with the backticked column names inside expressions
    (``log(`my x`)``, ``log(`class`)``) and the bare ones Python would read in another form
    (``log(µg)``) replaced by their aliases (:func:`column_alias`), which the data layer
    evaluates as the columns and shows as written. Names of functions and attributes are
    left as they are: the allow-list reads those as Python does."""
    if text.isascii() and "`" not in text:
        return text
    out: list[str] = []
    last = 0
    for a, b in python_regions(text):
        out += [text[last:a], _alias_region(text[a:b])]
        last = b
    return "".join([*out, text[last:]]) if out else text


def restore_names(text: str) -> str:
    """``text`` (a column name, a message) with every alias written back as the column name
    it stands for (:func:`quoted`)."""
    if "_mlq_" not in text:
        return text

    def back(m: re.Match) -> str:
        name = aliased_column(m.group())
        return m.group() if name is None else quoted(name)

    return _COLUMN_ALIAS.sub(back, text)


#: the placeholder identifiers of backticked names in a Python expression
_ALIAS = "_multilevel_quoted_{}_"
_ALIAS_RE = re.compile(r"_multilevel_quoted_(\d+)_")


def quoted_aliases(expr: str) -> tuple[str, dict[str, str]]:
    """``expr`` with each backticked name (outside string quotes) replaced by a placeholder
    identifier, and the names by placeholder: what Python's parser can read."""
    if "`" not in expr:
        return expr, {}
    aliases: dict[str, str] = {}
    out: list[str] = []
    i = last = 0
    while i < len(expr):
        c = expr[i]
        if c in "'\"":
            i = _skip(expr, i)
        elif c == "`":
            end = expr.find("`", i + 1)
            if end < 0:
                break
            alias = _ALIAS.format(len(aliases))
            aliases[alias] = expr[i + 1 : end]
            out += [expr[last:i], alias]
            i = last = end + 1
        else:
            i += 1
    return "".join([*out, expr[last:]]), aliases


def restore_aliases(text: str, aliases: dict[str, str]) -> str:
    """``text`` (e.g. a message quoting a parsed expression) with placeholders written back
    as the backticked names they stand for."""
    if not aliases:
        return text
    return _ALIAS_RE.sub(
        lambda m: f"`{aliases[m.group()]}`" if m.group() in aliases else m.group(), text
    )
