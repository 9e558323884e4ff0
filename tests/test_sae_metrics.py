"""assocmem.sae.metrics on hand-made cases."""

import pytest
import torch

from assocmem.sae import metrics as M


def test_identical_dictionaries_score_one():
    d = torch.nn.functional.normalize(torch.randn(12, 8), dim=-1)
    perm = torch.randperm(12)
    assert M.mmcs(d[perm], d) == pytest.approx(1.0)
    assert M.mcc(d[perm], d) == pytest.approx(1.0)
    assert M.mcc(-d, d) == pytest.approx(1.0)  # MCC takes |cos|
    assert M.mmcs(-torch.eye(8), torch.eye(8)) == pytest.approx(0.0)  # signed: a flip is no match


def test_orthogonal_dictionaries_score_zero():
    eye = torch.eye(8)
    assert M.mmcs(eye[:4], eye[4:]) == pytest.approx(0.0)
    assert M.mcc(eye[:4], eye[4:]) == pytest.approx(0.0)


def test_mcc_is_one_to_one_where_mmcs_is_not():
    true = torch.eye(4)
    learned = torch.eye(4)[[0, 0, 0, 0]]  # one true feature learned four times
    assert M.mmcs(learned, true) == pytest.approx(0.25)
    assert M.mcc(learned, true) == pytest.approx(0.25)
    learned = torch.eye(4)[[0, 1, 1, 1]] + 0.0
    assert M.mmcs(learned, true) == pytest.approx(0.5)
    assert M.mcc(learned, true) == pytest.approx(0.5)


def test_explained_variance_l0_dead():
    x = torch.randn(100, 5)
    assert M.explained_variance(x, x) == pytest.approx(1.0)
    assert M.explained_variance(x, x.mean(0).expand_as(x)) == pytest.approx(0.0)
    codes = torch.tensor([[1.0, 0.0, 0.0], [2.0, 3.0, 0.0]])
    assert M.l0(codes) == pytest.approx(1.5)
    assert M.dead_fraction(codes) == pytest.approx(1 / 3)
    assert M.loss_recovered(ce_clean=2.0, ce_zero=4.0, ce_sae=2.5) == pytest.approx(0.75)


def test_pairing_and_svcca():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(500, 6, generator=g)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    idx, corr = M.pair_by_correlation(a, a[:, perm] * 2 + 1)
    assert torch.equal(perm[idx], torch.arange(6))
    assert corr.min() == pytest.approx(1.0, abs=1e-6)
    x = torch.randn(200, 10, generator=g)
    rot = torch.linalg.qr(torch.randn(10, 10, generator=g))[0]
    assert M.svcca(x, x @ rot) == pytest.approx(1.0, abs=1e-6)  # a rotation keeps the subspace
    assert M.svcca(x, torch.randn(200, 10, generator=g)) < 0.4  # unrelated: chance level
