"""The baselines beside nanoGPT: the rotary GPT and the Llama-style GPT train, share MemLM's rotary
code, stay within nanoGPT's parameters; MemLM's learned-position ablation trains."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

import assocmem.lm.rotary as rotary
from assocmem.errors import InputError
from assocmem.lm import GPT, GPTConfig, MemLM, MemLMConfig
from assocmem.lm.train import DataConfig, RunConfig, TrainConfig, count_params, train

ROPE = {"kind": "gpt", "pos": "rope"}
LLAMA = {"kind": "gpt", "pos": "rope", "norm": "rms", "mlp": "swiglu"}


def _run(tmp_path: Path, model: dict) -> RunConfig:
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]
    corpus = tmp_path / "toy.txt"
    corpus.write_text(" ".join(rng.choice(words) for _ in range(4000)))
    shape = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
    tr = TrainConfig(
        batch_size=8, max_iters=30, lr=3e-3, min_lr=3e-4, warmup_iters=5, eval_interval=0,
        eval_iters=4, ckpt_interval=0, threads=1,
    )  # fmt: skip
    return RunConfig(str(tmp_path / "run"), DataConfig(path=str(corpus)), {**shape, **model}, tr)


@pytest.mark.parametrize("model", [ROPE, LLAMA, {"kind": "memlm", "n_slots": 32, "pos": "learned"}])
def test_a_few_steps_lower_the_loss(tmp_path, model):
    r = train(_run(tmp_path, model), progress=False, log=lambda *_: None)
    first, last = sum(r.losses[:3]) / 3, sum(r.losses[-3:]) / 3
    assert last < first - 0.3, (first, last)
    assert r.val_loss < r.losses[0] and r.test_loss < r.losses[0]


def test_rotary_gpt_and_memlm_call_the_same_rotary_code(monkeypatch):
    calls = []
    real = rotary.rotate_half

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(rotary, "rotate_half", counted)
    idx = torch.randint(0, 65, (2, 16))  # (B, T)
    for model in (GPT(GPTConfig(pos="rope", n_layer=2)), MemLM(MemLMConfig(n_layer=2))):
        calls.clear()
        model(idx)
        assert len(calls) == 2, type(model).__name__  # one call per layer, q and k at once
    calls.clear()
    GPT(GPTConfig(n_layer=2))(idx)  # nanoGPT: learned positions, no rotary
    assert not calls


def test_rotary_changes_with_position_and_gpt_without_wpe():
    m = GPT(GPTConfig(pos="rope", n_layer=1))
    assert m.wpe is None and GPT(GPTConfig()).wpe is not None
    x = torch.randn(1, 4, 8, 32)  # (B, h, T, hd)
    same = x[:, :, :1].expand(-1, -1, 8, -1)  # one vector at every position
    r = m.h[0].attn.rope(same)  # (B, h, T, hd)
    assert torch.allclose(r[:, :, 0], same[:, :, 0])  # position 0 is not rotated
    assert not torch.allclose(r[:, :, 1], same[:, :, 1])
    assert torch.allclose(r.norm(dim=-1), same.norm(dim=-1), atol=1e-5)  # a rotation


def test_baselines_at_nanogpt_budget():
    gpt = count_params(GPT(GPTConfig()))
    for kw in ({"pos": "rope"}, {"pos": "rope", "norm": "rms", "mlp": "swiglu"}):
        n = count_params(GPT(GPTConfig(**kw)))
        assert 0.98 * gpt <= n <= gpt, (kw, n, gpt)
    assert count_params(MemLM(MemLMConfig())) < gpt


@pytest.mark.parametrize(
    "cls, bad", [(GPTConfig, {"pos": "alibi"}), (GPTConfig, {"norm": "batch"}),
                 (GPTConfig, {"mlp": "relu"}), (MemLMConfig, {"pos": "none"})],
)  # fmt: skip
def test_unknown_choice_is_refused(cls, bad):
    with pytest.raises(InputError, match=next(iter(bad))):
        cls(**bad)


@pytest.mark.parametrize("load, expect", [(0.0, 4), (2.2, 1), (40.0, 1)])
def test_threads_are_chosen_from_the_machine(monkeypatch, load, expect):
    import os

    from assocmem.lm import train as train_mod

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(4)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    n, why = train_mod.auto_threads()
    assert n == expect and "4 cores" in why and f"load {load:.1f}" in why
