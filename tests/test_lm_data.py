"""The train / val / test split: disjoint, in order, and no batch window crosses into another piece."""

from __future__ import annotations

import torch

from assocmem.lm.data import get_batch, split_three


def test_split_three_is_nanogpt_90_10_with_val_carved_from_the_90():
    s = split_three(list(range(1000)))
    assert (len(s.train), len(s.val), len(s.test)) == (810, 90, 100)
    whole = torch.cat([s.train, s.val, s.test])  # (1000,)
    assert torch.equal(whole, torch.arange(1000))  # contiguous, in order, nothing lost or shared


def test_windows_never_cross_a_boundary():
    ids = list(range(3000))  # each token is its own index
    s = split_three(ids, 0.9, 0.1)
    lo = {"train": 0, "val": len(s.train), "test": len(s.train) + len(s.val)}
    hi = {"train": lo["val"], "val": lo["test"], "test": len(ids)}
    gen = torch.Generator().manual_seed(0)
    for name in ("train", "val"):
        seen = torch.zeros(len(ids), dtype=torch.bool)
        for _ in range(200):
            x, y = get_batch(getattr(s, name), 64, 12, gen)  # (B, T) each
            for t in (x, y):
                assert int(t.min()) >= lo[name] and int(t.max()) < hi[name], name
                seen[t.flatten()] = True
        assert not seen[lo["test"] :].any()  # no test token ever reaches training or val
        assert seen[hi[name] - 1]  # the last token of the piece is reachable (as a target)
