"""Open vocabularies: tokens with no slot, the threshold with its null slot, text cases."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from assocmem.cli import main
from assocmem.config import ModelConfig
from assocmem.embedding import Vocabulary, make_embedding
from assocmem.errors import InputError
from assocmem.experiment import (
    OPEN_MIN_SCORE,
    Case,
    Experiment,
    build_model,
    load_experiment,
    parse_experiment,
    run_case,
)
from assocmem.graph import parse_graph

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GRAPH = "IT = TROPHY + SUITCASE\nBIG = TROPHY\nSMALL = SUITCASE\n"


def toml(vocabulary: str = "open", case: str = 'sentence = "THE TROPHY IT BIG"') -> str:
    return (
        f'vocabulary = "{vocabulary}"\ngraph = """\n{GRAPH}"""\n[model]\nqk_norm = true\n'
        f'temp = 0.2\n\n[[case]]\nname = "c"\n{case}\nprobe = "IT"\nexpect = "TROPHY"\n'
    )


@pytest.mark.parametrize("name", ["trophy.toml", "anna.toml"])
def test_examples_run_and_pass(name):
    exp = load_experiment(EXAMPLES / name)
    assert exp.vocabulary == "open" and exp.unslotted  # words with no slot take part
    model = exp.build()
    for case in exp.cases:
        result = run_case(model, case)
        assert result.passed, (case.name, result.top[:3])


def test_trophy_sentences_are_text():
    exp = load_experiment(EXAMPLES / "trophy.toml")
    assert exp.cases[0].sentence[:4] == ("THE", "TROPHY", "DOES", "NOT")
    assert {"THE", "DOES", "NOT", "IN", "TOO"} <= set(exp.unslotted)


def test_a_token_with_no_slot_reads_nothing_from_the_slots():
    exp = parse_experiment(toml())
    assert exp.config.min_score == OPEN_MIN_SCORE  # the default of an open vocabulary
    model = exp.build()
    _, cache = model.run_with_cache(["THE", "TROPHY", "IT"])
    the = 0
    for bank in ("assoc", "mlp"):
        assert cache[f"layers.1.{bank}.read"][the].abs().max() == 0  # nothing, not a mean
        assert cache[f"layers.1.{bank}.weights"][the].sum() == 0
    # without the threshold the same token reads the mean of every value
    plain = build_model(exp.graph, replace(exp.config, min_score=None), tokens=exp.tokens)
    _, cache = plain.run_with_cache(["THE", "TROPHY", "IT"])
    mean = plain.V.mean(dim=0)
    assert torch.allclose(cache["layers.1.assoc.read"][the], mean)
    # known tokens still read their slot, the unknown one takes part in the context bank
    assert cache["layers.1.assoc.weights"][2].max() > 0.9
    _, cache = model.run_with_cache(["THE", "TROPHY", "IT"])
    assert cache["layers.1.context.weights"][2, the] > 0


def test_a_threshold_below_every_score_changes_no_read():
    exp = load_experiment(EXAMPLES / "masha.toml")  # a closed vocabulary: no threshold
    assert exp.config.min_score is None
    case = exp.cases[0]
    base = run_case(exp.build(), case)
    low = run_case(exp.with_model(min_score=-100.0).build(), case)
    for name in base.trace.keys():
        assert torch.allclose(base.trace[name], low.trace[name], atol=1e-12), name


def test_joint_reads_threshold_only_the_slots():
    exp = parse_experiment(toml()).with_model(joint=True)
    _, cache = exp.build().run_with_cache(["THE", "TROPHY", "IT"])
    w = cache["layers.1.joint.weights"]  # (n, m + n): slots, then positions
    m = len(exp.graph)
    assert w[0, :m].sum() == 0  # THE reads no slot
    assert w[1, m:].sum() > 0  # TROPHY still reads THE in the context part
    assert torch.allclose(w[1:].sum(dim=-1), torch.ones(2, dtype=w.dtype))


def test_closed_vocabulary_still_refuses_typos():
    with pytest.raises(InputError, match=r"<string>:\d+ \(case 'c'\): unknown token 'THE'"):
        parse_experiment(toml("graph"))
    typo = toml("graph", case='sentence = "TROPHI IT BIG"')
    with pytest.raises(InputError, match=r"'TROPHI'.*Did you mean TROPHY"):
        parse_experiment(typo)
    text_typo = toml("graph", case='text = "The trophy, it is big."')
    with pytest.raises(InputError, match="unknown token 'THE'"):
        parse_experiment(text_typo)


@pytest.mark.parametrize(
    "change, message",
    [
        (('vocabulary = "open"', 'vocabulary = "opn"'), r"vocabulary must be .*Did you mean open"),
        (('expect = "TROPHY"', 'expect = "TROPHEE"'), r"'TROPHEE' is in neither.*Did you mean"),
        (('probe = "IT"', 'text = "x"\nprobe = "IT"'), "give the sentence once"),
        (('sentence = "THE TROPHY IT BIG"', 'name2 = "x"'), "unknown key"),
        (
            ("temp = 0.2", "temp = 0.2\nmin_score = true"),
            "min_score must be an integer or a number",
        ),
    ],
)
def test_bad_open_input_is_refused(change, message):
    with pytest.raises(InputError, match=message):
        parse_experiment(toml().replace(*change))


def test_missing_sentence_is_named():
    bad = toml().replace('sentence = "THE TROPHY IT BIG"\n', "")
    with pytest.raises(InputError, match=r"missing key\(s\) sentence \(or text\)"):
        parse_experiment(bad)


def test_python_api_builds_from_a_graph_and_extra_tokens():
    graph = parse_graph(GRAPH)
    case = Case.from_text("The trophy: it is big!", probe="IT", expect="TROPHY")
    assert case.sentence == ("THE", "TROPHY", "IT", "IS", "BIG")
    exp = Experiment(
        graph=graph, config=ModelConfig(qk_norm=True), vocabulary="open", cases=(case,)
    )
    assert exp.config.min_score == OPEN_MIN_SCORE
    assert exp.tokens == (*graph.tokens, "THE", "IS")
    result = run_case(exp.build(), case)
    assert set(result.logits) == set(exp.tokens)
    model = build_model(graph, ModelConfig(min_score=0.5), tokens=["THE"], embedding="random")
    assert model.embedding.vocab.tokens[-1] == "THE"


def test_extra_tokens_do_not_move_the_others_random_vectors():
    small = make_embedding(Vocabulary(("A", "B")), "random", 16, seed=3)
    big = make_embedding(Vocabulary(("A", "X", "B")), "random", 16, seed=3)
    assert torch.equal(small.E[0], big.E[0]) and torch.equal(small.E[1], big.E[2])


def test_given_vectors_are_used_and_missing_ones_are_random():
    vecs = {"A": torch.tensor([3.0, 0.0, 4.0])}
    emb = make_embedding(Vocabulary(("A", "B")), "vectors", seed=1, vectors=vecs)
    assert emb.dim == 3
    assert torch.allclose(emb.E[0], torch.tensor([0.6, 0.0, 0.8], dtype=emb.E.dtype))
    assert torch.isclose(emb.E[1].norm(), torch.tensor(1.0, dtype=emb.E.dtype))
    with pytest.raises(InputError, match="needs vectors"):
        make_embedding(Vocabulary(("A",)), "vectors")


def test_cli_runs_the_trophy_pair(capsys):
    assert main(["run", str(EXAMPLES / "trophy.toml")]) == 0
    out, err = capsys.readouterr()
    assert "PASS  expected TROPHY" in out and "PASS  expected SUITCASE" in out
    assert "no slot for THE, DOES, NOT, IN, TOO" in err  # a typo would show up here


def test_a_batch_reads_as_its_rows_through_the_threshold():
    # the threshold makes a mask per sentence: mem must broadcast a (B, n, m) mask over a
    # batch of queries (it took the batch for heads before)
    exp = load_experiment(EXAMPLES / "trophy.toml")
    model = exp.build()
    ids = torch.stack([model.ids(c.tokens) for c in exp.cases])  # (2, n)
    batched = model(ids).logits  # (2, n, V)
    for b, c in enumerate(exp.cases):
        assert torch.allclose(batched[b], model(list(c.tokens)).logits, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.sampled_from("ABCDEF"), st.sampled_from("ABCDEF")), min_size=1, max_size=6
    ),
    sentence=st.lists(st.sampled_from("ABCDEFXYZ"), min_size=1, max_size=6),
    min_score=st.floats(0.05, 0.95),
    qk_norm=st.booleans(),
)
def test_threshold_reads_only_matching_slots(pairs, sentence, min_score, qk_norm):
    """Every weight row of a slot bank either sums to 1 over slots scoring >= min_score, or is
    all zero when none does (the null slot); tokens with no slot read nothing in layer 1."""
    graph = parse_graph("\n".join(f"{k} = {v}" for k, v in pairs))
    config = ModelConfig(layers=1, qk_norm=qk_norm, min_score=min_score)
    model = build_model(graph, config, tokens=[*sentence, "P"])
    _, cache = model.run_with_cache([*sentence, "P"])
    x = cache["embed"]  # (n, d): the layer-1 assoc read's queries
    q = torch.nn.functional.normalize(x, dim=-1) if qk_norm else x
    scores = q @ model.K_score.T  # (n, m)
    w = cache["layers.1.assoc.weights"]  # (n, m)
    readable = scores >= min_score
    assert torch.all(w[~readable] == 0)
    sums = w.sum(dim=-1)
    has = readable.any(dim=-1)
    assert torch.allclose(sums[has], torch.ones_like(sums[has]))
    assert torch.all(sums[~has] == 0)
    assert torch.all(cache["layers.1.assoc.read"][~has] == 0)
    keyless = [i for i, t in enumerate([*sentence, "P"]) if t not in {k for k, _ in pairs}]
    assert all(not has[i] for i in keyless)


def test_a_hint_names_each_near_word_once():
    # TROPHY is in the graph and in the sentence: the hint listed it twice
    text = toml().replace('expect = "TROPHY"', 'expect = "TROPHYY"', 1)
    with pytest.raises(InputError) as e:
        parse_experiment(text)
    hint = str(e.value).split("Did you mean", 1)[1]
    words = [w.strip(" ?") for w in hint.split(",")]
    assert words and len(words) == len(set(words)), hint
