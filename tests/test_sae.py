"""assocmem.sae: the autoencoders, their training, the planted ground truth."""

import dataclasses

import pytest
import torch

from assocmem.errors import InputError
from assocmem.sae import metrics as M
from assocmem.sae.ground_truth import PlantedSpec, planted_activations, score_planted
from assocmem.sae.model import SAE, SAEConfig, load_sae, save_sae
from assocmem.sae.train import SAETrainConfig, train_sae


def _sparse_set(n=10, d=12, active=2, N=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)  # (n, d)
    codes = torch.zeros(N, n)
    idx = torch.rand(N, n, generator=g).argsort(-1)[:, :active]  # (N, active)
    codes.scatter_(1, idx, 0.5 + torch.rand(N, active, generator=g))
    return codes @ feats, feats


@pytest.mark.parametrize("kind", ["topk", "relu"])
def test_sae_recovers_planted_directions(kind):
    x, feats = _sparse_set()
    cfg = SAEConfig(d_in=12, width=20, kind=kind, k=2, l1=0.01)
    sae, hist = train_sae(x, cfg, SAETrainConfig(steps=1500, batch_size=256))
    assert M.mmcs(sae.W_dec, feats) > 0.93  # untrained: about 0.6 (asserted below < 0.9)
    assert hist.mse[-1] < hist.mse[0] / 5
    with torch.no_grad():
        x_hat, f = sae(x)
    assert M.explained_variance(x, x_hat) > 0.9
    untrained = SAE(cfg, seed=1)
    assert M.mmcs(untrained.W_dec, feats) < 0.9  # the score is earned, not given


def test_decoder_rows_stay_unit_and_topk_keeps_k():
    x, _ = _sparse_set(N=600)
    sae, _ = train_sae(x, SAEConfig(12, 16, "topk", k=3), SAETrainConfig(steps=50, batch_size=64))
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(16), atol=1e-5)
    with torch.no_grad():
        f = sae.encode(x)
    assert int((f != 0).sum(-1).max()) <= 3


def test_aux_loss_reaches_only_dead_latents():
    sae = SAE(SAEConfig(4, 6, "topk", k=1, aux_k=2))
    pre = torch.randn(5, 6, requires_grad=True)
    dead = torch.tensor([True, False, False, True, False, False])
    sae.aux_loss(pre, torch.randn(5, 4), dead).backward()
    assert pre.grad[:, ~dead].abs().sum() == 0
    assert pre.grad[:, dead].abs().sum() > 0
    assert sae.aux_loss(pre, torch.randn(5, 4), torch.zeros(6, dtype=torch.bool)) == 0


def test_save_load_round_trip(tmp_path):
    sae = SAE(SAEConfig(4, 6, "relu", l1=0.5), seed=3)
    save_sae(sae, tmp_path / "s", {"hook": "layers.1.out"})
    back, meta = load_sae(tmp_path / "s")
    assert meta["hook"] == "layers.1.out" and back.cfg == sae.cfg
    assert torch.equal(back.W_dec, sae.W_dec)
    with pytest.raises(InputError, match="no SAE"):
        load_sae(tmp_path / "missing")


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError, match="k must lie"):
        SAEConfig(4, 6, "topk", k=7)
    with pytest.raises(InputError, match="kind"):
        SAEConfig(4, 6, "gated")
    with pytest.raises(InputError, match="activations must be"):
        train_sae(torch.randn(10, 3), SAEConfig(4, 6, k=2))


def test_planted_codes_rebuild_the_residual_exactly():
    s = planted_activations(PlantedSpec(d=16, tokens_per_dim=2, n_seqs=20, seq_len=8))
    assert s.acts.shape == (160, 16) and s.codes.shape == (160, 32)
    assert torch.allclose(s.codes @ s.features, s.acts, atol=1e-5)
    assert 1 <= s.true_l0 < 32  # sparse: a few token directions per position
    two = planted_activations(PlantedSpec(d=16, tokens_per_dim=1, n_seqs=20, seq_len=8, layers=2))
    assert torch.allclose(two.codes @ two.features, two.acts, atol=1e-5)


def test_score_planted_row():
    spec = PlantedSpec(d=16, tokens_per_dim=0.5, n_seqs=300, seq_len=8)
    train = planted_activations(spec)
    test = planted_activations(dataclasses.replace(spec, seq_seed=1, n_seqs=50))
    cfg = SAEConfig(16, 16, "topk", k=4)
    row = score_planted(train, cfg, SAETrainConfig(steps=300), test)
    assert set(row) >= {"mmcs", "mcc", "l0", "explained_variance", "dead_fraction", "mmcs_random"}
    assert row["mmcs_random"] < 0.7  # random unit directions: chance
    assert (
        row["mmcs"] > row["mmcs_random"] + 0.1
        and row["l0"] <= 4
        and row["explained_variance"] > 0.5
    )
