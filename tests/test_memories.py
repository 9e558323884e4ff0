"""Memories built from data: association graphs from toy vectors, a toy corpus and a tiny MemLM."""

from __future__ import annotations

import math

import pytest
import torch

from assocmem.compiler import check_memory, compile_graph
from assocmem.embedding import Vocabulary, make_embedding
from assocmem.errors import InputError
from assocmem.graph import load_graph, parse_graph
from assocmem.memories import association_graph, graph_token, write_graph
from assocmem.memories.cooccur import Cooccurrence
from assocmem.memories.vectors import WordVectors, load_navec, navec_path, vector_graph


def _weights(graph, key):
    slot = next(s for s in graph.slots if s.key[0].token == key)
    return {t.token: t.weight for t in slot.value}


def test_association_graph_keeps_the_strongest_partners_above_the_threshold():
    S = torch.tensor([[9.0, 0.5, 0.2, 0.05], [0.5, 9.0, 0.0, 0.3], [0.2, 0.0, 9.0, 0.0],
                      [0.05, 0.3, 0.0, 9.0]])  # fmt: skip
    g = association_graph(["A", "B", "C", "D"], S, top_k=2, threshold=0.1)
    assert _weights(g, "A") == {"B": 0.5, "C": 0.2}  # D (0.05) under the threshold; not itself
    assert _weights(g, "B") == {"A": 0.5, "D": 0.3}
    assert _weights(g, "C") == {"A": 0.2}
    assert _weights(g, "D") == {"B": 0.3}
    assert association_graph(["A", "B"], torch.zeros(2, 2)) is None  # nothing associated


def test_association_graph_round_trips_through_a_graph_file_that_checks(tmp_path):
    S = torch.tensor([[0.0, 0.8, 0.1], [0.8, 0.0, 0.4], [0.1, 0.4, 0.0]])
    g = association_graph(["КОТ", "КОШКА", "СТОЛ"], S, top_k=1)
    path = write_graph(g, tmp_path / "toy.graph", header="built from toy scores")
    back = load_graph(path)
    assert [str(s) for s in back.slots] == [str(s) for s in g.slots]
    assert path.read_text(encoding="utf-8").startswith("# built from toy scores\n")
    emb = make_embedding(Vocabulary.from_tokens(back.tokens))
    assert all(r.ok for r in check_memory(compile_graph(back, emb), emb, 0.1))


def test_graph_tokens_refuse_operators_spaces_and_numbers():
    assert graph_token("КАША") and graph_token("нью-йорк")
    assert not any(graph_token(w) for w in ("", "a b", "a=b", "x+y", "2", "1e5", "#"))
    with pytest.raises(InputError, match="not usable as graph tokens"):
        association_graph(["A", "21"], torch.zeros(2, 2))


def test_vector_graph_from_toy_vectors_and_unknown_words():
    vectors = WordVectors.from_dict({"кот": [1, 0.2, 0], "кошка": [1, 0.3, 0], "стол": [0, 0, 1]})
    S = vectors.scores(["Кот", "кошка", "стол", "ёж"])  # looked up in lower case; ёж unknown
    assert S[0, 1] == pytest.approx((1 + 0.06) / math.sqrt(1.04 * 1.09))
    assert S[0, 2] == 0 and S[3].abs().sum() == 0
    g = vector_graph(["кот", "кошка", "стол"], vectors, threshold=0.5)
    assert str(g) == "кот = 0.996*кошка\nкошка = 0.996*кот"  # 1.06 / sqrt(1.04 · 1.09)


def test_navec_from_the_natasha_package():
    try:
        path = navec_path()
    except InputError as e:
        pytest.skip(f"navec embeddings not installed: {e}")
    vectors = load_navec(path)
    S = vectors.scores(["кошка", "кот", "стол"])
    assert S[0, 1] > S[0, 2]  # a cat is nearer a tomcat than a table
    with pytest.raises(InputError, match="no such navec"):
        load_navec(path.parent / "absent.tar")


def test_cooccurrence_counts_within_the_window_and_not_across_paragraphs():
    paras = [["a", "b", "c", "a"], ["b", "x", "x", "x", "a"]]
    co = Cooccurrence.from_paragraphs(paras, window=2, min_count=1)
    assert co.count("a") == 3 and co.n_words == 9
    # a@0: b@1, c@2 · a@3: b@1, c@2 · paragraph 2: a@4 and b@0 are 4 apart
    assert co.pair_count("a", "b") == 2 and co.pair_count("b", "a") == 2
    assert co.pair_count("a", "c") == 2
    assert co.pair_count("b", "x") == 2  # b@0 reaches x@1, x@2
    assert co.pair_count("a", "a") == 0  # the two a's of paragraph 1 are 3 apart
    c, N, w = 2, 9, 2
    pmi = math.log(c * N / (3 * 1 * 2 * w))  # c(a) = 3, c(c) = 1: log 1.5 > 0
    assert co.npmi("a", "c") == pytest.approx(pmi / -math.log(c / (N * 2 * w)))
    assert co.npmi("a", "b") == 0.0  # log(2·9 / (3·2·4)) < 0: only the positive part
    strict = Cooccurrence.from_paragraphs(paras, window=2, min_count=3)
    assert strict.npmi("a", "c") == 0.0  # seen twice: under min_count


def test_cooccurrence_graph_links_words_that_meet():
    paras = [["маша", "есть", "каша"]] * 5 + [["стол", "стоять"]] * 5
    co = Cooccurrence.from_paragraphs(paras, window=2)
    g = co.graph(["маша", "каша", "стол"], threshold=0.0)
    assert "каша" in _weights(g, "маша") and "стол" not in _weights(g, "маша")
    assert co.scores(["маша", "стол"])[0, 1] == 0
    with pytest.raises(InputError, match="no words"):
        Cooccurrence.from_paragraphs([[]])


def test_learned_graph_from_a_memlm_checkpoint(tmp_path):
    from assocmem.lm.train import DataConfig, RunConfig, TrainConfig, train
    from assocmem.memories.learned import learned_graph

    text = tmp_path / "t.txt"
    text.write_text("маша ест кашу. " * 200, encoding="utf-8")
    cfg = RunConfig(
        out_dir=str(tmp_path / "run"),
        data=DataConfig(path=str(text), tokenizer="char"),
        model={
            "kind": "memlm",
            "n_layer": 1,
            "n_head": 1,
            "n_embd": 16,
            "block_size": 8,
            "n_slots": 6,
        },  # fmt: skip
        train=TrainConfig(batch_size=4, max_iters=3, eval_interval=0, eval_iters=1, threads=1),
    )
    train(cfg, progress=False, log=lambda *_: None)
    g = learned_graph(tmp_path / "run", layer=0, bank="assoc")
    assert len(g) == 6  # one line per slot of the bank
    again = parse_graph(str(g))  # a person's edit reads back
    assert [str(s) for s in again.slots] == [str(s) for s in g.slots]
    with pytest.raises(InputError, match="no slots"):
        learned_graph(tmp_path / "run", layer=5)
