"""Reproducible installs: every declared dependency is pinned in constraints.txt, as tested."""

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_name(r) for r in reqs}


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, ver = line.partition("==")
            assert ver, f"constraints.txt: {line!r} is not name==version"
            out[name.lower().replace("_", "-")] = ver.strip()
    return out


def test_every_dependency_is_pinned_except_torch():
    """torch is pinned in the install commands (torch==2.13.0) instead: its +cpu tag names a build."""
    pinned = pins()
    assert "torch" not in pinned
    assert declared() - {"torch"} <= set(pinned), declared() - {"torch"} - set(pinned)


def test_the_pins_are_what_is_installed():
    """The suite runs with the pinned versions (after a change: run it, then `make constraints`)."""
    pinned = pins()
    for name in sorted(declared() - {"torch"}):
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # an optional extra this venv was not set up with
        assert installed == pinned[name], f"{name}: installed {installed}, pinned {pinned[name]}"


def test_make_setup_installs_with_the_constraints_and_pinned_torch():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r'pip install .*"\$\(TORCH\)" -c constraints\.txt', make)
    assert "TORCH := torch==2.13.0" in make
