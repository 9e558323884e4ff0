"""Hypothesis strategies shared by the fuzz tests: relation graphs and their pieces."""

from hypothesis import strategies as st

from assocmem.graph import Graph, Slot, Term

# A token is any run of non-space characters other than the operators (graph.py's lexer).
# Spaces are Z* or control characters; lone surrogates (Cs) cannot be written to a file.
token_chars = st.characters(
    blacklist_categories=("Cs", "Zs", "Zl", "Zp"), blacklist_characters="=+*#"
).filter(lambda c: not c.isspace())
tokens = st.text(token_chars, min_size=1, max_size=6)
weights = st.one_of(
    st.just(1.0),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**9), 10**9).map(float),
)
terms = st.builds(Term, tokens, weights)
sides = st.lists(terms, min_size=1, max_size=3).map(tuple)


@st.composite
def graphs(draw, max_slots: int = 6) -> Graph:
    """A graph as parse_graph would return it: slots on lines 1..n of ``<string>``."""
    pairs = draw(st.lists(st.tuples(sides, sides), min_size=1, max_size=max_slots))
    return Graph(
        slots=tuple(Slot(key=k, value=v, line=i) for i, (k, v) in enumerate(pairs, 1)),
    )
