"""Typed settings: a TOML table becomes a frozen dataclass, and every bad value is named
with its file, line and key before any work starts.

A *settings class* is a frozen dataclass deriving from :class:`Settings`. Its fields say
what they accept through their annotations alone (``int``, ``float``, ``bool``, ``str``,
``Literal[...]``, ``X | None``, ``tuple[X, ...]``, ``dict``, a nested settings class) and,
where a range applies, through :func:`setting`'s metadata (``ge``, ``gt``, ``le``, ``lt``,
or a ``check`` function). Declaring a field that way is all it takes for it to be
validated; rules between fields go in the class's :meth:`Settings.relations`.

Types are strict: an ``int`` refuses ``"8"``, ``2.5`` and ``true``; a ``float`` takes an
integer (TOML writes ``lr = 1`` for 1.0) but refuses NaN and infinities; a ``bool`` refuses
``"true"`` and ``1``. Every offender is collected and reported at once as a
:class:`SettingsError` (an :class:`~assocmem.errors.InputError`, exit status 2), each
line as ``file:line: [section] key: what is wrong (got ...). hint``.

    cfg = settings.load(RunConfig, "run.toml")          # or settings.parse(cls, table)
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from assocmem.errors import InputError, did_you_mean, read_text

__all__ = [
    "Settings",
    "Problem",
    "SettingsError",
    "setting",
    "check",
    "parse",
    "load",
    "read_toml",
    "key_line",
    "describe",
    "reference",
]

Key = tuple[str, ...]  # a key's path: ("train", "lr"); () is the whole file


@dataclass(frozen=True)
class Problem:
    """One bad setting: where (its key path), what is wrong, and what would be right."""

    key: Key
    message: str  # "must be an integer >= 1 (got 0)"
    hint: str = ""  # "write 8, without quotes"

    def under(self, prefix: Key) -> Problem:
        return dataclasses.replace(self, key=prefix + self.key)


class SettingsError(InputError):
    """Every bad setting of one config, each with its key (and its file and line once known)."""

    def __init__(
        self,
        problems: Sequence[Problem],
        file: str | None = None,
        text: str = "",
        line_of: Callable[[Key], int | None] | None = None,
    ):
        self.problems, self.file, self.text = list(problems), file, text
        self.line_of = line_of or (lambda key: key_line(text, key))
        super().__init__(self._message())

    def located(
        self, file: str | Path, text: str, line_of: Callable[[Key], int | None] | None = None
    ) -> SettingsError:
        """The same problems, each with the line of its key in ``text`` (read from ``file``;
        ``line_of`` finds a key's line, by default in TOML text)."""
        return SettingsError(self.problems, str(file), text, line_of)

    def _message(self) -> str:
        problems = self.problems
        if self.file:  # in the order they are written
            problems = sorted(problems, key=lambda p: self.line_of(p.key) or 0)
        lines = [self._line(p) for p in problems]
        if len(lines) == 1:
            return lines[0]
        head = f"{self.file}: " if self.file else ""
        return f"{head}{len(lines)} bad settings:\n" + "\n".join(f"  {ln}" for ln in lines)

    def _line(self, p: Problem) -> str:
        where = ""
        if self.file:
            line = self.line_of(p.key)
            where = f"{self.file}:{line}: " if line else f"{self.file}: "
        hint = f" {p.hint}" if p.hint else ""
        return f"{where}{_key_name(p.key)}: {p.message}.{hint}"


def _key_name(key: Key) -> str:
    if not key:
        return "the file"
    if len(key) == 1:
        return key[0]
    return f"[{'.'.join(key[:-1])}] {key[-1]}"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    check: Callable[[Any], str | None] | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a range (``ge``/``gt``/``le``/``lt``) and/or a ``check``
    (value -> problem text or None) that :func:`check` enforces."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if check is not None:
        meta["check"] = check
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


class Settings:
    """Base of settings classes (frozen dataclasses): construction validates every field."""

    def __post_init__(self) -> None:
        problems = check(self)
        if problems:
            raise SettingsError(problems)

    def relations(self) -> Iterable[Problem]:
        """Rules between fields (each field alone already passed): override to add some."""
        return ()


# ---------------------------------------------------------------- values and types


def describe(value: Any) -> str:
    """``value`` as a TOML reader would name it: ``the string '8'``, ``the boolean true``."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {_short(repr(value))}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the float {value}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return _short(repr(value))


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _hints(value: Any, want: str) -> str:
    """A hint for a value of the wrong type, or ''."""
    if isinstance(value, str):
        v = value.strip().lower()
        if want == "bool" and v in ("true", "false"):
            return f"Write {v}, without quotes."
        if want in ("int", "float"):
            try:
                float(v)
                return f"Write {value.strip()}, without quotes."
            except ValueError:
                pass
    if want == "bool" and isinstance(value, int) and value in (0, 1):
        return f"Write {'true' if value else 'false'}."
    if want == "int" and isinstance(value, float) and math.isfinite(value):
        if value.is_integer():
            return f"Write {int(value)} (a whole number: no decimal point or exponent)."
        return "Use a whole number."
    return ""


def _type_problem(value: Any, tp: Any) -> tuple[str, str] | None:
    """``(message, hint)`` when ``value`` is not of the annotation ``tp``; None when it is."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return None
    if origin is Literal:
        choices = typing.get_args(tp)
        if any(type(value) is type(c) and value == c for c in choices):
            return None
        names = ", ".join(repr(c) for c in choices)
        hint = did_you_mean(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        return f"must be one of {names} (got {describe(value)})", hint.strip()
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(tp)
        if any(_type_problem(value, a) is None for a in arms):
            return None
        return _type_problem(value, next(a for a in arms if a is not type(None)))
    if tp is type(None):
        return None if value is None else ("must be empty", "")
    if tp is bool:
        if isinstance(value, bool):
            return None
        return f"must be true or false (got {describe(value)})", _hints(value, "bool")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"must be an integer (got {describe(value)})", _hints(value, "int")
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"must be a number (got {describe(value)})", _hints(value, "float")
        if not math.isfinite(value):
            return f"must be a finite number (got {value})", ""
        return None
    if tp is str:
        if isinstance(value, str):
            return None
        return f"must be a string (got {describe(value)})", 'Put it in quotes: "...".'
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            return f"must be a list (got {describe(value)})", ""
        args = typing.get_args(tp)
        item = args[0] if args else Any
        for i, v in enumerate(value):
            bad = _type_problem(v, item)
            if bad:
                return f"item {i + 1} {bad[0]}", bad[1]
        return None
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return None
        return f"must be a table (got {describe(value)})", ""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return None
        return f"must be a table (section) (got {describe(value)})", ""
    return None  # an annotation this module does not know: not checked


_OPS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="),
        "lt": (operator.lt, "<")}  # fmt: skip


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _range_problem(value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    ops = [(fn, sym, meta[op]) for op, (fn, sym) in _OPS.items() if op in meta]
    if all(fn(value, bound) for fn, _, bound in ops):
        return None
    return f"must be {' and '.join(f'{sym} {_num(b)}' for _, sym, b in ops)} (got {_num(value)})"


def _hints_of(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field_problems(f: dataclasses.Field, value: Any, tp: Any) -> list[Problem]:
    """The problems of one field's value: its type, then its range, then its ``check``
    (which returns a problem text, or a list of :class:`Problem` keyed below the field)."""
    bad = _type_problem(value, tp)
    if bad is None:
        msg = _range_problem(value, f.metadata)
        bad = (msg, "") if msg else None
    if bad is not None:
        return [Problem((f.name,), *bad)]
    found = f.metadata["check"](value) if "check" in f.metadata else None
    if isinstance(found, str):
        return [Problem((f.name,), found)]
    return [p.under((f.name,)) for p in found or ()]


def check(obj: Any) -> list[Problem]:
    """Every problem of a settings object: each field against its annotation and metadata,
    then (when every field passed) the class's :meth:`Settings.relations`."""
    hints = _hints_of(type(obj))
    problems = []
    for f in dataclasses.fields(obj):
        problems.extend(_field_problems(f, getattr(obj, f.name), hints.get(f.name, Any)))
    if not problems and isinstance(obj, Settings):
        problems.extend(obj.relations())
    return problems


# ---------------------------------------------------------------- tables -> objects


def parse(cls: type, table: Any, key: Key = ()) -> Any:
    """``cls`` built from the TOML ``table`` at ``key``: unknown keys, wrong types, ranges
    and relations all reported together as one :class:`SettingsError`; nested settings
    classes read their own sub-tables."""
    obj, problems = _parse(cls, table, key)
    if problems:
        raise SettingsError(problems)
    return obj


def _parse(cls: type, table: Any, key: Key) -> tuple[Any, list[Problem]]:
    if not isinstance(table, dict):
        where = f"[{'.'.join(key)}]" if key else "the file"
        return None, [Problem(key, f"must be a table (got {describe(table)})",
                              f"Write it as a section {where} with key = value lines.")]  # fmt: skip
    hints = _hints_of(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    problems, values = [], {}
    for k, v in table.items():
        if k not in fields:
            problems.append(Problem(key + (k,), "unknown setting",
                                    f"{did_you_mean(k, fields).strip()} Known: {', '.join(fields)}."))  # fmt: skip
            continue
        tp = hints.get(k, Any)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            sub, subp = _parse(tp, v, key + (k,))
            problems.extend(subp)
            values[k] = sub
            continue
        found = _field_problems(fields[k], v, tp)
        problems.extend(p.under(key) for p in found)
        if not found:
            values[k] = _coerce(v, tp)
    if problems:
        return None, problems
    try:
        return cls(**values), []
    except SettingsError as e:
        return None, [p.under(key) for p in e.problems]


def _coerce(value: Any, tp: Any) -> Any:
    """The TOML value as the annotation wants it: an integer for a float field becomes a
    float, a list for a tuple field a tuple."""
    if tp is float and isinstance(value, int):
        return float(value)
    if (typing.get_origin(tp) is tuple or tp is tuple) and isinstance(value, list):
        args = typing.get_args(tp)
        return tuple(_coerce(v, args[0] if args else Any) for v in value)
    return value


def read_toml(path: str | Path, what: str) -> tuple[dict, str]:
    """``(document, text)`` of the TOML file at ``path`` (``what`` it should be, for errors)."""
    p = Path(path)
    text = read_text(p, what)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{p}: not valid TOML ({e}).") from None


def load(cls: type, path: str | Path, what: str = "config") -> Any:
    """``cls`` read from the TOML file at ``path``; every error names ``path``, line and key."""
    doc, text = read_toml(path, what)
    try:
        return parse(cls, doc)
    except SettingsError as e:
        raise e.located(path, text) from None


# ---------------------------------------------------------------- where a key is written

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
)


def _parts(dotted: str) -> Key:
    return tuple(p.strip().strip("\"'") for p in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", dotted))


def key_line(text: str, key: Key) -> int | None:
    """The 1-based line of ``text`` where ``key`` (a path such as ``("train", "lr")``) is
    set, or its section header, or the nearest enclosing key's line; None if none is
    written (a default)."""
    if not key:
        return None
    table: Key = ()
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("[["):
            table = ("[[",)  # arrays of tables are not settings: skip their keys
            continue
        h = _HEADER.match(line)
        if h:
            table = _parts(h.group(1))
            if table == key:
                return n
            continue
        m = _KEY.match(line)
        if m:
            full = table + _parts(m.group(1))
            if full == key or key[: len(full)] == full:  # the key, or an inline table holding it
                return n
    return key_line(text, key[:-1])


# ---------------------------------------------------------------- the reference table


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " \\| ".join(
            f'`"{c}"`' if isinstance(c, str) else f"`{c}`" for c in typing.get_args(tp)
        )
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    if origin is tuple or tp is tuple:
        return f"list of {_type_name((typing.get_args(tp) or (Any,))[0])}"
    if origin is dict or tp is dict:
        return "table"
    return getattr(tp, "__name__", str(tp))


def _rule(f: dataclasses.Field) -> str:
    ops = [f"{sym} {_num(f.metadata[op])}" for op, (_, sym) in _OPS.items() if op in f.metadata]
    if "check" in f.metadata:
        ops.append((f.metadata["check"].__doc__ or "checked").strip().splitlines()[0])
    return ", ".join(ops)


def _comments(cls: type) -> dict[str, str]:
    """Each field's reason comment in the source of ``cls`` and of the settings classes it
    derives from: the comments on its lines, or on the lines just above it."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass) and "__dataclass_fields__" in vars(klass):
            found.update(_own_comments(klass))
    return found


def _own_comments(cls: type) -> dict[str, str]:
    import inspect
    import io
    import tokenize

    found: dict[str, list[str]] = {}
    current, pending, line_start = None, [], True
    for tok in tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline):
        if tok.type == tokenize.NAME and line_start and tok.start[1] == 4:
            current = tok.string
            found.setdefault(current, []).extend(pending)
            pending = []
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            (pending if line_start else found.setdefault(current or "", [])).append(text)
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT):
            line_start = tok.type != tokenize.COMMENT or line_start
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            line_start = True
        elif tok.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT):
            line_start = False
    return {k: " ".join(v) for k, v in found.items()}


def reference(cls: type, section: str = "", skip: Iterable[str] = ()) -> str:
    """A markdown table of ``cls``'s settings: key, type, allowed values, default and the
    reason comment written beside the field (so the docs are generated, not restated)."""
    hints, why = _hints_of(cls), _comments(cls)
    rows = ["| key | type | allowed | default | why |", "| --- | --- | --- | --- | --- |"]
    own = vars(cls).get("__annotations__", {})  # the class's own keys first, inherited after
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        tp = hints.get(f.name, Any)
        if f.name in skip or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
            continue  # not set here, or a section of its own
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = ""
        shown = f"`{json.dumps(default, ensure_ascii=False)}`" if default != "" else ""
        rows.append(
            f"| `{section}{f.name}` | {_type_name(tp)} | {_rule(f)} | {shown} | {why.get(f.name, '')} |"
        )
    return "\n".join(rows)
