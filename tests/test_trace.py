"""Hook names, caches, traces and patching."""

import pytest
import torch

from assocmem.errors import InputError
from tests.test_model import SENTENCE, build


def test_hook_names_are_stable_and_all_recorded():
    m = build(layers=2, readout_layer=3)
    names = m.hook_names
    assert names[:2] == ["embed", "embed.logits"] and names[-1] == "logits"
    assert (
        "layers.1.context.weights" in names
        and "layers.3.mlp.out" in names
        and "layers.2.out" in names
    )
    _, cache = m.run_with_cache(SENTENCE)
    assert list(cache) == names
    n, slots, vocab, d = len(SENTENCE), len(m.memory), len(m.embedding.vocab), m.embedding.dim
    assert cache["layers.1.assoc.weights"].shape == (n, slots)
    assert cache["layers.2.context.weights"].shape == (n, n)
    assert cache["layers.2.mlp.read"].shape == (n, d)
    assert cache["layers.3.context.logits"].shape == (n, vocab)
    joint = build(layers=1, joint=True)
    assert (
        "layers.1.joint.weights" in joint.hook_names
        and "layers.1.assoc.weights" not in joint.hook_names
    )
    assert joint.run_with_cache(SENTENCE)[1]["layers.1.joint.weights"].shape == (n, slots + n)


def test_cache_matches_fast_path_and_filter():
    m = build(layers=2)
    fast = m(SENTENCE)
    out, cache = m.run_with_cache(SENTENCE, names_filter=lambda name: name.endswith(".weights"))
    torch.testing.assert_close(out.logits, fast.logits, atol=1e-12, rtol=0)
    assert cache and all(k.endswith(".weights") for k in cache)


def test_trace_views():
    m = build(layers=2, readout_layer=3)
    out, tr = m.run_with_trace(SENTENCE)
    assert (
        tr.tokens == SENTENCE and tr.layers == [1, 2, 3] and tr.banks == ["assoc", "context", "mlp"]
    )
    w = tr.weights(2, "context")
    assert w.shape == (len(SENTENCE), len(SENTENCE))
    assert tr.readable("context", 3) == [0, 1, 2]
    # unreadable columns carry no weight; readable ones sum to 1 (except the empty first row)
    for i in range(len(SENTENCE)):
        cols = tr.readable("context", i)
        assert w[i, [j for j in range(len(SENTENCE)) if j not in cols]].abs().sum() == 0
        if cols:
            assert abs(float(w[i, cols].sum()) - 1) < 1e-12
    lens = tr.logit_lens(-1)
    assert [p for p, _ in lens][:2] == ["embed", "layers.1.assoc"] and len(lens) == 1 + 3 * 3
    torch.testing.assert_close(lens[-1][1], out.logits[-1])
    att = tr.attention()
    assert set(att) == {"1", "2", "3"} and len(att["2"]["context"][6]) == len(SENTENCE)


def test_identity_hooks_change_nothing():
    m = build(layers=2)
    base = m(SENTENCE).logits
    same = m.run_with_hooks(SENTENCE, {n: (lambda v, name: v) for n in m.hook_names}).logits
    torch.testing.assert_close(same, base, atol=1e-12, rtol=0)
    _, cache = m.run_with_cache(SENTENCE)
    patched = m.run_with_hooks(
        SENTENCE, {"layers.1.context.weights": lambda v, n: cache["layers.1.context.weights"]}
    )
    torch.testing.assert_close(patched.logits, base, atol=1e-12, rtol=0)


def test_patching_the_context_read():
    m = build(layers=1)
    base = m(SENTENCE).logits
    patched = m.run_with_hooks(
        SENTENCE, {"layers.1.context.read": lambda v, n: torch.zeros_like(v)}
    ).logits
    torch.testing.assert_close(patched[0], base[0])  # position 0 reads an empty context anyway
    assert (patched[1:] - base[1:]).abs().max() > 1e-3
    # with the context gone, the layer is assoc then mlp: check against that computed by hand
    _, cache = m.run_with_cache(
        SENTENCE, hooks={"layers.1.context.read": lambda v, n: torch.zeros_like(v)}
    )
    torch.testing.assert_close(cache["layers.1.context.out"], cache["layers.1.assoc.out"])
    # patched weights recombine the values: everyone reads position 0 only
    one = torch.zeros(len(SENTENCE), len(SENTENCE), dtype=torch.float64)
    one[1:, 0] = 1.0
    _, c2 = m.run_with_cache(SENTENCE, hooks={"layers.1.context.weights": lambda v, n: one})
    torch.testing.assert_close(c2["layers.1.context.read"][3], c2["embed"][0])


def test_bad_hooks_are_refused():
    m = build(layers=1)
    with pytest.raises(InputError, match="unknown hook name.*layers.1.context.weights"):
        m.run_with_hooks(SENTENCE, {"layers.1.contxt.weights": lambda v, n: v})
    with pytest.raises(InputError, match="returned shape"):
        m.run_with_hooks(SENTENCE, {"layers.1.mlp.read": lambda v, n: v[:2]})
    for run in (m.run_with_cache, m.run_with_trace):  # every way in checks the names
        with pytest.raises(InputError, match="unknown hook name.*layers.1.context.weights"):
            run(SENTENCE, hooks={"layers.1.contxt.weights": lambda v, n: v})
