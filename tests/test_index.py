"""Large memories: chunked exact top-k, faiss IVF/HNSW, the read over retrieved slots, save/load."""

from __future__ import annotations

import pytest
import torch

from assocmem import mem
from assocmem.errors import InputError
from assocmem.index import IndexConfig, KeyIndex, LargeMemory, exact_topk

faiss = pytest.importorskip("faiss")


def data(m=1500, d=12, dv=5, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(m, d, generator=g),
        torch.randn(m, dv, generator=g),
        torch.randn(n, d, generator=g),
    )


KINDS = {
    "exact": IndexConfig(budget=997),  # many ragged chunks
    "ivf": IndexConfig(kind="ivf", nlist=16, nprobe=16, train_size=1500),  # every list probed
    "hnsw": IndexConfig(kind="hnsw", hnsw_m=16, ef_search=1500),  # a beam as wide as the memory
}


def full_read(q, K, V, k, temp):
    """Today's read: every score, all but the k best masked; weights (n, m)."""
    return mem(q.double(), K.double(), V.double(), temp, topk=k, return_weights=True)


def test_chunked_topk_equals_the_full_scores():
    K, _, q = data()
    for budget in (1, 97, 40 * 1500, 1 << 22):
        s, i = exact_topk(q, K, 7, budget)
        want = (q @ K.T).topk(7, dim=1)
        assert torch.equal(i, want.indices)
        torch.testing.assert_close(s, want.values, atol=1e-5, rtol=0)
    s, i = exact_topk(q, K[:5], 7)  # k larger than the memory: all of it
    assert i.shape == (40, 5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_read_over_retrieved_slots_equals_the_full_read(kind):
    """Output and weights (scattered back to every slot) as mem(..., topk=k) over all slots;
    for IVF and HNSW with a search effort that covers the whole memory."""
    K, V, q = data()
    memo = LargeMemory(K, V, KINDS[kind])
    out, (w, ids) = memo.read(q.double(), 8, 0.6, return_weights=True)
    want, wfull = full_read(q, K, V, 8, 0.6)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    scattered = torch.zeros_like(wfull).scatter(1, ids, w)
    torch.testing.assert_close(scattered, wfull, atol=1e-6, rtol=0)
    torch.testing.assert_close(memo.read(q.double(), 8, 0.6), want, atol=1e-5, rtol=0)  # fused path


def test_a_small_search_effort_is_approximate_and_recall_grows_with_it():
    K, _, q = data(m=3000, d=32, n=100)
    ref = exact_topk(q, K, 10)[1]
    ix = KeyIndex(K, IndexConfig(kind="ivf", nlist=64, train_size=3000))
    hits = []
    for nprobe in (1, 8, 64):
        ix.set_search(nprobe=nprobe)
        got = ix.search(q, 10)
        hits.append((got[:, :, None] == ref[:, None]).any(-1).float().mean().item())
    assert hits[0] < 0.9 and hits[0] <= hits[1] <= hits[2] == 1.0


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_and_load_round_trip(kind, tmp_path):
    K, V, q = data()
    memo = LargeMemory(K, V, KINDS[kind], meta={"note": "x"})
    memo.save(tmp_path / "m")
    back = LargeMemory.load(tmp_path / "m")
    assert back.index.config == memo.index.config and back.meta == {"note": "x"}
    assert torch.equal(back.K, memo.K) and torch.equal(back.V, memo.V)
    assert torch.equal(back.index.search(q, 9), memo.index.search(q, 9))
    torch.testing.assert_close(back.read(q, 9), memo.read(q, 9), atol=0, rtol=0)


def test_a_damaged_save_is_refused(tmp_path):
    K, V, _ = data()
    LargeMemory(K, V, KINDS["ivf"]).save(tmp_path / "m")
    raw = bytearray((tmp_path / "m" / "index.faiss").read_bytes())
    raw[len(raw) // 2] ^= 1
    (tmp_path / "m" / "index.faiss").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checksum"):
        LargeMemory.load(tmp_path / "m")
    with pytest.raises(InputError, match="no readable large memory"):
        LargeMemory.load(tmp_path / "nothing")


@pytest.mark.parametrize("kind", list(KINDS))
def test_appending_slots_needs_no_rebuild(kind):
    """New slots get the next ids and are found; the read equals one over the whole memory."""
    K, V, q = data(m=1600)
    memo = LargeMemory(K[:1500], V[:1500], KINDS[kind])
    before = memo.index.faiss_index
    memo.add(K[1500:], V[1500:])
    assert memo.index.faiss_index is before and memo.index.size == 1600
    ids = memo.index.search(q, 8)
    assert torch.equal(ids, exact_topk(q, K, 8)[1]) and (ids >= 1500).any()  # new ones found
    want, _ = full_read(q, K, V, 8, 0.6)
    torch.testing.assert_close(memo.read(q.double(), 8, 0.6), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_excluded_stretch_is_never_read(kind):
    K, _, q = data()
    ix = KeyIndex(K, KINDS[kind])
    ids = ix.search(q, 8, exclude=(100, 1400))
    assert not ((ids >= 100) & (ids < 1400)).any()
    keep = torch.cat([torch.arange(100), torch.arange(1400, 1500)])
    want = keep[exact_topk(q, K[keep], 8)[1]]
    assert torch.equal(ids, want)


@pytest.mark.parametrize(
    "kw", [dict(kind="flat"), dict(nlist=0), dict(nprobe=2.5), dict(ef_search=True)]
)
def test_bad_index_settings_are_input_errors(kw):
    with pytest.raises(InputError):
        IndexConfig(**kw)


def test_bad_shapes_are_input_errors():
    K, V, _ = data()
    with pytest.raises(InputError, match="one row per key"):
        LargeMemory(K, V[:10])
    memo = LargeMemory(K, V)
    with pytest.raises(InputError, match="new keys"):
        memo.add(torch.randn(3, 5), torch.randn(3, 5))
    with pytest.raises(InputError, match="needs at least"):
        KeyIndex(K[:10], IndexConfig(kind="ivf", nlist=16))
