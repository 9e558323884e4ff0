"""MemTransformer against a slow reference with plain loops over positions."""

import itertools

import pytest
import torch

from assocmem.compiler import compile_graph
from assocmem.embedding import Vocabulary, make_embedding
from assocmem.errors import InputError
from assocmem.graph import parse_graph
from assocmem.model import MemTransformer, ModelConfig

GRAPH = parse_graph(
    "ОНА = МАША + КАШУ\nВКУСНАЯ = КАШУ\nГОЛОДНАЯ = МАША\nМАША = ЕСТ\nЕСТ = КАШУ\nПОТОМУ = ЧТО\n0.5*ЧТО + ОНА = 2*ВКУСНАЯ"
)
SENTENCE = "МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ГОЛОДНАЯ ОНА".split()


def softmax_read(q, K, V, t):
    """One query, written out: Σ_j exp(q·k_j/t) v_j / Σ_j exp(q·k_j/t)."""
    if len(K) == 0:
        return torch.zeros_like(q)
    s = torch.stack([q @ k for k in K]) / t
    w = torch.exp(s - s.max())
    return sum(wj * v for wj, v in zip(w / w.sum(), V, strict=True))


def reference(model: MemTransformer, tokens):
    cfg, E, K, V = model.config, model.E, model.K, model.V
    x0 = [E[model.embedding.vocab.index[t]] for t in tokens]
    xs = list(x0)
    norm = (lambda v: v / v.norm()) if cfg.norm != "none" else (lambda v: v)
    unit = (lambda v: v / v.norm()) if cfg.qk_norm else (lambda v: v)  # cosine-scored reads
    for layer in range(1, cfg.depth + 1):
        prev = list(x0) if cfg.context_source == "embed" else list(xs)
        new = []
        for i, x in enumerate(xs):  # one position at a time
            ctx = prev[: i + 1] if cfg.context_self else prev[:i]
            ta, tc, tm = (cfg.temp(b, layer) for b in ("assoc", "context", "mlp"))
            if cfg.joint:
                keys = [unit(k) / ta for k in K] + [unit(c) / tc for c in ctx]
                x = x + softmax_read(unit(x), keys, list(V) + ctx, 1.0)
                x = norm(x) if cfg.norm == "read" else x
            else:
                x = x + softmax_read(unit(x), [unit(k) for k in K], V, ta)
                x = norm(x) if cfg.norm == "read" else x
                x = x + softmax_read(unit(x), [unit(c) for c in ctx], ctx, tc)
                x = norm(x) if cfg.norm == "read" else x
            x = x + softmax_read(unit(x), [unit(v) for v in V], K, tm)
            x = norm(x) if cfg.norm != "none" else x
            new.append(x)
        xs = new
        if layer == cfg.readout_at:
            out = xs
    v = [o - a for o, a in zip(out, x0, strict=True)] if cfg.readout == "delta" else out
    return torch.stack([vi @ E.T for vi in v])


def build(kind="onehot", **cfg):
    emb = make_embedding(Vocabulary.from_tokens(GRAPH.tokens), kind, dim=24, seed=1)
    return MemTransformer(compile_graph(GRAPH, emb), emb, ModelConfig(**cfg))


OPTIONS = [
    dict(norm=n, readout=r, context_self=c, joint=j, qk_norm=q)
    for n, r, c, j, q in itertools.product(
        ["none", "read", "layer"],
        ["residual", "delta"],
        [False, True],
        [False, True],
        [False, True],
    )
] + [dict(context_source="embed"), dict(context_source="embed", joint=True, qk_norm=True)]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_model_matches_loop_reference(opts):
    for kind in ("onehot", "random"):
        model = build(
            kind,
            layers=2,
            readout_layer=3,
            temp_assoc=0.07,
            temp_context=(0.3, 0.6, 0.9),
            temp_mlp=1.5,
            **opts,
        )
        ours = model(SENTENCE).logits  # (n, V)
        ref = reference(model, SENTENCE)
        torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-10)


def test_batched_input_equals_one_by_one():
    model = build(layers=2)
    ids = torch.stack([model.ids(SENTENCE), model.ids(list(reversed(SENTENCE)))])  # (2, n)
    both = model(ids).logits  # (2, n, V)
    torch.testing.assert_close(both[0], model(ids[0]).logits)
    torch.testing.assert_close(both[1], model(ids[1]).logits)


def test_readout_layer_and_depth():
    m = build(layers=2, readout_layer=3)
    assert m.config.depth == 3 and m.config.readout_at == 3
    _, cache = m.run_with_cache(SENTENCE)
    torch.testing.assert_close(cache["logits"], cache["layers.3.mlp.logits"])
    m2 = build(layers=3, readout_layer=1)
    _, cache = m2.run_with_cache(SENTENCE)
    torch.testing.assert_close(cache["logits"], cache["layers.1.mlp.logits"])
    assert "layers.3.out" in cache


def test_first_position_reads_an_empty_context():
    m = build(layers=2)
    _, cache = m.run_with_cache(SENTENCE)
    assert cache["layers.1.context.read"][0].abs().max() == 0
    assert cache["layers.1.context.weights"][0].abs().max() == 0
    assert torch.isfinite(cache["logits"]).all()


@pytest.mark.parametrize(
    "cfg,match",
    [
        (dict(layers=0), "layers must be between 1 and 64"),
        (dict(readout_layer=65), "readout_layer must be between 1 and 64"),
        (dict(temp_mlp=float("inf")), "mlp bank must be > 0 and finite"),
        (dict(temp_assoc=0.0), "assoc bank must be > 0"),
        (dict(temp_context=-1.0, temp_mlp=0.0), r"context bank.*mlp bank"),
        (dict(temp_mlp=(1.0,), layers=2), "lists 1 layer"),
        (dict(norm="batch"), "norm must be"),
        (dict(readout="probe"), "readout must be"),
    ],
)
def test_config_errors_name_every_offender(cfg, match):
    with pytest.raises(InputError, match=match):
        ModelConfig(**cfg)


def test_empty_input_is_refused():
    with pytest.raises(InputError, match="empty"):
        build()([])


def test_bad_token_ids_are_refused():
    m = build()
    size = len(m.embedding.vocab.tokens)
    for ids, match in (
        (torch.tensor([0, -1]), "must lie in 0.."),  # -1 would read the last token
        (torch.tensor([[0, size]]), "must lie in 0.."),
        (torch.tensor([0.0, 1.0]), "must be integers"),
    ):
        with pytest.raises(InputError, match=match):
            m(ids)
    vocab = m.embedding.vocab.tokens  # the ends of the range are fine
    torch.testing.assert_close(
        m(torch.tensor([0, size - 1])).logits, m([vocab[0], vocab[size - 1]]).logits
    )


def test_model_moves_to_another_dtype_and_device():
    m = build(layers=2)
    ref = m(SENTENCE).logits
    m32 = build(layers=2).to(torch.float32)
    torch.testing.assert_close(m32(SENTENCE).logits, ref.float(), atol=1e-4, rtol=1e-5)
    if torch.cuda.is_available():  # CI has no GPU; the device check script runs this there
        out = build(layers=2).cuda()(SENTENCE).logits
        torch.testing.assert_close(out.cpu(), ref, atol=1e-8, rtol=1e-8)
