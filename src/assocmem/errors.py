"""Errors that reach users: each says what was wrong, where, and what would be right.

The command line prints any :class:`AssocmemError` as its message alone (no
traceback) and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["AssocmemError", "InputError", "nearest", "did_you_mean", "read_text"]


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


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark dropped: editors on Windows
    write one, and it would glue itself to the first token); a missing, unreadable or
    non-UTF-8 file is an InputError that names ``what`` the file should have been
    (e.g. "graph file")."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        article = "an" if what[:1] in "aeiou" else "a"
        raise InputError(f"{path}: is a folder, expected {article} {what}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror})") from None
