"""Errors that reach users: each says what was wrong, where, and what would be right.

The command line prints any :class:`AssocmemError` as its message alone (no
traceback) and exits with status 2.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "AssocmemError",
    "InputError",
    "nearest",
    "did_you_mean",
    "read_text",
    "write_atomic",
]


class AssocmemError(Exception):
    """Base of every error assocmem raises on bad input."""


class InputError(AssocmemError, ValueError):
    """Bad user input: a file, a setting, a token. The message is the whole story."""


def nearest(word: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The up-to-``n`` known words closest to ``word`` (for "did you mean" hints)."""
    known = list(dict.fromkeys(known))  # each word once, in its first place
    close = difflib.get_close_matches(word, known, n=n, cutoff=0.5)
    if not close:  # fall back to a looser match so a hint is almost always given
        close = difflib.get_close_matches(word, known, n=n, cutoff=0.0)
    return close


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """A hint sentence naming the nearest known words, or '' when there are none."""
    close = nearest(word, known)
    return f" Did you mean {', '.join(close)}?" if close else ""


def read_text(path: Path, what: str, *, max_bytes: int | None = None) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark dropped: editors on Windows
    write one, and it would glue itself to the first token); a missing, unreadable or
    non-UTF-8 file is an InputError that names ``what`` the file should have been
    (e.g. "graph file"). With ``max_bytes``, a longer file (or an endless one such as
    ``/dev/zero``) is an InputError too, found after reading at most ``max_bytes + 1``."""
    try:
        if max_bytes is None:
            return path.read_text(encoding="utf-8-sig")
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise InputError(
                f"{path}: the {what} is larger than {max_bytes:,} bytes, the most assocmem reads"
            )
        return raw.decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        article = "an" if what[:1] in "aeiou" else "a"
        raise InputError(f"{path}: is a folder, expected {article} {what}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror})") from None


def check_writable(path: Path, what: str) -> None:
    """Refuse, before any work, an output :func:`write_atomic` could not write: a folder at
    ``path``, or a nearest existing ancestor that is a file or not writable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a folder; give a file name.")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{what} {str(path)!r}: {str(folder)!r} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{what} {str(path)!r}: the folder {str(folder)!r} is not writable.")


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then
    :func:`os.replace`: a reader never sees half a file. A folder at ``path`` or a
    folder that cannot be made or written is an InputError."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # a read-only folder, a file where a folder should be, ...
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        umask = os.umask(0)  # mkstemp makes 0600 files; give the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
