"""Adding relations to a hand-set memory: which old reads they change (module and CLI)."""

from pathlib import Path

from assocmem.cli import main
from assocmem.graph import parse_graph
from assocmem.interference import add_relations, interference_report

OLD = parse_graph("A = B\nC = D\nE = F\n", file="old.graph")


def test_a_colliding_relation_flips_the_old_read_and_unrelated_ones_do_not():
    added = parse_graph("A = X\nG = H\n", file="new.graph")
    rep = interference_report(OLD, added, "onehot", temp=0.1)
    (a, c, e) = rep.old
    assert a.before.ok and a.before.margin > 0.99  # one-hot at temp 0.1: a clean read
    assert a.flipped and a.broken and not a.after.ok and a.after.margin <= 0  # B ties with X
    assert not c.flipped and not e.flipped
    # G is orthogonal to C: only one more e^0 in the softmax's sum (a 1e-4 change)
    assert -1e-3 < c.margin_change < 0
    assert [r.ok for r in rep.added] == [False, True]  # the new A ties too; G = H reads back
    assert [c.before.slot.line for c in rep.broken] == [1]
    assert rep.added[0].slot.file == "new.graph" and rep.dim == 9


def test_a_close_random_key_lowers_a_margin_an_unrelated_key_barely_moves_it():
    # random keys: a key that shares A (A + Z) takes read weight from A's slot
    rep = interference_report(OLD, parse_graph("A + Z = X\n"), "random", dim=256, temp=0.1)
    far = interference_report(OLD, parse_graph("G = X\n"), "random", dim=256, temp=0.1)
    assert rep.old[0].margin_change < -0.1
    assert abs(far.old[0].margin_change) < rep.old[0].margin_change * -0.5
    assert not any(c.flipped for c in far.old)


def test_add_relations_keeps_each_slot_where_it_came_from():
    both = add_relations(OLD, parse_graph("G = H\n", file="new.graph"))
    assert [(s.file, s.line) for s in both.slots][-2:] == [("old.graph", 3), ("new.graph", 1)]


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, " ".join(out.split()), err


def test_check_add_command(tmp_path: Path, capsys):
    old = tmp_path / "old.graph"
    old.write_text("A = B\nC = D\n", encoding="utf-8")
    (tmp_path / "ok.graph").write_text("G = H\n", encoding="utf-8")
    (tmp_path / "clash.graph").write_text("# a second value for A\nA = X\n", encoding="utf-8")
    code, out, _ = _run(capsys, "check", old, "--add", tmp_path / "ok.graph")
    assert code == 0 and "no old read changed its verdict" in out
    code, out, _ = _run(capsys, "check", old, "--add", tmp_path / "clash.graph")
    assert code == 1 and "flipped" in out and "line 1 now reads" in out
    assert "added slots: 0 of 1 read back" in out and "clash.graph:2" in out
    (tmp_path / "bad.graph").write_text("G = H\nK = \n", encoding="utf-8")
    code, _, err = _run(capsys, "check", old, "--add", tmp_path / "bad.graph")
    assert code == 2 and "bad.graph:2:4" in err  # file, line and column of the bad relation
    code, _, err = _run(capsys, "check", old, "--add", tmp_path / "x.toml")
    assert code == 2 and "--add takes a .graph file" in err
    code, _, err = _run(capsys, "check", old, "--add", tmp_path / "missing.graph")
    assert code == 2 and "missing.graph: no such graph file" in err


def test_the_docs_table_is_what_the_command_prints():
    """docs/continual.md's margins for examples/masha.toml + masha_more.graph, recomputed."""
    import re

    from assocmem.experiment import load_experiment

    root = Path(__file__).resolve().parents[1]
    exp = load_experiment(root / "examples" / "masha.toml")
    added = parse_graph(
        (root / "examples" / "masha_more.graph").read_text(encoding="utf-8"), file="more"
    )
    rep = interference_report(
        exp.graph, added, exp.embedding, exp.dim, exp.seed, exp.config.temp("assoc", 1),
        qk_norm=exp.config.qk_norm,
    )  # fmt: skip
    doc = (root / "docs" / "continual.md").read_text(encoding="utf-8")
    rows = re.findall(r"│  │ (\d+) +│ [^│]+│[^│]+│ +([\d.]+) │[^│]+│ +([\d.]+) │", doc)
    assert len(rows) >= 4
    by_line = {c.before.slot.line: c for c in rep.old}
    for line, before, after in rows:
        c = by_line[int(line)]
        assert (f"{c.before.margin:.3f}", f"{c.after.margin:.3f}") == (before, after)
