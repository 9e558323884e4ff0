"""The capacity search of hand-set memories, on cases with a known answer."""

import math

import pytest

from assocmem.capacity import CapacitySearch, capacity, hopfield_bound, read_success, relations
from assocmem.errors import InputError


def test_onehot_holds_d_relations_at_low_temperature_and_cannot_hold_more():
    d = 8
    assert read_success(d, "onehot", d, 0.01, seed=0, search=CapacitySearch()) == (d, d)
    assert capacity("onehot", d, 0.01, [0, 1]) == (d, True)  # the ceiling: d tokens, d dims
    with pytest.raises(InputError, match="9 one-hot tokens need 9 dimensions"):
        relations(d + 1, "onehot", d, seed=0)


def test_a_hot_read_spreads_its_weight_and_fails():
    # temp 100: every weight ~1/n, so the most frequent value wins, not the key's own
    cap, capped = capacity("onehot", 64, 100.0, [0, 1, 2])
    assert not capped and cap < 8
    ok, reads = read_success(64, "onehot", 64, 100.0, seed=0, search=CapacitySearch())
    assert ok < reads


def test_random_capacity_grows_with_the_dimension():
    s = CapacitySearch(n_max=1024)
    assert capacity("random", 16, 0.3, [0, 1], s)[0] > 2 * capacity("random", 8, 0.3, [0, 1], s)[0]


def test_the_search_reports_its_ceiling_as_a_lower_bound():
    assert capacity("random", 32, 0.03, [0], CapacitySearch(n_max=64)) == (64, True)


def test_hopfield_bound_matches_the_papers_example():
    # Ramsauer et al. 2020: c = 1.3718 for beta = 1, K = 1, d = 75, p = 0.001
    bound = hopfield_bound(75, 1.0, radius=math.sqrt(74), p=0.001)
    # the paper prints c to 4 digits: raised to the 18.5th power that is 0.1 % at most
    assert bound == pytest.approx(math.sqrt(0.001) * 1.3718 ** (74 / 4), rel=2e-3)
    assert hopfield_bound(16, 10.0) is None  # unit-norm patterns at temp 0.1: no guarantee


def test_bad_search_settings_are_input_errors():
    with pytest.raises(InputError):
        CapacitySearch(need=1.5)
    with pytest.raises(InputError, match="unknown embedding kind"):
        relations(4, "vectors", 4, seed=0)  # type: ignore[arg-type]


def test_the_docs_table_is_the_benchmark():
    """docs/continual.md's capacity table restates bench/capacity.json, cell for cell."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "continual.md").read_text(encoding="utf-8")
    rows = json.loads((root / "bench" / "capacity.json").read_text())["rows"]
    for temp in sorted({r["temp"] for r in rows}, reverse=True):
        cells = [r for r in rows if r["embedding"] == "random" and r["temp"] == temp]
        text = " | ".join(f"{r['capacity']:,}" + ("+" if r["capped"] else "") for r in cells)
        assert f"| random | {temp:g} | {text} |" in doc
