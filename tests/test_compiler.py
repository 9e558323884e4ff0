"""Embeddings, the compiler and the tracr-style validator."""

import pytest
import torch

from assocmem.compiler import check_memory, compile_graph
from assocmem.embedding import Vocabulary, make_embedding
from assocmem.errors import InputError
from assocmem.graph import parse_graph


def test_onehot_and_random_embeddings():
    v = Vocabulary.from_tokens(["a", "b"], ["b", "c"])
    assert v.tokens == ("a", "b", "c")
    oh = make_embedding(v, "onehot")
    assert torch.equal(oh.E, torch.eye(3, dtype=torch.float64))
    r = make_embedding(v, "random", dim=16, seed=3)
    assert r.E.shape == (3, 16)
    torch.testing.assert_close(r.E.norm(dim=1), torch.ones(3, dtype=torch.float64))
    # a token's vector depends on (seed, token) only
    r2 = make_embedding(Vocabulary.from_tokens(["z", "c"]), "random", dim=16, seed=3)
    torch.testing.assert_close(r2.E[1], r.E[2])
    assert not torch.allclose(make_embedding(v, "random", dim=16, seed=4).E, r.E)


def test_unknown_tokens_name_the_nearest():
    v = Vocabulary.from_tokens(["МАША", "КАШУ", "ОНА"])
    with pytest.raises(InputError, match=r"'МАШУ'.*Did you mean (МАША|КАШУ)"):
        v.ids(["ОНА", "МАШУ"])
    with pytest.raises(InputError, match="unknown embedding kind"):
        make_embedding(v, "sparse")


def test_compile_weighted_sums():
    g = parse_graph("A = 0.5*B + C\nA + B = C")
    emb = make_embedding(Vocabulary.from_tokens(g.tokens), "onehot")
    m = compile_graph(g, emb)
    assert m.K.shape == (2, 3) and m.labels == ["A = 0.5*B + C", "A + B = C"]
    torch.testing.assert_close(m.K, torch.tensor([[1.0, 0, 0], [1, 1, 0]], dtype=torch.float64))
    torch.testing.assert_close(m.V, torch.tensor([[0.0, 0.5, 1], [0, 0, 1]], dtype=torch.float64))


def test_compile_refuses_tokens_outside_the_vocabulary():
    g = parse_graph("A = B\nC = D")
    emb = make_embedding(Vocabulary.from_tokens(["A", "B"]), "onehot")
    with pytest.raises(InputError, match="C, D"):
        compile_graph(g, emb)


def test_check_passes_the_seed_and_names_interference():
    seed = parse_graph(
        "ОНА = МАША + КАШУ\nВКУСНАЯ = КАШУ\nГОЛОДНАЯ = МАША\nМАША = ЕСТ\nЕСТ = КАШУ\nПОТОМУ = ЧТО"
    )
    emb = make_embedding(Vocabulary.from_tokens(seed.tokens), "onehot")
    res = check_memory(compile_graph(seed, emb), emb, 0.1)
    assert all(r.ok for r in res) and all(r.self_weight > 0.99 for r in res)
    # a stronger key on the same token captures A's read: softmax(1, 2, 0) at temp 1
    g = parse_graph("A = X\n2*A = Y\nC = Z")
    emb = make_embedding(Vocabulary.from_tokens(g.tokens), "onehot")
    res = check_memory(compile_graph(g, emb), emb, 1.0)
    assert not res[0].ok and res[0].got == ("Y",) and round(res[0].self_weight, 3) == 0.245
    assert [(s.line, round(w, 3)) for s, w in res[0].interference] == [(2, 0.665), (3, 0.09)]
    assert res[1].ok and res[2].ok
    # no temperature fixes that
    assert not check_memory(compile_graph(g, emb), emb, 0.01)[0].ok


def test_check_with_cosine_reads():
    # with dot products the longer key 2*A captures A's read; by cosine A and 2*A tie
    g = parse_graph("A = X\n2*A + B = Y\nC = Z")
    emb = make_embedding(Vocabulary.from_tokens(g.tokens), "onehot")
    m = compile_graph(g, emb)
    assert not check_memory(m, emb, 0.1)[0].ok
    cos = check_memory(m, emb, 0.1, qk_norm=True)
    assert cos[0].ok and round(cos[0].self_weight, 2) == 0.74  # softmax(1, 2/√5, 0) at 0.1


@pytest.mark.parametrize("graph", ["THE = 0*THE", "THE = 0*THE\nA = B", "X = -1*Y\nA = B"])
def test_a_slot_whose_value_is_zero_reads_back_nothing_and_passes(graph):
    g = parse_graph(graph)
    emb = make_embedding(Vocabulary.from_tokens(g.tokens), "onehot")
    (first, *rest) = check_memory(compile_graph(g, emb), emb, 0.1)
    assert first.expected == () and first.got == () and first.ok
    assert all(r.ok for r in rest)


def test_a_zero_slot_that_reads_another_slots_value_fails():
    g = parse_graph("THE = 0*THE\nTHE + A = B")  # THE's key reads half of line 2 as well
    emb = make_embedding(Vocabulary.from_tokens(g.tokens), "onehot")
    first = check_memory(compile_graph(g, emb), emb, 0.1)[0]
    assert first.got == ("B",) and not first.ok


def test_a_slot_too_large_for_the_dtype_is_located():
    g = parse_graph("A = B\nC = 1e308*D + 1e308*D")  # each weight finite, the sum not
    emb = make_embedding(Vocabulary.from_tokens(g.tokens), "onehot")
    with pytest.raises(InputError, match=r"<string>:2: the slot 'C = 1e308\*D .*' compiles to"):
        compile_graph(g, emb)


def test_a_read_back_that_overflows_is_located_not_nan():
    g = parse_graph("A = B\n1e308*C = D")  # the score 1e308 / temp is inf: the softmax NaN
    emb = make_embedding(Vocabulary.from_tokens(g.tokens), "onehot")
    with pytest.raises(InputError, match=r"<string>:2: reading the slot .* back overflowed"):
        check_memory(compile_graph(g, emb), emb, 0.05)
