"""Experiment files as a careless user writes them: every reproducer of issue 9 is a clear error."""

import json
import textwrap
from pathlib import Path

import pytest

from assocmem.cli import main
from assocmem.experiment import MAX_FLOATS, footprint

CASE = '\n[[case]]\nname = "c"\nsentence = "A B"\nprobe = "A"\nexpect = "B"\n'


def run(tmp_path: Path, capsys, text: str, *args: str):
    p = tmp_path / "x.toml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    code = main(["run", str(p), *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.parametrize("as_json", [False, True])
def test_an_overflowing_run_is_an_error_not_a_pass(tmp_path, capsys, as_json):
    code, out, err = run(
        tmp_path, capsys, 'graph = """\nA = 1e200*B\nB = A\n"""\n' + CASE, *(["--json"] * as_json)
    )
    assert code == 2 and out == "" and "PASS" not in out and "NaN" not in out
    assert "x.toml:6 (case 'c'): the run overflowed" in err and "x.toml:2: A = 1e200*B" in err


@pytest.mark.parametrize(
    "model,message",
    [
        ("layers = 1000000", "layers must be between 1 and 64 (got 1000000)"),
        ("readout_layer = 1000000", "readout_layer must be between 1 and 64"),
        ('embedding = "random"\ndim = 1000000000000', "dim must be between 1 and 65,536"),
        ("temp = inf", "must be > 0 and finite"),
    ],
)
def test_sizes_beyond_reason_are_refused_before_any_work(tmp_path, capsys, model, message):
    code, _, err = run(tmp_path, capsys, f'graph = """\nA = B\n"""\n[model]\n{model}\n{CASE}')
    line = 5 + model.count("\n")  # the offending key's own line, not the table's (4)
    assert code == 2 and f"x.toml:{line} [model]" in err and message in err, err


def test_an_endless_graph_file_is_refused(tmp_path, capsys):
    code, _, err = run(tmp_path, capsys, 'graph_file = "/dev/zero"\n' + CASE)
    assert code == 2 and "/dev/zero: the graph file is larger than" in err, err


def test_a_memory_too_large_to_hold_names_the_sizes(tmp_path, capsys):
    """A one-hot embedding is V×V: 20,000 tokens are 1.5 GiB before the first read."""
    tokens = [f"t{i}" for i in range(20_000)]
    graph = "\n".join(f"{a} = {b}" for a, b in zip(tokens[::2], tokens[1::2], strict=True))
    code, _, err = run(
        tmp_path, capsys, f'graph = """\n{graph}\nA = B\n"""\n[model]\nlayers = 1\n{CASE}'
    )
    assert code == 2 and "too large to run" in err and "vocabulary 20,002 tokens" in err, err
    assert footprint(20_002, 20_002, 10_001) > MAX_FLOATS


def test_the_same_graph_with_random_vectors_fits():
    assert footprint(20_002, 64, 10_001, depth=3, tokens=3) < MAX_FLOATS


def test_a_training_config_names_the_train_command(tmp_path, capsys):
    code, _, err = run(tmp_path, capsys, 'out_dir = "runs/x"\n[train]\nmax_iters = 3\n')
    assert code == 2 and "this is a training config" in err and "assocmem train " in err, err


@pytest.mark.parametrize(
    "expect,verdict", [("A", "PASS  expected A, top A (A leads "), ("D", "FAIL  expected D, top A")]
)
def test_the_verdict_says_whose_lead_the_margin_is(tmp_path, capsys, expect, verdict):
    text = 'graph = """\nA = B\nC = D\n"""\n[model]\nlayers = 1\ntemp = 0.1\n' + CASE.replace(
        '"A B"', '"C A"'
    ).replace('expect = "B"', f'expect = "{expect}"')
    code, out, _ = run(tmp_path, capsys, text)
    line = next(x for x in out.splitlines() if x.startswith(("PASS", "FAIL")))
    assert line.startswith(verdict), line
    _, out_json, _ = run(tmp_path, capsys, text, "--json")
    case = json.loads(out_json)["cases"][0]
    logits, top = case["logits"], case["top"]
    other = top[1] if expect == "A" else "D"  # a fail: the lead over the expected token
    assert line.endswith(f"(A leads {other} by {logits['A'] - logits[other]:.3f})"), line
    assert code == (0 if expect == "A" else 1)


@pytest.mark.parametrize(
    ("key", "bad"), [("layers", '"two"'), ("temp", '"hot"'), ("dim", "0"), ("embedding", '"glove"')]
)
def test_model_errors_name_the_line_of_their_key_not_of_the_table(tmp_path, key, bad):
    from assocmem.experiment import parse_experiment

    text = "graph = '''\nA = B\n'''\n\n[model]\n# a comment\nlayers = 2\ntemp = 0.2\ndim = 8\n"
    text += 'embedding = "onehot"\n\n[[case]]\nsentence = "A"\nprobe = "A"\nexpect = ["B"]\n'
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines, 1) if line.startswith(f"{key} ="))
    text = "\n".join(f"{key} = {bad}" if i == at else line for i, line in enumerate(lines, 1))
    from assocmem.errors import InputError

    with pytest.raises(InputError, match=rf"x\.toml:{at} \[model\]"):
        parse_experiment(text, file="x.toml")


def test_a_model_error_is_not_located_at_a_key_that_only_prefixes_its_own():
    """``readout_layer``'s error is on its line, not on the line of ``readout`` above it."""
    from assocmem.errors import InputError
    from assocmem.experiment import parse_experiment

    text = "graph = '''\nA = B\n'''\n[model]\nreadout = \"residual\"\nreadout_layer = 1000\n"
    text += '[[case]]\nsentence = "A"\nprobe = "A"\nexpect = ["B"]\n'
    with pytest.raises(InputError, match=r"x\.toml:6 \[model\]: .*readout_layer"):
        parse_experiment(text, file="x.toml")
