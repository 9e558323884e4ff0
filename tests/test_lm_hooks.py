"""Hook names of the learned models (assocmem.lm.hooks) and splicing an SAE through them."""

import pytest
import torch

from assocmem.errors import InputError
from assocmem.lm.gpt import GPT, GPTConfig
from assocmem.lm.memlm import MemLM, MemLMConfig
from assocmem.sae.model import SAE, SAEConfig

MODELS = [
    lambda: GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)),
    lambda: MemLM(
        MemLMConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, n_slots=8)
    ),
]


def _identity_sae(d: int) -> SAE:
    """``relu(x) − relu(−x) = x``: width 2d, unit decoder rows, no biases."""
    sae = SAE(SAEConfig(d, 2 * d, "relu"))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.mark.parametrize("make", MODELS)
def test_cache_names_and_plain_forward(make):
    torch.manual_seed(0)
    m = make().eval()
    idx = torch.randint(11, (3, 8))
    (logits, _), cache = m.run_with_cache(idx)
    assert list(cache) == ["embed", "layers.1.out", "layers.2.out"]
    assert cache["layers.2.out"].shape == (3, 8, 16)
    assert torch.equal(logits, m(idx)[0])
    _, only = m.run_with_cache(idx, names_filter=lambda n: n == "layers.1.out")
    assert list(only) == ["layers.1.out"]
    assert not m.h[0]._forward_hooks  # hooks are removed after the run


@pytest.mark.parametrize("make", MODELS)
@torch.no_grad()
def test_identity_sae_splice_leaves_the_loss_unchanged(make):
    torch.manual_seed(0)
    m = make().eval()
    idx, tgt = torch.randint(11, (3, 8)), torch.randint(11, (3, 8))
    sae = _identity_sae(16)
    _, clean = m(idx, tgt)
    _, spliced = m.run_with_hooks(idx, {"layers.1.out": lambda v, n: sae(v)[0]}, tgt)
    assert float(spliced) == pytest.approx(float(clean), abs=1e-6)
    _, zeroed = m.run_with_hooks(idx, {"layers.1.out": lambda v, n: torch.zeros_like(v)}, tgt)
    assert abs(float(zeroed) - float(clean)) > 1e-3  # the hook does act


def test_unknown_hook_and_bad_shape_are_input_errors():
    m = MODELS[0]().eval()
    idx = torch.randint(11, (1, 8))
    with pytest.raises(InputError, match="layers.1.out"):
        m.run_with_hooks(idx, {"layers.1.outt": lambda v, n: None})
    with pytest.raises(InputError, match="returned shape"):
        m.run_with_hooks(idx, {"embed": lambda v, n: v[..., :3]})
    assert not m.drop._forward_hooks
