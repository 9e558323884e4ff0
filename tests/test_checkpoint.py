"""Checkpoints survive kill -9 at every step of a save and at random moments of training, and
resume bit-exact; a damaged or edited ckpt.json is refused with its entry named."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from assocmem.cli import main
from assocmem.errors import InputError
from assocmem.lm import checkpoint as ckpt
from assocmem.lm.train import DataConfig, RunConfig, TrainConfig, load_model, train

CLI = Path(sys.executable).parent / "assocmem"


def _quiet(*_):
    return None


def _corpus(tmp_path: Path) -> Path:
    rng = random.Random(0)
    p = tmp_path / "toy.txt"
    p.write_text(" ".join(rng.choice(["the", "cat", "sat", "on", "a", "mat"]) for _ in range(3000)))
    return p


def _tiny(tmp_path: Path, out: str = "run", **train_kw) -> RunConfig:
    tr = {"batch_size": 4, "max_iters": 6, "warmup_iters": 2, "eval_interval": 0,
          "eval_iters": 2, "ckpt_interval": 1, "threads": 1, **train_kw}  # fmt: skip
    return RunConfig(
        out_dir=str(tmp_path / out),
        data=DataConfig(path=str(_corpus(tmp_path))),
        model={
            "kind": "memlm",
            "n_layer": 1,
            "n_head": 2,
            "n_embd": 16,
            "block_size": 8,
            "n_slots": 8,
        },  # fmt: skip
        train=TrainConfig(**tr),
    )


def _toml(cfg: RunConfig, path: Path) -> Path:
    lines = [f"out_dir = {json.dumps(cfg.out_dir)}", "[data]", f"path = {json.dumps(cfg.data.path)}",
             "[model]", *(f"{k} = {json.dumps(v)}" for k, v in cfg.model.items()), "[train]",
             *(f"{k} = {json.dumps(v)}" for k, v in vars(cfg.train).items())]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- flatten / unflatten


def test_flatten_and_unflatten_are_inverse():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    rngs = {"data": torch.Generator().manual_seed(1).get_state(), "torch": torch.get_rng_state()}
    flat, ids = ckpt.flatten_state(opt.state_dict(), rngs)
    assert all(isinstance(v, torch.Tensor) for v in flat.values()) and ids == [0, 1]
    osd, back = ckpt.unflatten_state(flat, ids, opt.state_dict()["param_groups"])
    want = opt.state_dict()
    assert osd["param_groups"] == want["param_groups"] and set(osd["state"]) == {0, 1}
    for i in ids:
        assert set(osd["state"][i]) == set(want["state"][i]) == {"step", "exp_avg", "exp_avg_sq"}
        for k, v in want["state"][i].items():
            assert torch.equal(osd["state"][i][k], v)
    assert set(back) == {"data", "torch"} and all(torch.equal(back[k], rngs[k]) for k in rngs)


# ---------------------------------------------------------------- kill -9 inside a save


def _tensors(seed: int) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(8, 4, generator=g)}, {"optim.0.step": torch.tensor(float(seed))}


def _save_killed_at(out: Path, step: int, how: str) -> bool:
    """Save checkpoint 2 over checkpoint 1 in a forked child that SIGKILLs itself at file
    operation ``step`` of the save (``how``: before it, after writing half of its temporary
    file, or after it). True when the kill happened (False: the save has fewer steps)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            calls = [0]

            def wrap(real, writes):
                def op(path, *data):
                    mine = calls[0]
                    if mine == step:
                        if how == "half" and writes:
                            raw = data[0].encode() if isinstance(data[0], str) else data[0]
                            (path.parent / f".{path.name}.half.tmp").write_bytes(
                                raw[: len(raw) // 2]
                            )
                        if how in ("before", "half"):
                            os.kill(os.getpid(), signal.SIGKILL)
                    calls[0] += 1
                    real(path, *data)
                    if mine == step and how == "after":
                        os.kill(os.getpid(), signal.SIGKILL)

                return op

            ckpt._put = wrap(ckpt._put, True)
            ckpt._drop = wrap(ckpt._drop, False)
            ckpt._fsync = wrap(ckpt._fsync, False)
            ckpt.save_checkpoint(out, *_tensors(2), {"iter": 2, "note": "second"})
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("how", ["before", "half", "after"])
def test_kill_at_every_step_of_a_save_leaves_one_whole_checkpoint(tmp_path, how):
    seen = set()
    for step in range(40):
        out = tmp_path / f"{how}{step}"
        ckpt.save_checkpoint(out, *_tensors(1), {"iter": 1, "note": "first"})
        if not _save_killed_at(out, step, how):
            break  # the save had fewer steps: every one was tried
        model, state, meta = ckpt.load_checkpoint(out)  # never refused
        want_model, want_state = _tensors(meta["iter"])
        assert torch.equal(model["w"], want_model["w"]) and torch.equal(
            state["optim.0.step"], want_state["optim.0.step"]
        )
        seen.add(meta["iter"])
        ckpt.save_checkpoint(out, *_tensors(3), {"iter": 3})  # the next save cleans up
        names = {p.name for p in out.iterdir()}
        assert names == {"ckpt.json", *json.loads((out / "ckpt.json").read_text())["files"]}
    else:
        pytest.fail("the save never finished within 40 steps")
    assert step >= 6  # 3 writes, 3 flushes and a folder flush at least, 2 removals
    assert seen == {1, 2}  # early kills keep the first checkpoint, late ones the second


# ---------------------------------------------------------------- kill -9 during training


def _iter(out: Path) -> int | None:
    """The iteration of the checkpoint in ``out`` (None: none yet, or being replaced)."""
    try:
        return json.loads((out / "ckpt.json").read_text())["iter"]
    except (OSError, ValueError):
        return None


def _kill_and_resume(tmp_path: Path, kills: int, seed: int) -> None:
    """Train in a subprocess with a checkpoint every iteration, SIGKILL it at random moments
    (resuming each time), and check the finished run equals an uninterrupted one bit for bit."""
    if not CLI.exists():
        pytest.skip(f"the assocmem console script is not installed next to {sys.executable}")
    iters = 12 * kills  # enough that most kills land before the end
    cfg = _tiny(tmp_path, "killed", max_iters=iters)
    toml = _toml(cfg, tmp_path / "killed.toml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(seed)
    out = Path(cfg.out_dir)
    landed = []  # the checkpoint's iteration after each kill that hit a running training
    for _ in range(kills):
        resume = (out / "ckpt.json").is_file()
        cmd = [str(CLI), "train", str(toml), "--quiet", "--resume" if resume else "--force"]
        before = _iter(out)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()  # wait until this run has saved (started and made progress)
        while _iter(out) == before and p.poll() is None and time.monotonic() - start < 60:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))  # a random moment: mid-step, mid-save, between
        running = p.poll() is None
        p.kill()
        p.wait()
        if running:
            landed.append(_iter(out))
    assert landed and all(it is not None for it in landed)  # each kill left a checkpoint
    cmd = [str(CLI), "train", str(toml), "--quiet", "--resume"]  # finish the run
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    full = train(_tiny(tmp_path, "full", max_iters=iters), progress=False, log=_quiet)
    model, _, meta = ckpt.load_checkpoint(out)
    assert meta["losses"] == full.losses  # bit for bit
    ref, _, _ = ckpt.load_checkpoint(tmp_path / "full")
    assert set(model) == set(ref) and all(torch.equal(model[k], ref[k]) for k in ref)


def test_kill_9_at_random_moments_resumes_bit_exact(tmp_path):
    _kill_and_resume(tmp_path, kills=3, seed=0)


@pytest.mark.slow
def test_kill_9_many_times_resumes_bit_exact(tmp_path):
    _kill_and_resume(tmp_path, kills=10, seed=1)


# ---------------------------------------------------------------- ckpt.json checked


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ck")
    cfg = _tiny(tmp, max_iters=3, ckpt_interval=0)
    train(cfg, progress=False, log=_quiet)
    return Path(cfg.out_dir)


def _edited(saved: Path, tmp_path: Path, edit) -> Path:
    out = tmp_path / "edited"
    out.mkdir()
    for p in saved.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    meta = json.loads((out / "ckpt.json").read_text())
    edit(meta)
    (out / "ckpt.json").write_text(json.dumps(meta, indent=1))
    return out


def _shorter_tokenizer(m):
    m["tokenizer"]["chars"] = m["tokenizer"]["chars"][:-1]


def _more_embd(m):
    m["model_config"]["n_embd"] = 32


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: m.update(iter=1), ["ckpt.json:", "iter", "3 losses"]),
        (lambda m: m.update(iter=1, losses=m["losses"][:1]), ["iter", "taken 3 steps"]),
        (lambda m: m.update(iter="x"), ["iter", "whole number", "string"]),
        (lambda m: m.pop("tokenizer"), ["tokenizer", "nothing"]),
        (lambda m: m.update(tokenizer={"kind": "char"}), ["tokenizer", "KeyError"]),
        (lambda m: m.update(model_kind="bogus"), ["model_kind", "'memlm', 'gpt'"]),
        (_more_embd, ["model_config", "does not fit", "wte.weight"]),
        (lambda m: m["model_config"].update(n_head=0), ["model_config", "n_head", ">= 1"]),
        (_shorter_tokenizer, ["tokenizer", "tokens, the model"]),
        (lambda m: m.update(losses="x"), ["losses", "must be a list"]),
    ],
)
def test_an_edited_ckpt_json_is_refused_with_its_entry(saved, tmp_path, capsys, edit, words):
    out = _edited(saved, tmp_path, edit)
    with pytest.raises(InputError) as e:
        load_model(out)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert main(["sample", str(out), "--tokens", "3"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_checkpoint_in_the_earlier_layout_still_loads(saved, tmp_path):
    """Before whole-checkpoint saves the files were model.safetensors and state.safetensors."""

    def legacy(m):
        for role, name in m.pop("tensors").items():
            os.replace(tmp_path / "edited" / name, tmp_path / "edited" / f"{role}.safetensors")
            m["files"][f"{role}.safetensors"] = m["files"].pop(name)

    out = _edited(saved, tmp_path, legacy)
    model, tok, meta = load_model(out)
    assert meta["iter"] == 3 and tok.vocab_size == model.config.vocab_size


def test_resume_with_another_model_is_refused(saved, tmp_path):
    cfg = _tiny(tmp_path, max_iters=6)
    cfg = RunConfig(out_dir=str(saved), data=cfg.data, model={**cfg.model, "n_embd": 32},
                    train=cfg.train)  # fmt: skip
    with pytest.raises(InputError, match="n_embd 16 there, 32 here"):
        train(cfg, resume=True, progress=False, log=_quiet)


def test_resume_from_an_edited_checkpoint_names_its_json_not_the_config(saved, tmp_path, capsys):
    out = _edited(saved, tmp_path, lambda m: m.update(iter=1))
    cfg = _tiny(tmp_path, max_iters=6)
    toml = _toml(RunConfig(out_dir=str(out), data=cfg.data, model=cfg.model, train=cfg.train),
                 tmp_path / "c.toml")  # fmt: skip
    assert main(["train", str(toml), "--resume", "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{out / 'ckpt.json'}:" in err and "iter" in err and "Traceback" not in err, err


@pytest.mark.parametrize("command", ["sample", "inspect"])
def test_a_config_given_as_a_checkpoint_is_named_not_called_corrupted(command, capsys):
    root = Path(__file__).resolve().parents[1]
    assert main([command, str(root / "examples/lm/tiny.toml")]) == 2
    err = capsys.readouterr().err
    assert "is not a checkpoint" in err and "assocmem train" in err and "corrupted" not in err
