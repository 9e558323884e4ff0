"""The relation-graph language: the seed parses verbatim; every error is located."""

import pytest
from hypothesis import given, settings

from assocmem.errors import InputError
from assocmem.graph import GraphSyntaxError, Term, format_weight, load_graph, parse_graph
from tests.strategies import graphs

SEED = """ОНА = МАША + КАШУ
ВКУСНАЯ = КАШУ
ГОЛОДНАЯ = МАША
МАША = ЕСТ
ЕСТ = КАШУ
ПОТОМУ = ЧТО
"""


def test_seed_graph_parses_verbatim():
    g = parse_graph(SEED)
    assert len(g) == 6
    assert g.slots[0].key == (Term("ОНА"),) and g.slots[0].value == (Term("МАША"), Term("КАШУ"))
    assert [s.line for s in g.slots] == [1, 2, 3, 4, 5, 6]
    assert g.tokens == ("ОНА", "МАША", "КАШУ", "ВКУСНАЯ", "ГОЛОДНАЯ", "ЕСТ", "ПОТОМУ", "ЧТО")
    assert str(g) == SEED.strip()


def test_weights_sums_comments_blank_lines():
    g = parse_graph("# a comment\n\nA = 0.5*B + C   # trailing\nA + B = -2*C\nx=1e-1*y\n")
    a, b, c = g.slots
    assert a.line == 3 and a.value == (Term("B", 0.5), Term("C"))
    assert b.key == (Term("A"), Term("B")) and b.value == (Term("C", -2.0),)
    assert c.key == (Term("x"),) and c.value == (Term("y", 0.1),)
    assert str(a) == "A = 0.5*B + C"


def test_tokens_are_any_non_space_words():
    g = parse_graph("ПО-ТОМУ = 3 + ça.va!")
    assert g.slots[0].value == (Term("3"), Term("ça.va!"))


@pytest.mark.parametrize(
    "line,col,expected",
    [
        ("ОНА МАША", 9, "expected '='"),
        ("A = B = C", 7, "one '='"),
        ("A =", 4, "expected a token in the value, found end of line"),
        ("= B", 1, "expected a token in the key"),
        ("A = B +", 8, "expected a token after '+'"),
        ("A = B + + C", 9, "expected a token in the value, found '+'"),
        ("A = B C", 7, "expected '+' or the end of the value, found 'C'"),
        ("A = x*B", 5, "expected a number before '*'"),
        ("A = 0.5*", 9, "expected a token after '*'"),
        ("A = 0.5* + B", 10, "expected a token after '*'"),
        ("A + = B", 5, "expected a token after '+'"),
        ("A = 1e999*B", 5, "expected a finite weight, found '1e999'"),
    ],
)
def test_syntax_errors_are_located(line, col, expected):
    src = "ОНА = МАША + КАШУ\n" + line + "\n"
    with pytest.raises(GraphSyntaxError) as e:
        parse_graph(src, file="g.graph")
    err = e.value
    assert (err.file, err.line, err.column) == ("g.graph", 2, col)
    assert expected in err.message
    text = str(err)
    assert text.startswith(f"g.graph:2:{col}: ")
    assert text.splitlines()[1] == "    " + line
    assert text.splitlines()[2] == "    " + " " * (col - 1) + "^"


def test_first_line_offset_for_embedded_graphs():
    with pytest.raises(GraphSyntaxError) as e:
        parse_graph("A = B\nbroken\n", file="x.toml", first_line=7)
    assert e.value.line == 8


def test_empty_graph_and_files(tmp_path):
    with pytest.raises(InputError, match="no slots"):
        parse_graph("# only a comment\n")
    with pytest.raises(InputError, match="no such graph file"):
        load_graph(tmp_path / "missing.graph")
    bad = tmp_path / "latin1.graph"
    bad.write_bytes("A = é".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        load_graph(bad)
    good = tmp_path / "ok.graph"
    good.write_text(SEED, encoding="utf-8")
    assert load_graph(good).slots[5].file == str(good)


@settings(max_examples=150, deadline=None)
@given(graphs())
def test_a_printed_graph_parses_back_to_itself(g):
    """parse(print(g)) == g: what `check`, the report and the explorer show can be run again."""
    assert parse_graph(str(g)) == g


@pytest.mark.parametrize(
    "weight,text",
    [(2e6, "2e06"), (4952290.5, "4952290.5"), (1e300, "1e300"), (0.5, "0.5"), (1e-7, "1e-07")],
)
def test_large_and_precise_weights_print_exactly(weight, text):
    assert format_weight(weight) == text and float(text) == weight
    g = parse_graph(f"A = {text}*B")
    assert g.slots[0].value == (Term("B", weight),) and str(g) == f"A = {text}*B"


@pytest.mark.parametrize("text,col", [("A = 2e+06*B", 5), ("A = C + 1.5E+3*B", 9)])
def test_an_exponent_written_with_plus_is_an_error_not_a_token(text, col):
    """`2e+06*B` would lex as a token `2e` and `06*B`: say how to write the number."""
    with pytest.raises(GraphSyntaxError, match="write the exponent without it") as e:
        parse_graph(text)
    assert e.value.column == col


def test_spaced_or_non_numeric_neighbours_stay_tokens():
    assert [str(t) for t in parse_graph("A = 2e + 06*B").slots[0].value] == ["2e", "6*B"]
    assert [str(t) for t in parse_graph("A = 2e+B").slots[0].value] == ["2e", "B"]
