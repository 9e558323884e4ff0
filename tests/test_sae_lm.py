"""assocmem.sae.lm: activations and spliced losses through the learned models' hooks."""

import pytest
import torch

from assocmem.errors import InputError
from assocmem.lm.gpt import GPT, GPTConfig
from assocmem.sae.lm import LMRun, activations, score_lm_sae, spliced_loss, windows
from assocmem.sae.model import SAE, SAEConfig


def _run() -> LMRun:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=2, n_head=2, n_embd=8)).eval()
    ids = torch.randint(7, (400,))
    return LMRun(m, tok=None, meta={"model_kind": "gpt"}, train_ids=ids[:300], val_ids=ids[300:])


def test_windows_and_activations():
    run = _run()
    w = windows(run.val_ids, 8, 5)
    assert w.shape == (5, 9)
    assert activations(run.model, w, "layers.1.out").shape == (40, 8)
    with pytest.raises(InputError, match="unknown hook"):
        activations(run.model, w, "layers.3.out")
    with pytest.raises(InputError, match="fewer than"):
        windows(run.val_ids[:5], 8, 1)


def test_identity_sae_recovers_all_of_the_loss():
    run = _run()
    sae = SAE(SAEConfig(8, 16, "relu"))
    eye = torch.eye(8)
    with torch.no_grad():  # relu(x) - relu(-x) = x
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    w = windows(run.val_ids, 8, 6)
    s = score_lm_sae(run, sae, "layers.1.out", w)
    assert s["ce_sae"] == pytest.approx(s["ce_clean"], abs=1e-6)
    assert s["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert s["explained_variance"] == pytest.approx(1.0)
    assert s["ce_zero"] != pytest.approx(s["ce_clean"], abs=1e-3)
    assert spliced_loss(run.model, w, "layers.1.out") == pytest.approx(s["ce_clean"])
