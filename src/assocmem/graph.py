"""The relation-graph language: one memory slot per line.

    # comment
    ОНА = МАША + КАШУ        # key ОНА, value МАША + КАШУ
    A = 0.5*B + C            # weighted sums
    A + B = C                # a key may be a sum too

Each side is a weighted sum of tokens: ``[WEIGHT*]TOKEN (+ [WEIGHT*]TOKEN)*``. A
token is any run of non-space characters other than ``= + * #`` (Cyrillic and
any UTF-8 included); a weight is a decimal number (``-0.5``, ``2``, ``1e-1``, ``2e6``;
not ``2e+6``: ``+`` is the operator).
Blank lines and ``#`` comments are ignored.

Malformed input raises :class:`GraphSyntaxError`, which prints like a compiler
error: ``file:line:col``, what was expected, the line and a caret.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from assocmem.errors import AssocmemError, InputError, read_text

__all__ = [
    "Term",
    "Slot",
    "Graph",
    "GraphSyntaxError",
    "format_weight",
    "parse_graph",
    "load_graph",
]

_OPERATORS = "=+*#"
# Largest graph or experiment file read: far above any hand-written graph, and the memory
# it compiles to is bounded again by its size (experiment.check_size).
MAX_FILE_BYTES = 64 * 2**20
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DANGLING_EXPONENT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)[eE]")  # "2e" of "2e+06"


class GraphSyntaxError(AssocmemError, SyntaxError):
    """A malformed line of a relation graph, located to file, line and column."""

    def __init__(self, message: str, *, file: str, line: int, column: int, text: str):
        self.message, self.file, self.line, self.column, self.text = (
            message,
            file,
            line,
            column,
            text,
        )
        super().__init__(message)

    def __str__(self) -> str:
        caret = " " * (self.column - 1) + "^"
        return (
            f"{self.file}:{self.line}:{self.column}: {self.message}\n    {self.text}\n    {caret}"
        )


@dataclass(frozen=True)
class Term:
    """One weighted token of a side: ``weight * token``."""

    token: str
    weight: float = 1.0

    def __str__(self) -> str:
        return self.token if self.weight == 1.0 else f"{format_weight(self.weight)}*{self.token}"


def format_weight(w: float) -> str:
    """``w`` as the graph language reads it back exactly: the short form (``0.5``, ``2``) when
    that is exact, else the shortest exact one, and never a ``+`` in an exponent (``2e+06``
    would lex as ``2e``, ``+``, ``06``)."""
    text = f"{w:g}"
    if float(text) != w:
        text = repr(w)
    return text.replace("e+", "e")


@dataclass(frozen=True)
class Slot:
    """One line of the graph = one memory slot: ``key = value``.

    ``line`` is the 1-based line in ``file`` the slot came from.
    """

    key: tuple[Term, ...]
    value: tuple[Term, ...]
    file: str = "<string>"
    line: int = 0

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(t.token for t in (*self.key, *self.value))

    def __str__(self) -> str:
        return f"{' + '.join(map(str, self.key))} = {' + '.join(map(str, self.value))}"

    @property
    def label(self) -> str:
        """A short name for the slot: where it came from and what it says."""
        return f"{self.line}: {self}"


@dataclass(frozen=True)
class Graph:
    """A parsed relation graph: its slots in file order."""

    slots: tuple[Slot, ...]
    file: str = "<string>"

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every token of the graph, in order of first appearance."""
        return tuple(dict.fromkeys(tok for s in self.slots for tok in s.tokens))

    def __len__(self) -> int:
        return len(self.slots)

    def __str__(self) -> str:
        return "\n".join(map(str, self.slots))


def _lex(text: str) -> list[tuple[str, int]]:
    """Split a line (comment already removed) into (lexeme, 1-based column) pairs."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _OPERATORS:
            out.append((ch, i + 1))
            i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in _OPERATORS:
                j += 1
            out.append((text[i:j], i + 1))
            i = j
    return out


def _parse_line(raw: str, file: str, lineno: int) -> Slot | None:
    text = raw.split("#", 1)[0].rstrip()
    if not text.strip():
        return None
    lex = _lex(text)
    end_col = len(text) + 1

    def fail(msg: str, col: int) -> GraphSyntaxError:
        return GraphSyntaxError(msg, file=file, line=lineno, column=col, text=raw.rstrip("\n"))

    def found(k: int) -> str:
        return f"'{lex[k][0]}'" if k < len(lex) else "end of line"

    def col(k: int) -> int:
        return lex[k][1] if k < len(lex) else end_col

    for k in range(len(lex) - 2):  # 2e+06*B lexes as 2e + 06*B: a token, not a weight
        (tok, c), (plus, cp), (nxt, cn) = lex[k : k + 3]
        glued = c + len(tok) == cp == cn - 1  # no space between: one number meant
        if glued and plus == "+" and nxt[:1].isdigit() and _DANGLING_EXPONENT.fullmatch(tok):
            raise fail(
                f"'+' is an operator: write the exponent without it ({tok}{nxt.split('*')[0]})",
                c,
            )
    eqs = [k for k, (tok, _) in enumerate(lex) if tok == "="]
    if not eqs:
        raise fail("expected '=' between a key and a value (a line reads KEY = VALUE)", end_col)
    if len(eqs) > 1:
        raise fail("expected one '=' per line, found a second one", lex[eqs[1]][1])

    def side(k: int, stop: int, what: str) -> tuple[tuple[Term, ...], int]:
        terms: list[Term] = []
        while True:
            if k >= stop:
                raise fail(f"expected a token in the {what}, found {found(k)}", col(k))
            tok, c = lex[k]
            weight = 1.0
            if k + 1 < stop and lex[k + 1][0] == "*":
                if not _NUMBER.fullmatch(tok):
                    raise fail(f"expected a number before '*', found '{tok}'", c)
                weight = float(tok)
                if not math.isfinite(weight):  # 1e999 overflows: the slot would read NaN
                    raise fail(f"expected a finite weight, found '{tok}'", c)
                k += 2
                if k >= stop or lex[k][0] in _OPERATORS:
                    raise fail(
                        f"expected a token after '*', found {found(k) if k < stop else 'end of ' + what}",
                        col(k),
                    )
                tok, c = lex[k]
            elif tok in _OPERATORS:
                raise fail(f"expected a token in the {what}, found '{tok}'", c)
            terms.append(Term(tok, weight))
            k += 1
            if k >= stop:
                return tuple(terms), k
            if lex[k][0] != "+":
                raise fail(f"expected '+' or the end of the {what}, found {found(k)}", col(k))
            k += 1
            if k >= stop:
                raise fail(
                    f"expected a token after '+', found {found(k) if k < len(lex) else 'end of line'}",
                    col(k),
                )

    key, _ = side(0, eqs[0], "key")
    value, _ = side(eqs[0] + 1, len(lex), "value")
    return Slot(key=key, value=value, file=file, line=lineno)


def parse_graph(text: str, *, file: str = "<string>", first_line: int = 1) -> Graph:
    """Parse graph source text into a :class:`Graph`.

    Args:
        text: the source, one slot per line.
        file: the name shown in errors.
        first_line: the line number of the first line of ``text`` in ``file``
            (for a graph embedded in another file, e.g. an experiment TOML).
    """
    slots = []
    for i, raw in enumerate(text.splitlines()):
        slot = _parse_line(raw, file, first_line + i)
        if slot is not None:
            slots.append(slot)
    if not slots:
        raise InputError(
            f"{file}: the graph has no slots (expected lines like 'KEY = VALUE', e.g. 'ОНА = МАША + КАШУ')"
        )
    return Graph(slots=tuple(slots), file=file)


def load_graph(path: str | Path) -> Graph:
    """Read and parse a ``.graph`` file (at most :data:`MAX_FILE_BYTES`)."""
    path = Path(path)
    return parse_graph(read_text(path, "graph file", max_bytes=MAX_FILE_BYTES), file=str(path))
