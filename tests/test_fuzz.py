"""Fuzzing the inputs a user writes (bounded: a fixed number of examples, no deadline).

Graph text and experiment files, generated and mutated by hypothesis, go through the
command line as a user runs it: every answer is a result (exit 0 or 1) or a located
error (exit 2, the file and the key or line named), never a traceback. The property that
a printed graph parses back to itself is in test_graph.py (generated graphs).
"""

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assocmem.cli import main
from assocmem.errors import InputError
from assocmem.experiment import CASE_KEYS, MODEL_KEYS
from assocmem.graph import GraphSyntaxError, parse_graph
from tests.strategies import tokens

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    text = out.getvalue() + err.getvalue()
    assert "Traceback" not in text, text
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ graph text

_pieces = st.one_of(
    tokens,
    st.sampled_from(["=", "+", "*", "#", " ", "  ", "\t", "\n", "\r", "-", ".", "e", "1e+5"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**400), 10**400).map(str),
)
graph_texts = st.lists(_pieces, max_size=40).map("".join)


@FUZZ
@given(graph_texts)
def test_any_graph_text_parses_or_fails_at_a_line_and_column(text):
    try:
        g = parse_graph(text, file="g.graph")
    except GraphSyntaxError as e:
        assert 1 <= e.line <= max(1, len(text.splitlines())) and e.column >= 1
        assert str(e).startswith(f"g.graph:{e.line}:{e.column}: ")
    except InputError as e:
        assert "no slots" in str(e)
    else:
        assert parse_graph(str(g)).slots == tuple(
            type(s)(s.key, s.value, "<string>", i) for i, s in enumerate(g.slots, 1)
        ), "a parsed graph prints back to itself"
        assert all(math.isfinite(t.weight) for s in g.slots for t in (*s.key, *s.value))


@FUZZ
@given(graph_texts)
def test_check_answers_any_graph_file_without_a_traceback(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "g.graph"
        p.write_text(text, encoding="utf-8")
        code, _, err = cli("check", str(p))
    assert code in (0, 1, 2)
    if code == 2:
        assert str(p) in err, err


# ------------------------------------------------------------------ experiment files

GOOD = {
    "graph": "A = B\nC = D\n",
    "model": {"layers": 1, "embedding": "onehot", "temp": 0.1},
    "case": [{"name": "a", "sentence": "C A", "probe": "A", "expect": "A"}],
}

_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-3, 70),
    st.floats(),  # nan and inf included: TOML writes them
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["onehot", "random", "none", "read", "layer", "delta", "embed", "A", "B"]),
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=4),
    st.dictionaries(st.sampled_from(["assoc", "context", "mlp", "bogus"]), _scalars, max_size=3),
)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        # a TOML basic string: JSON's escapes, astral characters as themselves (TOML refuses
        # surrogate escapes), DEL escaped (TOML refuses it bare)
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_file(doc: dict) -> tuple[str, dict[str, int]]:
    """The TOML text of ``doc`` and the line of every key (``model.layers``, ``case.probe``)."""
    model = doc.get("model") if isinstance(doc.get("model"), dict) else None
    cases = doc.get("case")
    if not (isinstance(cases, list) and cases and all(isinstance(c, dict) for c in cases)):
        cases = None
    lines, at = [], {}
    for key, v in doc.items():
        if not (key == "model" and model is not None or key == "case" and cases is not None):
            at[key] = len(lines) + 1
            lines.append(f"{json.dumps(key)} = {toml_value(v)}")
    for name, tables in (("model", [model] if model is not None else []), ("case", cases or [])):
        for table in tables:
            lines.append("[model]" if name == "model" else "[[case]]")
            for k, v in table.items():
                at[f"{name}.{k}"] = len(lines) + 1
                lines.append(f"{json.dumps(k)} = {toml_value(v)}")
    return "\n".join(lines) + "\n", at


@st.composite
def mutated_experiments(draw) -> tuple[dict, str]:
    """GOOD with one key set to a generated value (or added): ``(doc, key path)``."""
    doc = json.loads(json.dumps(GOOD))
    where = draw(st.sampled_from(["top", "model", "case"]))
    if where == "top":
        key = draw(st.sampled_from(["graph", "model", "case", "grpah", "vocabulary_x"]))
        doc[key] = draw(_values)
        return doc, key
    if where == "model":
        key = draw(st.sampled_from([*MODEL_KEYS, "layer", "temp_assoc"]))
        doc["model"][key] = draw(_values)
        return doc, f"model.{key}"
    key = draw(st.sampled_from([*CASE_KEYS, "prob"]))
    doc["case"][0][key] = draw(_values)
    return doc, f"case.{key}"


@FUZZ
@given(mutated_experiments())
def test_a_bad_experiment_key_is_a_located_error(mutation):
    doc, path = mutation
    text, at = toml_file(doc)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.toml"
        p.write_text(text, encoding="utf-8")
        code, out, err = cli("run", str(p), "--json")
    assert code in (0, 1, 2), (text, err)
    if code == 2:
        key, line = path.rsplit(".", 1)[-1], at.get(path)
        located = key in err or (line is not None and f"x.toml:{line}" in err)
        assert str(p) in err and located, (text, err)
    else:  # a run: valid JSON (no bare NaN), a verdict per case
        json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
