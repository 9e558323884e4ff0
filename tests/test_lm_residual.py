"""The residual options (LAuReL, PID) of both learned models: they train, save and load; their
neutral settings are the plain model exactly; bad keys are named."""

from __future__ import annotations

import importlib.util
import json
import typing
from pathlib import Path

import pytest
import torch

from assocmem.lm.gpt import GPT, GPTConfig
from assocmem.lm.memlm import MemLM, MemLMConfig
from assocmem.lm.residual import ResidualKind
from assocmem.lm.train import load_model, train
from assocmem.settings import SettingsError, parse
from tests.test_lm_train import _cfg

KINDS = typing.get_args(ResidualKind)
SMALL = {"n_layer": 3, "n_head": 2, "n_embd": 32, "block_size": 16, "vocab_size": 20}
MODELS = {"memlm": (MemLM, MemLMConfig), "gpt": (GPT, GPTConfig)}


def _model(kind: str, seed: int = 0, **kw) -> torch.nn.Module:
    cls, cfg = MODELS[kind]
    extra = {"n_slots": 24} if kind == "memlm" else {}
    torch.manual_seed(seed)
    return cls(cfg(**SMALL, **extra, **kw)).eval()


def _logits(m: torch.nn.Module) -> torch.Tensor:
    idx = torch.randint(
        0, SMALL["vocab_size"], (3, SMALL["block_size"]), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        return m(idx)[0]


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("residual", [r for r in KINDS if r != "plain"])
def test_every_residual_trains_and_saves_and_loads(tmp_path, kind, residual):
    cfg = _cfg(tmp_path, kind, max_iters=25)
    cfg = type(cfg)(**{**cfg.__dict__, "model": {**cfg.model, "residual": residual}})
    r = train(cfg, progress=False, log=lambda *_: None)
    first, last = sum(r.losses[:3]) / 3, sum(r.losses[-3:]) / 3
    assert last < first - 0.3, (residual, first, last)
    model, tok, meta = load_model(cfg.out_dir)
    assert model.config.residual == residual
    x = torch.tensor([tok.encode("the cat sat on")])
    with torch.no_grad():
        logits, _ = model(x)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("kind", MODELS)
def test_laurel_rw_at_alpha_beta_one_is_the_plain_model(kind):
    plain, rw = _model(kind), _model(kind, residual="laurel-rw")
    assert torch.equal(_logits(plain), _logits(rw))  # same init: RW adds no random draws
    for p in (p for n, p in rw.named_parameters() if n.endswith(("alpha", "beta"))):
        with torch.no_grad():
            p.fill_(2.0)  # a different mix must change the output: the test can fail
    assert not torch.allclose(_logits(plain), _logits(rw))


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("residual", ["pid", "p-only"])
def test_pid_with_zero_gains_is_the_plain_model(kind, residual):
    plain = _model(kind)
    zero = _model(kind, residual=residual, pid_p=0.0, pid_i=0.0, pid_d=0.0)
    assert torch.equal(_logits(plain), _logits(zero))
    assert not torch.allclose(_logits(plain), _logits(_model(kind, residual=residual)))


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("residual", ["laurel-lr", "laurel-pa"])
def test_low_rank_forms_start_as_the_plain_model(kind, residual):
    """B starts at zero, so the shared weights give the plain model's output exactly."""
    lr = _model(kind, residual=residual)
    plain = _model(kind)
    missing, unexpected = plain.load_state_dict(lr.state_dict(), strict=False)
    assert not missing and unexpected and all(".res." in k for k in unexpected)
    assert torch.equal(_logits(plain), _logits(lr))
    with torch.no_grad():
        for n, p in lr.named_parameters():
            if n.endswith(".B"):
                p.normal_()
    assert not torch.allclose(_logits(plain), _logits(lr))


def test_pid_terms_follow_their_definition():
    """One layer's control by hand: u_out + λP e + λI Σe + λD Δe with e = f − u."""
    from assocmem.lm.residual import ResidualSettings, stream

    g = torch.Generator().manual_seed(0)
    f, u0, u1, o0, o1 = (torch.randn(2, 3, 4, generator=g) for _ in range(5))
    s = stream(ResidualSettings(residual="pid", pid_p=0.5, pid_i=0.25, pid_d=2.0), f)
    e0, e1 = f - u0, f - u1
    torch.testing.assert_close(s.control(u0, o0), o0 + 0.5 * e0 + 0.25 * e0)
    torch.testing.assert_close(
        s.control(u1, o1), o1 + 0.5 * e1 + 0.25 * (e0 + e1) + 2.0 * (e1 - e0)
    )


def test_laurel_parameters_per_add():
    d, r = SMALL["n_embd"], 4
    plain = sum(p.numel() for p in _model("memlm").parameters())
    adds = SMALL["n_layer"] * 3  # slots, context, swapped slots
    lr = sum(p.numel() for p in _model("memlm", residual="laurel-lr", laurel_rank=r).parameters())
    assert lr - plain == adds * 2 * d * r
    pa = sum(p.numel() for p in _model("memlm", residual="laurel-pa", laurel_rank=r).parameters())
    assert pa - lr == sum(range(1, adds + 1))  # γ: one weight per state so far
    rw = sum(p.numel() for p in _model("gpt", residual="laurel-rw").parameters())
    assert rw - sum(p.numel() for p in _model("gpt").parameters()) == SMALL["n_layer"] * 2 * 2


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("residual", "laurel", "laurel-lr"),  # did you mean
        ("laurel_rank", 0, ">= 1"),
        ("pid_p", float("nan"), "finite"),
        ("pid_i", "0.1", "number"),
    ],
)
def test_bad_residual_keys_are_named(key, value, said):
    with pytest.raises(SettingsError) as e:
        parse(MemLMConfig, {key: value}, ("model",))
    assert f"[model] {key}" in str(e.value) and said in str(e.value), str(e.value)


def test_the_docs_tables_are_the_benchmarks(monkeypatch):
    """docs/learned.md and bench/RESULTS.md show bench/residuals.json, not a retyped copy."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "bench"))  # residuals.py imports lm_vs_gpt beside it
    spec = importlib.util.spec_from_file_location("residuals", root / "bench" / "residuals.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = json.loads((root / "bench" / "residuals.json").read_text())
    tables = bench.markdown(results).strip()
    for doc in ("docs/learned.md", "bench/RESULTS.md"):
        assert tables in (root / doc).read_text(), doc
    text = " ".join((root / "docs" / "learned.md").read_text().split())
    g = results["gain_sweep_val_seed1337"]  # the gain sweep's paragraph, value by value
    pid = " / ".join(f"{g[k]:.4f}" for k in ("pid_p0.03", "pid", "pid_p0.3"))
    p_only = " / ".join(f"{g[k]:.4f}" for k in ("p-only_p0.03", "p-only", "p-only_p0.3"))
    assert f"plain {g['plain']:.4f}" in text and pid in text and p_only in text
