"""MemLM and the GPT baseline train; checkpoints resume exactly, refuse damage; torchrun DDP matches one process."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from assocmem.cli import main
from assocmem.errors import InputError
from assocmem.lm import checkpoint as ckpt
from assocmem.lm.data import BPETokenizer, CharTokenizer, build_tokenizer, load_text, split_ids
from assocmem.lm.train import DataConfig, RunConfig, TrainConfig, load_config, train

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT / "../shared/data/tinyshakespeare/input.txt"


def _corpus(tmp_path: Path, n: int = 4000) -> Path:
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]
    p = tmp_path / "toy.txt"
    p.write_text(" ".join(rng.choice(words) for _ in range(n)))
    return p


def _cfg(tmp_path: Path, kind: str, out: str = "run", **train_kw) -> RunConfig:
    model = {"kind": kind, "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
    if kind == "memlm":
        model["n_slots"] = 32
    tr = {
        "batch_size": 8,
        "max_iters": 30,
        "lr": 3e-3,
        "min_lr": 3e-4,
        "warmup_iters": 5,
        "eval_interval": 0,
        "eval_iters": 4,
        "ckpt_interval": 0,
        "threads": 2,
        **train_kw,
    }
    return RunConfig(
        out_dir=str(tmp_path / out),
        data=DataConfig(path=str(_corpus(tmp_path))),
        model=model,
        train=TrainConfig(**tr),
    )


@pytest.mark.parametrize("kind", ["memlm", "gpt"])
def test_a_few_steps_lower_the_loss(tmp_path, kind):
    r = train(_cfg(tmp_path, kind), progress=False, log=lambda *_: None)
    first, last = sum(r.losses[:3]) / 3, sum(r.losses[-3:]) / 3
    assert last < first - 0.3, (first, last)
    assert r.val_loss < r.losses[0]


@pytest.mark.parametrize(
    "opts", [{"mlp_bank": "separate"}, {"joint": True}, {"temp": "fixed", "mlp_bank": "none"}]
)
def test_memlm_options_train(tmp_path, opts):
    cfg = _cfg(tmp_path, "memlm", max_iters=20)
    cfg.model.update(opts)
    r = train(cfg, progress=False, log=lambda *_: None)
    assert sum(r.losses[-3:]) < sum(r.losses[:3])


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "gpt"},
        {"kind": "memlm", "n_slots": 16},
        {"kind": "memlm", "n_slots": 16, "joint": True},
    ],
)
def test_attention_dropout_only_in_training(model, monkeypatch):
    """The read weights are dropped in train mode (so are the residuals), never in eval."""
    import assocmem.lm.gpt
    import assocmem.lm.memlm
    from assocmem.lm.train import build_model
    from assocmem.primitive import mem

    seen = []

    def spy(*args, **kw):
        seen.append(kw.get("dropout", 0.0))
        return mem(*args, **kw)

    monkeypatch.setattr(assocmem.lm.gpt, "mem", spy)
    monkeypatch.setattr(assocmem.lm.memlm, "mem", spy)
    torch.manual_seed(0)
    m = build_model({**model, "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8,
                     "dropout": 0.5}, vocab_size=11)  # fmt: skip
    x = torch.randint(0, 11, (2, 8))
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0], atol=0, rtol=0)
    assert seen and set(seen) == {0.0}
    seen.clear()
    m.train()
    m(x)
    assert 0.5 in seen  # the context (attention) read got the dropout


def test_resume_reproduces_the_uninterrupted_losses(tmp_path):
    full = train(
        _cfg(tmp_path, "memlm", "full", max_iters=12, ckpt_interval=4),
        progress=False,
        log=lambda *_: None,
    )
    cfg = _cfg(tmp_path, "memlm", "crash", max_iters=12, ckpt_interval=4)
    part = train(
        cfg, stop_at=6, progress=False, log=lambda *_: None
    )  # crashes after iteration 6; last checkpoint at 4
    assert len(part.losses) == 6
    assert json.loads((tmp_path / "crash" / "ckpt.json").read_text())["iter"] == 4
    resumed = train(cfg, resume=True, progress=False, log=lambda *_: None)
    assert resumed.losses == full.losses  # exactly, not approximately
    assert resumed.val_loss == full.val_loss


def test_resume_via_cli(tmp_path):
    cfg = _cfg(tmp_path, "gpt")
    toml = tmp_path / "c.toml"
    toml.write_text(
        f'out_dir = "{cfg.out_dir}"\n[data]\npath = "{cfg.data.path}"\n[model]\nkind = "gpt"\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 8\n'
        "[train]\nbatch_size = 4\nmax_iters = 6\neval_iters = 2\nckpt_interval = 3\n"
    )
    assert main(["train", str(toml), "--quiet"]) == 0
    assert main(["train", str(toml), "--resume", "--quiet", "--max-iters", "9"]) == 0
    meta = json.loads((Path(cfg.out_dir) / "ckpt.json").read_text())
    assert meta["iter"] == 9 and len(meta["losses"]) == 9


def test_bad_config_is_an_input_error(tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text("[train]\nmax_iter = 5\n")
    assert main(["train", str(toml)]) == 2
    err = capsys.readouterr().err
    assert "max_iter" in err and "max_iters" in err
    with pytest.raises(InputError, match=r"c.toml:2: \[model\] kind: must be one of 'memlm', 'gpt'"):
        toml.write_text('[model]\nkind = "lstm"\n')
        load_config(toml)


@pytest.fixture
def trained(tmp_path):
    cfg = _cfg(tmp_path, "memlm", max_iters=3)
    train(cfg, progress=False, log=lambda *_: None)
    return Path(cfg.out_dir)


@pytest.mark.parametrize("damage", ["truncate", "flip", "json"])
def test_damaged_checkpoint_is_refused(trained, damage, capsys):
    target = trained / ("ckpt.json" if damage == "json" else "model.safetensors")
    data = bytearray(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data[-10] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        target.write_bytes(data[: len(data) - 20])
    with pytest.raises(InputError, match="truncated or"):
        ckpt.load_checkpoint(trained)
    assert main(["sample", str(trained), "--tokens", "5"]) == 2
    assert "truncated or" in capsys.readouterr().err


def test_checkpoint_writes_are_atomic_and_checksummed(trained):
    names = sorted(p.name for p in trained.iterdir())
    assert names == ["ckpt.json", "model.safetensors", "state.safetensors"]  # no temp files left
    meta = json.loads((trained / "ckpt.json").read_text())
    assert set(meta["files"]) == {"model.safetensors", "state.safetensors"}
    for name, h in meta["files"].items():  # the recorded hashes are of the files on disk
        assert hashlib.sha256((trained / name).read_bytes()).hexdigest() == h


def test_a_failed_checkpoint_write_leaves_the_old_one(trained, monkeypatch):
    before = {p.name: p.read_bytes() for p in trained.iterdir()}
    model_t, state_t, meta = ckpt.load_checkpoint(trained)

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(trained, model_t, state_t, {**meta, "iter": 999})
    assert {p.name: p.read_bytes() for p in trained.iterdir()} == before  # no temp file left


def test_inspect_export_must_be_a_graph_file(trained, capsys):
    bad = trained.parent / "slots.txt"
    assert main(["inspect", str(trained), "--export", str(bad)]) == 2
    assert "--export writes a .graph file" in capsys.readouterr().err and not bad.exists()


def test_sample_cli(trained, capsys):
    assert main(["sample", str(trained), "--prompt", "the ", "--tokens", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the ") and len(out.strip()) >= 20


def test_ddp_two_processes_match_one_on_the_combined_batch(tmp_path):
    out2 = tmp_path / "ddp"
    cfg = _cfg(tmp_path, "memlm", "one", max_iters=5)
    toml = tmp_path / "ddp.toml"
    toml.write_text(
        f'out_dir = "{out2}"\n[data]\npath = "{cfg.data.path}"\n[model]\n'
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.model.items())
        + "[train]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in vars(cfg.train).items() if k != "threads")
    )
    cli = Path(sys.executable).parent / "assocmem"
    if not cli.exists():
        pytest.skip(f"the assocmem console script is not installed next to {sys.executable}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(cli),
        "train",
        str(toml),
        "--quiet",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    ddp = json.loads((out2 / "ckpt.json").read_text())["losses"]
    one = train(cfg, progress=False, log=lambda *_: None).losses
    assert len(ddp) == len(one) == 5
    assert ddp == pytest.approx(one, abs=1e-4)
    assert ddp[1] != pytest.approx(ddp[0], abs=1e-6)  # the runs really trained


def test_tokenizers_and_split(tmp_path):
    text = _corpus(tmp_path).read_text()
    ch = CharTokenizer.train(text)
    assert ch.decode(ch.encode(text[:100])) == text[:100]
    bpe = build_tokenizer("bpe", text, 300)
    assert isinstance(bpe, BPETokenizer) and bpe.vocab_size <= 300
    ids = bpe.encode(text[:200])
    assert bpe.decode(ids) == text[:200] and len(ids) < 200  # merges learned
    tr, va = split_ids(list(range(100)))
    assert len(tr) == 90 and len(va) == 10 and int(va[0]) == 90
    with pytest.raises(InputError, match="not found"):
        load_text(tmp_path / "nope.txt")


@pytest.mark.skipif(
    not SHAKESPEARE.is_file(),
    reason=f"Tiny Shakespeare not found at {SHAKESPEARE} (../shared/data relative to the repo root)",
)
def test_shakespeare_char_vocab():
    tok = CharTokenizer.train(load_text(SHAKESPEARE))
    assert tok.vocab_size == 65  # nanoGPT's shakespeare_char
    assert torch.equal(torch.tensor(tok.encode("\n ")), torch.tensor([0, 1]))
