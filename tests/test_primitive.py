"""The one primitive: both paths agree, masks, empty rows, top-k, gradients."""

import pytest
import torch

from assocmem import MemError, mem


def rand(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return torch.randn(shape, generator=g, dtype=dtype)


def reference(q, K, V, temp, mask=None):
    """softmax(q·Kᵀ/temp)·V with a plain loop over queries (empty rows read zero)."""
    out = torch.zeros(*q.shape[:-1], V.shape[-1], dtype=q.dtype)
    w_all = torch.zeros(*q.shape[:-1], K.shape[-2], dtype=q.dtype)
    for i in range(q.shape[-2]):
        s = (K @ q[..., i, :, None])[..., 0] / temp  # (..., m)
        if mask is not None:
            s = s.masked_fill(~mask[..., i, :], float("-inf"))
        if mask is not None and not mask[..., i, :].any():
            continue
        w = torch.softmax(s, -1)
        w_all[..., i, :] = w
        out[..., i, :] = (w[..., None] * V).sum(-2)
    return out, w_all


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_fast_and_explicit_paths_agree(dtype, tol):
    q, K, V = (
        rand(3, 2, 5, 8, dtype=dtype),
        rand(3, 2, 7, 8, dtype=dtype),
        rand(3, 2, 7, 4, dtype=dtype),
    )
    fast = mem(q, K, V, 0.7)
    slow, w = mem(q, K, V, 0.7, return_weights=True)
    ref, wref = reference(q, K, V, 0.7)
    assert fast.shape == (3, 2, 5, 4) and w.shape == (3, 2, 5, 7)
    torch.testing.assert_close(fast, slow, atol=tol, rtol=tol)
    torch.testing.assert_close(slow, ref, atol=tol, rtol=tol)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 5, dtype=dtype), atol=tol, rtol=tol)


def test_mask_and_empty_rows_read_zero_not_nan():
    q, K, V = rand(6, 4), rand(6, 4), rand(6, 3)
    mask = torch.ones(6, 6, dtype=torch.bool).tril(-1)  # row 0 reads nothing
    mask[3] = False  # a fully masked row in the middle
    fast = mem(q, K, V, 0.5, mask=mask)
    slow, w = mem(q, K, V, 0.5, mask=mask, return_weights=True)
    ref, wref = reference(q, K, V, 0.5, mask)
    assert torch.isfinite(fast).all() and torch.isfinite(w).all()
    assert fast[0].abs().max() == 0 and fast[3].abs().max() == 0 and w[3].abs().max() == 0
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(w, wref, atol=1e-10, rtol=1e-10)
    assert (w[~mask] == 0).all()


def test_empty_memory_reads_zero():
    out, w = mem(rand(5, 4), rand(0, 4), rand(0, 3), return_weights=True)
    assert out.shape == (5, 3) and w.shape == (5, 0) and out.abs().max() == 0
    assert mem(rand(5, 4), rand(0, 4), rand(0, 3)).shape == (5, 3)


def test_single_query_and_broadcast_memory():
    q, K, V = rand(4), rand(6, 4), rand(6, 2)
    assert mem(q, K, V).shape == (2,)
    qb = rand(3, 5, 4)
    torch.testing.assert_close(
        mem(qb, K, V), reference(qb, K.expand(3, 6, 4), V.expand(3, 6, 2), 1.0)[0]
    )


def test_causal_matches_explicit_mask():
    q, K, V = rand(2, 5, 4), rand(2, 5, 4), rand(2, 5, 3)
    tril = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(
        mem(q, K, V, causal=True), mem(q, K, V, mask=tril), atol=1e-10, rtol=0
    )
    torch.testing.assert_close(
        mem(q, K, V, causal=True, return_weights=True)[1],
        mem(q, K, V, mask=tril, return_weights=True)[1],
    )


def test_per_query_temperature():
    q, K, V = rand(5, 4), rand(7, 4), rand(7, 3)
    t = torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0], dtype=torch.float64)[:, None]  # (n, 1)
    fast = mem(q, K, V, t)
    slow = mem(q, K, V, t, return_weights=True)[0]
    rows = torch.stack([mem(q[i], K, V, float(t[i])) for i in range(5)])
    torch.testing.assert_close(fast, rows, atol=1e-10, rtol=0)
    torch.testing.assert_close(slow, rows, atol=1e-10, rtol=0)


def test_topk_keeps_k_slots():
    q, K, V = rand(5, 4), rand(9, 4), rand(9, 3)
    out, w = mem(q, K, V, topk=2, return_weights=True)
    assert ((w > 0).sum(-1) == 2).all()
    scores = q @ K.T
    top2 = scores.topk(2, -1).indices
    assert torch.equal(torch.sort(top2, -1).values, torch.sort(w.topk(2, -1).indices, -1).values)
    torch.testing.assert_close(out, mem(q, K, V, topk=2))


def test_low_temperature_is_a_lookup():
    K = torch.eye(4, dtype=torch.float64)
    V = torch.arange(8, dtype=torch.float64).reshape(4, 2)
    torch.testing.assert_close(mem(K[2], K, V, 1e-3), V[2])


@pytest.mark.parametrize("weights", [False, True])
def test_gradcheck(weights):
    q = rand(2, 3, 4).requires_grad_()
    K = rand(2, 5, 4).requires_grad_()
    V = rand(2, 5, 3).requires_grad_()
    mask = torch.ones(3, 5, dtype=torch.bool).tril()
    mask[0] = False  # an empty row must have zero, finite gradients

    def f(q, K, V):
        out = mem(q, K, V, 0.8, mask=mask, return_weights=weights)
        return out[0] if weights else out

    assert torch.autograd.gradcheck(f, (q, K, V))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(temp=0.0), "temp must be > 0"),
        (dict(temp=-1.0), "temp must be > 0"),
        (dict(temp=float("nan")), "temp must be > 0"),
        (dict(mask=torch.ones(5, 6)), "boolean"),
        (dict(mask=torch.ones(4, 6, dtype=torch.bool)), "does not broadcast"),
        (dict(mask=torch.ones(2, 5, 6, dtype=torch.bool)), "does not broadcast"),
        (dict(topk=0), "topk"),
    ],
)
def test_bad_arguments_are_clear(kwargs, match):
    with pytest.raises(MemError, match=match):
        mem(rand(5, 4), rand(6, 4), rand(6, 3), **kwargs)


def test_shape_errors_name_the_shapes():
    with pytest.raises(MemError, match=r"q \(5, 4\) vs K \(6, 3\)"):
        mem(rand(5, 4), rand(6, 3), rand(6, 3))
    with pytest.raises(MemError, match="different number of slots"):
        mem(rand(5, 4), rand(6, 4), rand(7, 3))


def test_many_leading_dims_with_a_batched_mask():
    q, K, V = rand(2, 3, 2, 5, 4), rand(3, 1, 7, 4), rand(3, 1, 7, 3)
    mask = rand(2, 1, 1, 5, 7) > 0  # per-batch masks, some rows possibly empty
    mask[0, 0, 0, 1] = False
    fast = mem(q, K, V, 0.3, mask=mask)
    slow = mem(q, K, V, 0.3, mask=mask, return_weights=True)[0]
    Kb, Vb, mb = K.expand(2, 3, 2, 7, 4), V.expand(2, 3, 2, 7, 3), mask.expand(2, 3, 2, 5, 7)
    assert fast.shape == (2, 3, 2, 5, 3)
    torch.testing.assert_close(fast, slow, atol=1e-10, rtol=1e-10)
    assert fast[0, :, :, 1].abs().max() == 0
    for b in range(12):  # each batch element against a per-row loop
        i0, i1, i2 = b // 6, (b // 2) % 3, b % 2
        m = mb[i0, i1, i2]
        r, _ = reference(q[i0, i1, i2], Kb[i0, i1, i2], Vb[i0, i1, i2], 0.3, m)
        torch.testing.assert_close(fast[i0, i1, i2], r, atol=1e-10, rtol=1e-10)


def test_tensor_temperature_of_any_broadcast_shape():
    q, K, V = rand(2, 5, 4), rand(2, 7, 4), rand(2, 7, 3)
    want = mem(q, K, V, 0.4, return_weights=True)[0]
    for t in (torch.tensor(0.4, dtype=torch.float64), torch.full((1, 1), 0.4, dtype=torch.float64),
              torch.full((2, 5, 7), 0.4, dtype=torch.float64)):  # fmt: skip
        torch.testing.assert_close(mem(q, K, V, t), want, atol=1e-12, rtol=0)
    heads = torch.tensor([0.1, 0.4, 2.0], dtype=torch.float64)  # (3,): one per head
    q1, K1, V1 = q[0], K[0], V[0]  # (5, 4), (7, 4), (7, 3): the temperature adds the head dim
    for t in (heads[:, None, None], heads[:, None, None].expand(3, 5, 1)):
        rows = torch.stack([mem(q1, K1, V1, float(h)) for h in heads])  # (3, 5, 3)
        torch.testing.assert_close(mem(q1, K1, V1, t), rows, atol=1e-12, rtol=0)
        slow, w = mem(q1, K1, V1, t, return_weights=True)
        torch.testing.assert_close(slow, rows, atol=1e-12, rtol=0)
        assert w.shape == (3, 5, 7)
    t = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    mem(q, K, V, t).sum().backward()  # a learned temperature gets a gradient on the fast path
    assert t.grad is not None and torch.isfinite(t.grad)


def test_leading_dims_that_do_not_broadcast_are_refused():
    with pytest.raises(MemError, match="do not broadcast"):
        mem(rand(2, 5, 4), rand(3, 6, 4), rand(3, 6, 3))


@pytest.mark.parametrize("mask_shape", [(2, 5, 7), (3, 1, 5, 7), (5, 7), (2, 1, 1, 5, 7)])
def test_masks_over_many_leading_dims_on_both_paths(mask_shape):
    q, K, V = rand(2, 3, 2, 5, 4), rand(7, 4), rand(7, 3)
    mask = rand(*mask_shape, seed=1) > -0.3
    fast = mem(q, K, V, 0.3, mask=mask)
    slow = mem(q, K, V, 0.3, mask=mask, return_weights=True)[0]
    torch.testing.assert_close(fast, slow, atol=1e-10, rtol=1e-10)
    mb = mask.expand(2, 3, 2, 5, 7)
    for i in range(2):
        for j in range(3):
            for k in range(2):
                r, _ = reference(q[i, j, k], K, V, 0.3, mb[i, j, k])
                torch.testing.assert_close(fast[i, j, k], r, atol=1e-10, rtol=1e-10)


def reference_bias(q, K, V, temp, bias):
    """softmax(q·Kᵀ/temp + bias)·V row by row; rows with no finite score read zero."""
    out = torch.zeros(*q.shape[:-1], V.shape[-1], dtype=q.dtype)
    for i in range(q.shape[-2]):
        s = (K @ q[..., i, :, None])[..., 0] / temp + bias[..., i, :]  # (..., m)
        if torch.isfinite(s).any():
            out[..., i, :] = (torch.softmax(s, -1)[..., None] * V).sum(-2)
    return out


@pytest.mark.parametrize("bias_shape", [(5, 7), (2, 1, 5, 7), (3, 5, 7)])
def test_bias_on_both_paths_matches_a_loop(bias_shape):
    q, K, V = rand(2, 3, 5, 4), rand(3, 7, 4), rand(3, 7, 3)
    bias = rand(*bias_shape, seed=2)
    bias = bias.masked_fill(bias < -1.0, float("-inf"))  # some slots unreadable
    bias[..., 1, :] = float("-inf")  # a row with nothing to read
    fast = mem(q, K, V, 0.6, bias=bias)
    slow, w = mem(q, K, V, 0.6, bias=bias, return_weights=True)
    ref = reference_bias(
        q, K.expand(2, 3, 7, 4), V.expand(2, 3, 7, 3), 0.6, bias.expand(2, 3, 5, 7)
    )
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(slow, ref, atol=1e-10, rtol=1e-10)
    assert fast[..., 1, :].abs().max() == 0 and w[..., 1, :].abs().max() == 0
    assert (w[bias.expand(2, 3, 5, 7) == float("-inf")] == 0).all()


def test_bias_is_a_score_offset_after_the_temperature():
    """A bias of log(p) multiplies the weights by p; -inf equals a False mask."""
    q, K, V = rand(4, 3), rand(6, 3), rand(6, 2)
    b = torch.zeros(4, 6, dtype=torch.float64)
    b[:, 2] = float("-inf")
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:, 2] = False
    torch.testing.assert_close(
        mem(q, K, V, 0.3, bias=b), mem(q, K, V, 0.3, mask=mask), atol=1e-12, rtol=0
    )
    w0 = mem(q, K, V, 0.3, return_weights=True)[1]
    same = torch.full((6,), 2.0, dtype=torch.float64).log()  # the same offset on every slot
    w1 = mem(q, K, V, 0.3, bias=same, return_weights=True)[1]
    torch.testing.assert_close(w1, w0, atol=1e-12, rtol=0)  # changes nothing
    b = torch.zeros(6, dtype=torch.float64)
    b[0] = 1.0
    w2 = mem(q, K, V, 0.3, bias=b, return_weights=True)[1]
    ratio = (w2[:, 0] / w2[:, 1]) / (w0[:, 0] / w0[:, 1])
    torch.testing.assert_close(
        ratio, torch.full((4,), torch.e, dtype=torch.float64), atol=1e-12, rtol=0
    )


def test_bias_with_mask_causal_topk_and_gradients():
    q, K, V = rand(5, 4), rand(5, 4), rand(5, 3)
    bias = rand(5, 5, seed=3)
    mask = rand(5, 5, seed=4) > -0.5
    tri = torch.ones(5, 5, dtype=torch.bool).tril()
    want = reference_bias(q, K, V, 0.5, bias.masked_fill(~(mask & tri), float("-inf")))
    torch.testing.assert_close(
        mem(q, K, V, 0.5, mask=mask, bias=bias, causal=True), want, atol=1e-10, rtol=0
    )
    slow = mem(q, K, V, 0.5, mask=mask, bias=bias, causal=True, return_weights=True)[0]
    torch.testing.assert_close(slow, want, atol=1e-10, rtol=0)
    top = mem(q, K, V, 0.5, bias=bias, topk=2, return_weights=True)[1]
    assert ((top > 0).sum(-1) == 2).all()
    b = bias.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda b: mem(q, K, V, 0.5, bias=b, mask=mask), (b,))


@pytest.mark.parametrize(
    "bias,match",
    [
        (torch.zeros(5, 6, dtype=torch.long), "float tensor"),
        (torch.zeros(4, 6, dtype=torch.float64), "does not broadcast"),
        (torch.full((5, 6), float("nan"), dtype=torch.float64), "NaN or \\+inf"),
        (torch.full((6,), float("inf"), dtype=torch.float64), "NaN or \\+inf"),
    ],
)
def test_bad_bias_is_clear(bias, match):
    with pytest.raises(MemError, match=match):
        mem(rand(5, 4), rand(6, 4), rand(6, 3), bias=bias)


def test_dtypes_and_devices_are_checked_before_torch_sees_them():
    f32, f64 = rand(5, 4, dtype=torch.float32), rand(6, 4)
    with pytest.raises(MemError, match="q float32, K float64, V float64"):
        mem(f32, f64, rand(6, 3))
    with pytest.raises(MemError, match="floating dtype"):
        ints = torch.ones(5, 4, dtype=torch.long)
        mem(ints, ints[:3], ints[:3])
    t64 = torch.tensor(0.5, dtype=torch.float64)  # a float64 temperature keeps a float32 read
    out = mem(f32, f32, f32, t64)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, mem(f32, f32, f32, 0.5))
    w = mem(f32, f32, f32, t64.expand(5, 5), return_weights=True)[1]
    assert w.dtype == torch.float32


@pytest.mark.parametrize("weights", [False, True])
def test_dropout_keeps_the_read_unbiased_and_zero_is_off(weights):
    q, K, V = rand(2, 5, 4), rand(2, 7, 4), rand(2, 7, 3)
    ref = mem(q, K, V, 0.7)
    torch.testing.assert_close(mem(q, K, V, 0.7, dropout=0.0), ref, atol=0, rtol=0)
    torch.manual_seed(0)
    draws = torch.stack(
        [mem(q, K, V, 0.7, dropout=0.3, return_weights=weights) for _ in range(3000)]
        if not weights
        else [mem(q, K, V, 0.7, dropout=0.3, return_weights=True)[0] for _ in range(3000)]
    )  # (N, 2, 5, 3)
    z = (draws.mean(0) - ref).abs() / (draws.std(0) / 3000**0.5)
    assert z.max() < 5  # inverted dropout: the expected read is the read without it
    assert draws.std(0).min() > 1e-3  # and it really drops
    if weights:
        w = mem(q, K, V, 0.7, dropout=0.5, return_weights=True)[1]
        assert 0.3 < (w == 0).double().mean() < 0.7  # the weights returned are the ones used


@pytest.mark.parametrize("p", [-0.1, 1.0, float("nan")])
def test_bad_dropout_is_clear(p):
    with pytest.raises(MemError, match="dropout must be in"):
        mem(rand(5, 4), rand(6, 4), rand(6, 3), dropout=p)


def test_values_that_overflow_the_read_dtype_are_refused():
    q, K, V = (
        rand(2, 4, dtype=torch.float32),
        rand(3, 4, dtype=torch.float32),
        rand(3, 2, dtype=torch.float32),
    )
    big = torch.tensor(
        [[1e39, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64
    )  # finite in float64
    with pytest.raises(MemError, match="overflow torch.float32"):
        mem(q, K, V, bias=big)
    with pytest.raises(MemError, match="NaN or \\+inf"):
        mem(q, K, V, bias=big.float())  # already +inf in float32
    with pytest.raises(MemError, match="temp 1e-50 is too small for torch.float32"):
        mem(q, K, V, torch.tensor(1e-50, dtype=torch.float64))
    with pytest.raises(MemError, match="too small for torch.float32"):
        mem(q, K, V, 1e-50)
    ok = torch.tensor([[-1e30, 0.0, 0.0]], dtype=torch.float64)  # large but representable
    assert torch.isfinite(mem(q, K, V, bias=ok)).all()


def test_differentiated_short_plain_reads_take_the_explicit_path_on_the_cpu():
    """The kernel choice (bench-measured, see _slow_fused_backward) never changes the read."""
    from assocmem.primitive import CPU_EXPLICIT_MAX_SLOTS, _slow_fused_backward

    q, K, V = rand(6, 8), rand(CPU_EXPLICIT_MAX_SLOTS, 8), rand(CPU_EXPLICIT_MAX_SLOTS, 4)
    Kg = K.clone().requires_grad_(True)
    assert _slow_fused_backward(q, Kg, V, plain=True)
    assert not _slow_fused_backward(q, Kg, V, plain=False)  # masks, biases, causal: SDPA
    assert not _slow_fused_backward(q, K, V, plain=True)  # nothing to differentiate
    long = rand(CPU_EXPLICIT_MAX_SLOTS + 1, 8).requires_grad_(True)
    assert not _slow_fused_backward(q, long, long, plain=True)
    with torch.no_grad():
        assert not _slow_fused_backward(q, Kg, V, plain=True)
    out = mem(q, Kg, V, 0.4)  # explicit
    out.sum().backward()
    torch.testing.assert_close(out.detach(), mem(q, K, V, 0.4), atol=1e-12, rtol=0)  # SDPA
    assert Kg.grad is not None and torch.isfinite(Kg.grad).all()


def test_causal_holds_on_every_path():
    """A per-score temperature and the explicit kernel choice both keep the causal order."""
    import assocmem.primitive as P

    q, K, V = rand(6, 8), rand(4, 8), rand(4, 3)  # n > m
    want, w = mem(q, K, V, 0.5, causal=True, return_weights=True)
    assert (w.triu(1) == 0).all()
    per_score = torch.full((6, 4), 0.5, dtype=torch.float64)
    torch.testing.assert_close(mem(q, K, V, per_score, causal=True), want, atol=1e-12, rtol=0)
    orig = P._slow_fused_backward
    try:
        P._slow_fused_backward = lambda *a, **k: True  # as a wide read on CUDA would choose
        qg = q.clone().requires_grad_(True)
        torch.testing.assert_close(
            mem(qg, K, V, 0.5, causal=True).detach(), want, atol=1e-12, rtol=0
        )
    finally:
        P._slow_fused_backward = orig


def test_low_precision_and_masked_reads_keep_the_fused_kernel():
    """The explicit path is chosen only for plain float32/float64 reads: in half precision
    its scores would lose what SDPA's float32 accumulation keeps."""
    from assocmem.primitive import _slow_fused_backward

    for dt in (torch.float16, torch.bfloat16):
        q = torch.randn(8, 64, dtype=dt, requires_grad=True)
        K, V = torch.randn(16, 64, dtype=dt), torch.randn(16, 64, dtype=dt)
        assert not _slow_fused_backward(q, K, V, plain=True)
        ref = mem(q.detach().double(), K.double(), V.double(), 0.05)
        assert (mem(q, K, V, 0.05).double() - ref).abs().max() < 0.05


def test_a_very_negative_bias_is_a_mask_in_half_precision():
    q, K, V = (torch.randn(3, 8, dtype=torch.float16) for _ in range(3))
    b = torch.zeros(3, 3)
    b[0, 1] = -1e9  # the usual masking idiom: below float16's range
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[0, 1] = False
    torch.testing.assert_close(mem(q, K, V, bias=b), mem(q, K, V, mask=mask))


def test_a_temperature_of_the_wrong_shape_is_a_mem_error():
    with pytest.raises(MemError, match="temp of shape"):
        mem(rand(4, 3), rand(5, 3), rand(5, 2), torch.ones(3, 1, dtype=torch.float64))


def test_a_memory_shared_by_batched_queries_reads_as_one_sequence():
    """2-D K and V with batched queries (the learned slots): the fused path reads all
    queries as one sequence; same numbers as a loop, with scalar and per-query temps."""
    q, K, V = rand(2, 3, 5, 4), rand(7, 4), rand(7, 3)
    for t, tv in (
        (0.6, 0.6),
        (1.0, 1.0),
        (torch.full((2, 3, 5, 1), 0.6, dtype=torch.float64), 0.6),
    ):
        ref = torch.stack(
            [torch.stack([reference(q[i, j], K, V, tv)[0] for j in range(3)]) for i in range(2)]
        )  # (2, 3, 5, 3)
        torch.testing.assert_close(mem(q, K, V, t), ref, atol=1e-12, rtol=0)
        torch.testing.assert_close(mem(q, K, V, t, return_weights=True)[0], ref, atol=1e-12, rtol=0)


def test_issue_reproducer_a_batched_3d_mask_reads_on_the_fast_path():
    """A 3-D mask with one leading dim was laid out for SDPA as heads while q's lead
    became the batch: a RuntimeError inside torch (issue 9)."""
    q, K, V = rand(2, 1, 4), rand(2, 3, 4), rand(2, 3, 4)
    mask = torch.ones(2, 1, 3, dtype=torch.bool)
    mask[1, 0, 0] = False
    fast = mem(q, K, V, mask=mask)
    slow = mem(q, K, V, mask=mask, return_weights=True)[0]
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=0)


def _broadcastable_shapes(shape):
    """Every shape that broadcasts to ``shape`` without adding dims: each dim kept or 1,
    and any number of leading dims dropped."""
    import itertools

    out = set()
    for keep in itertools.product((False, True), repeat=len(shape)):
        full = tuple(s if k else 1 for s, k in zip(shape, keep, strict=True))
        for drop in range(len(full) + 1):
            out.add(full[drop:])
    return sorted(out)


@pytest.mark.parametrize("lead", [(), (2,), (2, 3), (2, 3, 2)])
def test_every_broadcastable_mask_and_bias_agrees_on_both_paths(lead):
    """Masks and biases of every shape that broadcasts to the scores, over 0-3 leading
    dims: the fused path (SDPA) equals the explicit one, dead rows included."""
    n, m = 3, 5
    q, K, V = rand(*lead, n, 4), rand(*lead, m, 4), rand(*lead, m, 2)
    for i, shape in enumerate(_broadcastable_shapes((*lead, n, m))):
        mask = rand(*shape, seed=10 + i) > -0.2  # some rows possibly dead
        bias = rand(*shape, seed=50 + i)
        bias = bias.masked_fill(bias < -1.2, float("-inf"))
        for kw in (dict(mask=mask), dict(bias=bias), dict(mask=mask, bias=bias)):
            fast = mem(q, K, V, 0.7, **kw)
            slow = mem(q, K, V, 0.7, return_weights=True, **kw)[0]
            assert fast.shape == (*lead, n, 2), (shape, kw.keys())
            torch.testing.assert_close(fast, slow, atol=1e-10, rtol=0, msg=str(shape))


@pytest.mark.parametrize(
    "temp", [float("inf"), torch.tensor(float("inf")), torch.tensor([[1.0], [float("inf")]])]
)
def test_an_infinite_temperature_is_refused_with_a_hint(temp):
    with pytest.raises(MemError, match=r"temp must be finite.*q \* 0"):
        mem(rand(2, 4), rand(3, 4), rand(3, 2), temp)


def test_a_zero_query_is_the_uniform_read_the_hint_names():
    q, K, V = rand(2, 4), rand(3, 4), rand(3, 2)
    torch.testing.assert_close(mem(q * 0, K, V), V.mean(0).expand(2, 2), atol=1e-12, rtol=0)


@pytest.mark.parametrize("topk", [0, -1, 1.5, True])
def test_a_bad_topk_is_refused_before_any_path(topk):
    with pytest.raises(MemError, match="topk must be an integer >= 1"):
        mem(rand(2, 4), rand(3, 4), rand(3, 2), topk=topk)
    with pytest.raises(MemError, match="topk"):  # also for an empty memory
        mem(rand(2, 4), rand(0, 4), rand(0, 2), topk=topk)
