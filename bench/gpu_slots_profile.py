"""Where MemLM's time goes on a GPU, and which form of the slot read is fastest there.

    python bench/gpu_slots_profile.py [--slots 256] [--json OUT.json]

Times forward + backward of the slot read as ``mem`` runs it, as an explicit
matmul-softmax-matmul, and through SDPA (on CUDA forced to each backend); then one
training step of MemLM and of GPT as the bench trains them (AdamW with its weight-decay
groups, gradient clipping). On CUDA with the gpu preset's shapes (batch 64 x 256 tokens,
d 384, 6 layers, 256 slots); on the CPU with the cpu-small preset's (batch 12 x 64 tokens,
d 128, 4 layers, 256 slots) at one thread.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from assocmem.lm import GPT, GPTConfig, MemLM, MemLMConfig
from assocmem.lm.train import TrainConfig, _optimizer
from assocmem.primitive import mem


def timed(f, n: int) -> float:
    """Best wall time of n synchronised calls, after one warm-up."""
    cuda = torch.cuda.is_available()
    f()
    best = float("inf")
    for _ in range(n):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        f()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    ap.add_argument("--slots", type=int, default=256, help="slots of the timed read and models")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    # (batch, tokens, width, slots, layers, heads, dropout): the bench's gpu / cpu-small presets
    B, T, d, L, H, p = (64, 256, 384, 6, 6, 0.2) if cuda else (12, 64, 128, 4, 4, 0.0)
    N = args.slots
    n = 10
    if not cuda:
        torch.set_num_threads(1)
    g = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(B * T, d, device=dev, generator=g, requires_grad=True)
    K = torch.randn(N, d, device=dev, generator=g, requires_grad=True)
    V = torch.randn(N, d, device=dev, generator=g, requires_grad=True)
    res: dict[str, object] = {"device": torch.cuda.get_device_name(0) if cuda else "cpu",
                              "torch": torch.__version__, "shape": [B * T, N, d]}  # fmt: skip

    def step(read):
        def f():
            out = read()
            out.square().mean().backward()

        return f

    forms = {
        "mem": lambda: mem(q[None], K, V, 20.0)[0],
        "explicit": lambda: torch.softmax(q @ K.T / 20.0, -1) @ V,
        "mem_batched_256": lambda: mem(q.view(-1, 256, d), K, V, 20.0).view(-1, d),
        "sdpa": lambda: F.scaled_dot_product_attention(
            q[None, None], K[None, None], V[None, None], scale=1 / 20.0
        )[0, 0],
    }
    if cuda:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        for name, be in (("flash", SDPBackend.FLASH_ATTENTION),
                         ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                         ("math", SDPBackend.MATH), ("cudnn", SDPBackend.CUDNN_ATTENTION)):  # fmt: skip

            def forced(be=be):
                with sdpa_kernel([be]):
                    return F.scaled_dot_product_attention(
                        q[None, None], K[None, None], V[None, None], scale=1 / 20.0
                    )[0, 0]

            forms[f"sdpa_{name}"] = forced
    times = {}
    for name, read in forms.items():
        try:
            times[name] = timed(step(read), n)
        except Exception as e:  # a backend that refuses these shapes
            times[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        print(f"slot read fwd+bwd, {name}: {times[name]}", flush=True)
    res["slot_read_fwd_bwd_s"] = times

    # one training step of each model, as the bench trains them
    cfgs = {
        "memlm": (MemLM, MemLMConfig(vocab_size=65, block_size=T, n_layer=L, n_head=H,
                                     n_embd=d, n_slots=N, dropout=p)),
        "gpt": (GPT, GPTConfig(vocab_size=65, block_size=T, n_layer=L, n_head=H, n_embd=d,
                               dropout=p)),
    }  # fmt: skip
    tc = TrainConfig()
    x = torch.randint(65, (B, T), device=dev, generator=g)
    steps = {}
    for name, (cls, cfg) in cfgs.items():
        torch.manual_seed(0)
        model = cls(cfg).to(dev).train()
        opt = _optimizer(model, tc)

        def train_step(model=model, opt=opt):
            _, loss = model(x, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()

        steps[name] = timed(train_step, n)
        print(f"train step {name}: {steps[name]:.4f} s", flush=True)
        if cuda and name == "memlm":
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                train_step()
                torch.cuda.synchronize()
            table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12)
            print(table)
            res["memlm_profile"] = table
    res["train_step_s"] = steps
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
