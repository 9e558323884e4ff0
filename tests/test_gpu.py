"""GPU checks: the same numbers on CUDA as on the CPU. CI has no GPU, so these skip there;
`bench/gpu_check.sh` runs them on a lent GPU machine."""

import numpy as np
import pytest
import torch

from assocmem import mem

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: GPU checks run only on a GPU machine"
)


def test_mem_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    q, K, V = (torch.randn(2, 4, 64, 32, generator=g) for _ in range(3))
    mask = torch.rand(64, 64, generator=g) > 0.3
    mask[5] = False  # an empty row
    for kw in (dict(), dict(mask=mask), dict(causal=True)):
        cpu = mem(q, K, V, 0.5, **{k: v for k, v in kw.items()})
        gpu = mem(
            q.cuda(),
            K.cuda(),
            V.cuda(),
            0.5,
            **{k: (v.cuda() if torch.is_tensor(v) else v) for k, v in kw.items()},
        )
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
        w_gpu = mem(
            q.cuda(),
            K.cuda(),
            V.cuda(),
            0.5,
            return_weights=True,
            **{k: (v.cuda() if torch.is_tensor(v) else v) for k, v in kw.items()},
        )[0]
        torch.testing.assert_close(w_gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    assert torch.isfinite(mem(q.cuda(), K.cuda(), V.cuda(), mask=mask.cuda())).all()


def test_bilateral_on_cuda_matches_cpu():
    from assocmem.filters import bilateral

    img = np.random.default_rng(0).random((37, 41, 3)).astype(np.float32)
    cpu = bilateral(torch.from_numpy(img), 3, 0.1, 2.0)
    gpu = bilateral(torch.from_numpy(img).cuda(), 3, 0.1, 2.0)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_wide_reads_with_autograd_take_the_explicit_path_on_cuda():
    """Width 384 > 256: SDPA's memory-efficient backward is ~18x slower than the explicit
    path there (bench/gpu_slots_profile.py); the numbers and gradients are the same."""
    from assocmem.primitive import _slow_fused_backward

    g = torch.Generator().manual_seed(1)
    q, K, V = (torch.randn(*s, generator=g) for s in ((300, 384), (64, 384), (64, 384)))
    qc, Kc, Vc = (t.cuda().requires_grad_(True) for t in (q, K, V))
    assert _slow_fused_backward(qc, Kc, Vc, plain=True)
    with torch.no_grad():
        assert not _slow_fused_backward(qc, Kc, Vc, plain=True)  # inference: fused kernel
    out = mem(qc, Kc, Vc, 20.0)
    out.square().sum().backward()
    qr, Kr, Vr = (t.clone().requires_grad_(True) for t in (q, K, V))
    ref = mem(qr, Kr, Vr, 20.0)
    ref.square().sum().backward()
    torch.testing.assert_close(out.cpu(), ref.detach(), atol=1e-4, rtol=1e-4)
    for a, b in ((qc, qr), (Kc, Kr), (Vc, Vr)):
        torch.testing.assert_close(a.grad.cpu(), b.grad, atol=1e-3, rtol=1e-3)
