"""The command line: JSON output, exit codes, and bad input as a new user would type it."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from assocmem.cli import main

GOOD = textwrap.dedent('''\
    # a toy experiment
    graph = """
    A = B
    C = D
    """

    [model]
    layers = 1
    embedding = "onehot"
    temp = 0.1

    [[case]]
    name = "a"
    sentence = "C A"
    probe = "A"
    expect = "{expect}"
''')


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_and_pass(tmp_path, capsys):
    code, out, err = run(capsys, "run", write(tmp_path, GOOD.format(expect="A")), "--json")
    assert code == 0, err
    data = json.loads(out)
    (case,) = data["cases"]
    assert set(case) == {"name", "tokens", "probe", "logits", "top", "expect", "pass", "attention"}
    assert case["tokens"] == ["C", "A", "*A"] and case["probe"] == "A"
    assert case["top"][0] == "A" and case["pass"] is True
    assert set(case["logits"]) == {"A", "B", "C", "D"}
    assert case["top"] == sorted(case["logits"], key=lambda t: -case["logits"][t])
    assert set(case["attention"]["1"]) == {"assoc", "context", "mlp"}
    assert len(case["attention"]["1"]["context"]) == 3


def test_failing_expectation_exits_1(tmp_path, capsys):
    code, out, _ = run(capsys, "run", write(tmp_path, GOOD.format(expect="D")))
    assert code == 1 and "FAIL" in out


def test_table_output_and_attention(tmp_path, capsys):
    code, out, _ = run(capsys, "run", write(tmp_path, GOOD.format(expect="A")), "--attention")
    assert code == 0 and "PASS" in out and "★" in out and "layer 1 · context" in out


def test_graph_file_relative_to_the_toml(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "A = B\nC = D\n", "g.graph")
    text = GOOD.format(expect="A").replace(
        'graph = """\nA = B\nC = D\n"""', 'graph_file = "g.graph"'
    )
    code, out, err = run(capsys, "run", write(tmp_path / "sub", text), "--json")
    assert code == 0, err


def bad(tmp_path, capsys, text, *extra):
    code, out, err = run(capsys, "run", write(tmp_path, text), *extra)
    assert code == 2 and out == ""
    assert "Traceback" not in err and err.startswith("error:")
    return " ".join(err.split())


def test_unknown_sentence_token_names_the_nearest(tmp_path, capsys):
    err = bad(
        tmp_path, capsys, GOOD.format(expect="A").replace('sentence = "C A"', 'sentence = "C AA"')
    )
    assert "x.toml:14" in err and "'AA'" in err and "Did you mean A" in err


def test_malformed_graph_line_points_into_the_toml(tmp_path, capsys):
    err = bad(tmp_path, capsys, GOOD.format(expect="A").replace("C = D", "C D"))
    assert "x.toml:4:4: expected '='" in err and "^" in err


def test_missing_file(tmp_path, capsys):
    code, out, err = run(capsys, "run", tmp_path / "nope.toml")
    assert code == 2 and "no such experiment file" in err
    code, out, err = run(capsys, "run", tmp_path)
    assert code == 2 and "is a folder, expected an experiment file" in err


def test_byte_order_mark_and_crlf_files(tmp_path, capsys):
    # Windows editors: a BOM must not glue itself to the first token, CRLF must parse
    text = "\ufeff" + GOOD.format(expect="A").replace("\n", "\r\n")
    p = tmp_path / "w.toml"
    p.write_bytes(text.encode("utf-8"))
    code, out, err = run(capsys, "run", p, "--json")
    assert code == 0, err
    assert json.loads(out)["cases"][0]["logits"].keys() == {"A", "B", "C", "D"}
    g = tmp_path / "w.graph"
    g.write_bytes("\ufeffA = B\r\nC = D\r\n".encode())
    code, out, err = run(capsys, "check", g)
    assert code == 0 and "1    │ A = B" in out and "\ufeff" not in out, err


@pytest.mark.parametrize(
    "old,new,message",
    [
        (
            "temp = 0.1",
            "temp = 0",
            "x.toml:10 [model]: bad model settings: temp for the assoc bank",
        ),
        ("temp = 0.1", "temp = { assoc = 0.1, context = -1, mlp = 1 }", "context bank must be > 0"),
        ('sentence = "C A"', 'sentence = "   "', "sentence is empty"),
        ('probe = "A"', 'probe = "Z"', "unknown token 'Z' in the probe"),
        ("layers = 1", "layers = 1\ntemperature = 1", "unknown key(s) 'temperature'"),
        ("layers = 1", "layers = 1\nlayer = 1", "Did you mean layers"),
        ('name = "a"', 'name = "a"\nsentense = "x"', "'sentense'"),
        ("layers = 1", 'layers = "two"', "layers must be an integer"),
        ('embedding = "onehot"', 'embedding = "glove"', 'embedding must be "onehot" or "random"'),
        ("[model]", "[model", "x.toml:7:7: not valid TOML: Expected ']'"),
        ('graph = """', 'graf = """', "unknown key(s) 'graf'"),
        ('expect = "A"', "expect = 3", "(case 1): expect must be a string, got 3"),
        ('sentence = "C A"', 'sentence = "' + "C A " * 300 + '"', "the sentence has 600 tokens"),
    ],
)
def test_bad_input_is_one_clear_paragraph(tmp_path, capsys, old, new, message):
    text = GOOD.format(expect="A")
    assert old in text
    assert message in bad(tmp_path, capsys, text.replace(old, new, 1))


def test_a_graph_file_given_to_run_gets_a_hint(tmp_path, capsys):
    code, out, err = run(capsys, "run", write(tmp_path, "A = B C\n", "g.graph"))
    assert code == 2 and "g.graph:1:" in err and "assocmem check" in " ".join(err.split())


def test_no_case_names_the_table_to_add(tmp_path, capsys):
    text = GOOD.format(expect="A")
    err = bad(tmp_path, capsys, text[: text.index("[[case]]")])
    assert "no [[case]] tables" in err
    err = bad(tmp_path, capsys, "case = [1]\n" + text[: text.index("[[case]]")])
    assert "(case 1): a case must be a table, got 1" in err


def test_bracketed_tokens_print_as_themselves(tmp_path, capsys):
    # rich markup: "[/x]" must not raise MarkupError and "[red]" must not vanish
    text = 'graph = "[/x] = [red]"\n[[case]]\nsentence = "[/x]"\nprobe = "[red]"\nexpect = "[/x]"\n'
    code, out, err = run(capsys, "run", write(tmp_path, text), "--attention")
    assert code == 0, err
    assert "case 'case1': [/x] *[red]" in out and "expected [/x], top [/x]" in out
    assert "│ [red] │" in out and "[/x] = [red]" in out
    code, out, err = run(capsys, "check", write(tmp_path, "[/x] = [red]\n", "b.graph"))
    assert code == 0 and "[/x] = [red]" in out, err
    err = bad(tmp_path, capsys, text.replace('sentence = "[/x]"', 'sentence = "[/y]"'))
    assert "unknown token '[/y]' in the sentence" in err and "Did you mean [/x]?" in err


def test_check_command(tmp_path, capsys):
    code, out, _ = run(capsys, "check", write(tmp_path, "A = B\nC = D\n", "g.graph"))
    assert code == 0 and "all slots read back" in out
    code, out, _ = run(
        capsys, "check", write(tmp_path, "A = X\n2*A = Y\n", "h.graph"), "--temp", "1"
    )
    assert code == 1 and "line 1 reads Y instead of X" in " ".join(out.split())
    # a value with no positive token reads back nothing, and passes (THE = 0*THE failed)
    for zero in ("A = -1*B\n", "THE = 0*THE\n"):
        code, out, _ = run(capsys, "check", write(tmp_path, zero, "n.graph"))
        assert code == 0 and "all slots read back" in out, out
    code, out, _ = run(capsys, "check", write(tmp_path, "A = 0*A\nA + B = C\n", "n.graph"))
    assert code == 1 and "line 1 reads C instead of nothing (no value token has a weight > 0)" in (
        " ".join(out.split())
    )
    code, _, err = run(capsys, "check", write(tmp_path, "A = B\n", "i.graph"), "--temp", "0")
    assert code == 2 and "--temp must be > 0" in err
    code, _, err = run(capsys, "check", write(tmp_path, "A = B +\n", "j.graph"))
    assert code == 2 and "j.graph:1:8" in err
    code, _, err = run(
        capsys, "check", tmp_path / "g.graph", "--embedding", "random", "--dim", "0"
    )  # not silently the default width
    assert code == 2 and "--dim must be between 1 and 65,536, got 0" in err


def test_the_experiment_file_in_the_docs_runs(tmp_path, capsys):
    doc = (Path(__file__).parents[1] / "docs" / "graph.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```toml\n(.*?)```", doc, re.S)
    code, out, err = run(capsys, "run", write(tmp_path, block), "--json")
    assert code == 0 and err == "", err  # every documented key is accepted, and the case passes
    (case,) = json.loads(out)["cases"]
    assert case["name"] == "tasty" and case["pass"] is True


@pytest.mark.parametrize(
    "args,usage,message",
    [
        (["runn"], "Usage: assocmem [OPTIONS] COMMAND", "No such command 'runn'"),
        (["run"], "Usage: assocmem run [OPTIONS]", "Missing argument"),
        (["run", "--bogus", "x"], "Usage: assocmem run [OPTIONS]", "No such option: --bogus"),
        (["run", "x.toml", "--seed", "x"], "Usage: assocmem run [OPTIONS]", "--seed"),
        (["check"], "Usage: assocmem check [OPTIONS]", "Missing argument"),
    ],
)
def test_usage_errors_exit_2_with_the_usage_line(capsys, args, usage, message):
    code, out, err = run(capsys, *args)
    assert code == 2 and usage in err and message in err, err
    assert "Traceback" not in out + err


def test_version(capsys):
    from assocmem.cli.app import package_version

    code, out, err = run(capsys, "--version")
    assert code == 0 and out.strip() == f"assocmem {package_version()}", out + err
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", package_version())


def test_the_installed_command_prints_usage_errors_without_a_traceback():
    """The console script as a user runs it, with the typer/click that are installed."""
    import shutil
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("assocmem")
    cmd = [str(exe)] if exe.exists() else [shutil.which("assocmem") or "assocmem"]
    p = subprocess.run([*cmd, "runn"], capture_output=True, text=True)
    assert p.returncode == 2 and "Usage: assocmem" in p.stderr and "Traceback" not in p.stderr
