"""kNN-LM: windows, hidden states, the datastore read and the interpolation."""

from __future__ import annotations

import math
import re

import pytest
import torch

from assocmem.cli import main
from assocmem.errors import InputError
from assocmem.index import IndexConfig
from assocmem.lm.gpt import GPT, GPTConfig
from assocmem.lm.knn import (
    KNNConfig,
    build_datastore,
    evaluate_knn,
    hidden_states,
    interpolated_nll,
    knn_target_probs,
    readout_logp,
    windows,
)
from assocmem.lm.memlm import MemLM, MemLMConfig

pytest.importorskip("faiss")


def models():
    torch.manual_seed(0)
    return [
        MemLM(
            MemLMConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16, n_slots=8)
        ).eval(),
        GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval(),
    ]


def text(n=600, seed=0):
    return torch.randint(0, 11, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n,block", [(5, 16), (16, 16), (17, 16), (100, 16), (101, 7), (64, 2)])
def test_windows_cover_every_position_once_with_half_a_block_of_context(n, block):
    seen = []
    for s, o in windows(n, block):
        assert 0 <= s and s + min(block, n) <= n
        assert s == 0 or o >= block // 2  # context of at least half a block
        seen += range(s + o, s + min(block, n))
    assert seen == list(range(n))


@pytest.mark.parametrize("model", models(), ids=["memlm", "gpt"])
def test_hidden_states_give_the_models_own_loss(model):
    ids = text(200)
    h, logp, y = (torch.cat(t) for t in zip(*hidden_states(model, ids, batch=3), strict=True))
    assert h.shape == (199, 16) and torch.equal(y, ids[1:])
    # the first window's positions are the model's plain forward pass
    _, loss = model(ids[None, :16], ids[None, 1:17])
    torch.testing.assert_close(-logp[:16].mean(), loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(logp, readout_logp(model, h, y), atol=1e-5, rtol=0)


def test_knn_probability_is_a_softmax_over_the_k_best_slots():
    model = models()[0]
    store = build_datastore(model, text(400), IndexConfig())
    h, _, y = (torch.cat(t) for t in zip(*hidden_states(model, text(60, seed=1)), strict=True))
    p = knn_target_probs(store, h, y, [5, 20], [0.5, 2.0])
    for (k, t), got in p.items():
        s = h @ store.K.T  # (n, m) all scores
        top = s.topk(k, dim=1)
        w = torch.softmax(top.values / t, -1)  # (n, k)
        want = (w * (store.V[top.indices, 0] == y[:, None])).sum(-1)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        assert ((got >= 0) & (got <= 1 + 1e-6)).all()


@pytest.mark.parametrize("model", models(), ids=["memlm", "gpt"])
def test_lambda_zero_is_the_plain_model(model):
    store = build_datastore(model, text(400), IndexConfig(kind="ivf", nlist=8, train_size=400))
    val = text(120, seed=2)
    r = evaluate_knn(model, store, val, KNNConfig(k=8, temp=1.0, lam=0.0), lams=(0.0, 0.5))
    assert r.loss_knn == r.loss == r.curve[0][1] and r.positions == 119
    assert math.isfinite(r.loss) and r.tokens_per_s > 0 and r.tokens_per_s_knn > 0
    half = evaluate_knn(model, store, val, KNNConfig(k=8, lam=0.5))
    assert half.loss_knn != r.loss and half.loss_knn == r.curve[1][1]


def test_interpolation_is_the_mixture():
    logp = torch.log(torch.tensor([0.2, 0.5, 1e-30]))
    pk = torch.tensor([0.6, 0.0, 1.0])
    got = interpolated_nll(logp, pk, 0.3)
    want = -torch.log(0.3 * pk + 0.7 * logp.exp())
    torch.testing.assert_close(got, want)
    assert torch.equal(interpolated_nll(logp, pk, 0.0), -logp)


@pytest.mark.parametrize(
    "kw", [dict(k=0), dict(temp=0.0), dict(temp=math.inf), dict(lam=1.5), dict(lam=-0.1)]
)
def test_bad_knn_settings_are_input_errors(kw):
    with pytest.raises(InputError):
        KNNConfig(**kw)


def test_cli_build_and_eval(tmp_path, capsys):
    from assocmem.lm.train import train
    from tests.test_lm_train import _cfg

    cfg = _cfg(tmp_path, "memlm", max_iters=3)
    train(cfg, progress=False, log=lambda *_: None)
    store = tmp_path / "store"
    assert main(["knn", "build", cfg.out_dir, str(store), "--index", "ivf", "--nlist", "16"]) == 0
    assert "slots of dimension 32" in " ".join(capsys.readouterr().out.split())
    assert main(["knn", "eval", cfg.out_dir, str(store), "--k", "8", "--lam", "0"]) == 0
    out = capsys.readouterr().out
    assert "model + kNN" in out
    losses = re.findall(r"\b\d\.\d{4}\b", out)  # the two losses, 4 decimals
    assert len(losses) == 2 and losses[0] == losses[1]  # λ = 0: the same loss
    assert main(["knn", "eval", cfg.out_dir, str(store), "--lam", "2"]) == 2
    assert main(["knn", "build", cfg.out_dir, str(tmp_path / "s2"), "--index", "flat"]) == 2
