"""Doc commands work as written from a fresh clone after `make demo`: no bare `assocmem`,
`python` or `torchrun` that only an activated virtual environment would find."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
NEEDS_VENV = {"assocmem", "python", "torchrun", "pytest", "pip", "ruff"}


def commands(page: str) -> list[tuple[int, str]]:
    """``(line, command)`` of every line of the page's shell blocks (```` ```bash ````, ```` ```sh ````
    or a block with no language) and the ``$ `` lines of its ```` ```text ```` blocks."""
    out, lang = [], None  # lang: None outside a block, else the open block's language
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if line.startswith("```"):
            lang = line[3:].strip() if lang is None else None
            continue
        if lang == "text" and line.startswith("$ "):
            line = line[2:]
        elif lang not in ("bash", "sh", ""):
            continue
        if line and not line.startswith("#"):
            out.append((number, line))
    return out


@pytest.mark.parametrize("page", PAGES)
def test_every_command_names_the_venv(page):
    bare = []
    for line, cmd in commands(page):
        for part in re.split(r"&&|\|", cmd):
            words = [w for w in part.split() if not re.fullmatch(r"\w+=\S*", w)]  # VAR=x cmd
            if words and words[0] in NEEDS_VENV:
                bare.append(f"{page}:{line}: {cmd}")
    assert not bare, "commands that fail outside an activated venv:\n" + "\n".join(bare)


def test_the_readme_says_how_the_venv_is_used():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "source .venv/bin/activate" in text and "make demo" in text
