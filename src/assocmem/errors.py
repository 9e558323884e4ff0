"""Errors that reach users: each says what was wrong, where, and what would be right.

The command line prints any :class:`AssocmemError` as its message alone (no
traceback) and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["AssocmemError", "InputError", "nearest"]


class AssocmemError(Exception):
    """Base of every error assocmem raises on bad input."""


class InputError(AssocmemError, ValueError):
    """Bad user input: a file, a setting, a token. The message is the whole story."""


def nearest(word: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The up-to-``n`` known words closest to ``word`` (for "did you mean" hints)."""
    known = list(known)
    close = difflib.get_close_matches(word, known, n=n, cutoff=0.5)
    if not close:  # fall back to a looser match so a hint is almost always given
        close = difflib.get_close_matches(word, known, n=n, cutoff=0.0)
    return close


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """A hint sentence naming the nearest known words, or '' when there are none."""
    close = nearest(word, known)
    return f" Did you mean {', '.join(close)}?" if close else ""
