"""ReCL on split digits: the split, the reconstruction step, the metrics, the benchmark's shape."""

import pytest
import torch

from assocmem.errors import InputError
from assocmem.recl import (
    DigitsConfig,
    acc_bwt,
    digits_benchmark,
    load_split,
    make_mlp,
    margins,
    reconstruct,
    run_method,
    train_task,
)

TINY = DigitsConfig(tasks=((0, 1), (2, 3)), hidden=16, max_steps=40, per_task=4, rec_steps=30)


def test_the_split_is_stratified_and_disjoint():
    s = load_split(0)
    n = [len(part[1]) for part in (s.train, s.val, s.test)]
    assert sum(n) == 1797 and n[0] > 2 * n[1]
    for part in (s.train, s.val, s.test):
        assert set(part[1].tolist()) == set(range(10))
        assert part[0].min() >= -1 and part[0].max() <= 1
    rows = {tuple(r.tolist()) for r in s.train[0]}
    assert not any(tuple(r.tolist()) in rows for r in s.test[0][:50])  # no test image in train


def test_training_reaches_a_small_loss_and_the_reconstruction_lowers_its_objective():
    x, y = load_split(0).train
    keep = torch.isin(y, torch.tensor([0, 1]))
    model = make_mlp(16, seed=0)
    cfg = DigitsConfig(hidden=16, max_steps=300, per_task=6, rec_steps=60)
    assert train_task(model, x[keep][:60], y[keep][:60], cfg) < 0.05
    before = [p.detach().clone() for p in model.parameters()]
    xr, labels, hist = reconstruct(model, (0, 1), cfg, seed=0)
    assert hist[-1] < 0.95 * hist[0]  # the KKT gap (+ penalties) goes down
    assert xr.shape == (6, 64) and xr.abs().max() <= 1 and labels.shape == (6,)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_margins_are_own_minus_best_rival():
    model = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [0.5, 0.5]]))
    m = margins(model, torch.tensor([[2.0, 1.0]]), torch.tensor([0]))
    assert m.item() == pytest.approx(0.5)  # 2 - max(1, 1.5)


def test_acc_and_bwt_of_a_known_matrix():
    R = [[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.25, 0.5, 1.0]]
    acc, bwt = acc_bwt(R)
    assert acc == pytest.approx(1.75 / 3) and bwt == pytest.approx(((0.25 - 1) + (0.5 - 1)) / 2)


def test_benchmark_shape_and_bad_input():
    out = digits_benchmark([0], TINY)
    assert set(out) == {"finetune", "replay_real", "recl"}
    for v in out.values():
        assert set(v) == {"acc_mean", "acc_sd", "bwt_mean", "bwt_sd"} and v["acc_sd"] == 0
        assert 0 <= v["acc_mean"] <= 1 and -1 <= v["bwt_mean"] <= 1
    with pytest.raises(InputError, match="unknown method"):
        run_method("ewc", 0, TINY)
    with pytest.raises(InputError, match="distinct digit classes"):
        DigitsConfig(tasks=((0, 1), (1, 2)))


def test_the_docs_figures_are_the_benchmarks():
    """docs/continual.md's ReCL tables restate bench/recl_digits*.json, figure for figure."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "continual.md").read_text(encoding="utf-8")

    def cell(v):
        acc = f"{v['acc_mean']:.3f} ± {v['acc_sd']:.3f}"
        bwt = f"{v['bwt_mean']:+.3f} ± {v['bwt_sd']:.3f}".replace("-", "−").lstrip("+")
        return f"| {acc} | {bwt} |"

    for m, v in json.loads((root / "bench" / "recl_digits.json").read_text())["digits"].items():
        assert f"| {m}" in doc and cell(v) in doc, m
    sweep = json.loads((root / "bench" / "recl_digits_sweep.json").read_text())["recl_val"]
    for v in sweep.values():
        assert cell(v) in doc
