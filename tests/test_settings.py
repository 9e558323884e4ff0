"""The generic settings mechanism: annotations and metadata alone decide what a field accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from assocmem import settings
from assocmem.errors import InputError
from assocmem.settings import Problem, Settings, SettingsError, setting


@dataclass(frozen=True)
class Inner(Settings):
    size: int = setting(4, ge=1)  # a count
    rate: float = setting(0.5, gt=0, le=1)
    on: bool = False
    mode: Literal["fast", "slow"] = "fast"
    note: str | None = None
    temps: tuple[float, ...] = (1.0,)

    def relations(self):
        if self.on and self.mode == "slow":
            yield Problem(("mode",), "must be 'fast' when on", "Set on = false.")


@dataclass(frozen=True)
class Outer(Settings):
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def _problems(table: dict, cls=Outer) -> dict[tuple, str]:
    with pytest.raises(SettingsError) as e:
        settings.parse(cls, table)
    return {p.key: p.message + " " + p.hint for p in e.value.problems}


@pytest.mark.parametrize(
    "value, words",
    [
        ("8", ["integer", "string", "Write 8, without quotes"]),
        (2.5, ["integer", "float 2.5", "whole number"]),
        (8.0, ["integer", "Write 8"]),
        (True, ["integer", "boolean true"]),
        ([1, 2], ["integer", "a list"]),
        ({"a": 1}, ["integer", "a table"]),
        (0, [">= 1", "got 0"]),
        (-3, [">= 1", "got -3"]),
    ],
)
def test_int_is_strict(value, words):
    msg = _problems({"inner": {"size": value}})[("inner", "size")]
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize(
    "value, word",
    [(float("nan"), "finite"), (float("inf"), "finite"), (0, "> 0"), (1.5, "<= 1"),
     ("0.5", "Write 0.5, without quotes"), (False, "boolean")],
)  # fmt: skip
def test_float_is_finite_and_in_range(value, word):
    assert word in _problems({"inner": {"rate": value}})[("inner", "rate")]


def test_float_takes_an_integer_as_a_float():
    got = settings.parse(Outer, {"inner": {"rate": 1}})
    assert got.inner.rate == 1.0 and isinstance(got.inner.rate, float)


@pytest.mark.parametrize("value, hint", [("true", "Write true"), (1, "Write true"), (0, "false")])
def test_bool_is_strict(value, hint):
    assert hint in _problems({"inner": {"on": value}})[("inner", "on")]


def test_literal_choices_with_a_did_you_mean():
    msg = _problems({"inner": {"mode": "fsat"}})[("inner", "mode")]
    assert "'fast', 'slow'" in msg and "Did you mean fast" in msg


def test_optional_tuple_and_relations():
    got = settings.parse(Outer, {"inner": {"note": "hi", "temps": [1, 2.5]}})
    assert got.inner.note == "hi" and got.inner.temps == (1.0, 2.5)
    assert "item 2" in _problems({"inner": {"temps": [1.0, "x"]}})[("inner", "temps")]
    assert "when on" in _problems({"inner": {"on": True, "mode": "slow"}})[("inner", "mode")]


@pytest.mark.parametrize("value", [5, [1, 2], "x", True])
def test_a_section_must_be_a_table(value):
    assert "must be a table" in _problems({"inner": value})[("inner",)]


def test_unknown_keys_get_a_hint():
    msg = _problems({"inner": {"sise": 3}})[("inner", "sise")]
    assert "unknown setting" in msg and "Did you mean size" in msg


def test_construction_in_code_is_checked_too():
    with pytest.raises(InputError, match="size: must be >= 1"):
        Inner(size=0)


def test_every_offender_named_with_its_line(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "a"\n\n[inner]\nsize = "8"\non = 1\nrate = nan\nmode = "x"\n')
    with pytest.raises(SettingsError) as e:
        settings.load(Outer, p)
    msg = str(e.value)
    assert "4 bad settings" in msg
    for line, key in ((4, "size"), (5, "on"), (6, "rate"), (7, "mode")):
        assert f"c.toml:{line}: [inner] {key}:" in msg, msg


def test_key_line_finds_dotted_keys_inline_tables_and_headers():
    text = 'a = 1\n[inner]\nsize = 2\n[x.y]\nz = 3\n[other]\nq = {r = 1}\n"w" = 2\n'
    assert settings.key_line(text, ("a",)) == 1
    assert settings.key_line(text, ("inner", "size")) == 3
    assert settings.key_line(text, ("inner", "rate")) == 2  # a default: the section's line
    assert settings.key_line(text, ("x", "y", "z")) == 5
    assert settings.key_line(text, ("other", "q", "r")) == 7
    assert settings.key_line(text, ("other", "w")) == 8
    assert settings.key_line(text, ("nothing",)) is None


def test_a_new_field_is_checked_by_its_declaration_alone():
    @dataclass(frozen=True)
    class More(Settings):
        depth: int = setting(2, ge=1, le=64)  # declared, nothing else

    with pytest.raises(SettingsError, match=r"depth: must be >= 1 and <= 64 \(got 65\)"):
        settings.parse(More, {"depth": 65})
