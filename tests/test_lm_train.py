"""MemLM and the GPT baseline train; checkpoints resume exactly, refuse damage; torchrun DDP matches one process."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assocmem.cli import main
from assocmem.errors import InputError
from assocmem.lm import checkpoint as ckpt
from assocmem.lm.continual import ContinualConfig
from assocmem.lm.data import BPETokenizer, CharTokenizer, build_tokenizer, load_text, split_ids
from assocmem.lm.gpt import GPTConfig
from assocmem.lm.memlm import MemLMConfig
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
        "threads": 1,  # one thread: tiny tensors, and no stalls on a shared 2-core machine
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
    with pytest.raises(
        InputError, match=r"c.toml:2: \[model\] kind: must be one of 'memlm', 'gpt'"
    ):
        toml.write_text('[model]\nkind = "lstm"\n')
        load_config(toml)


@pytest.fixture
def trained(tmp_path):
    cfg = _cfg(tmp_path, "memlm", max_iters=3)
    train(cfg, progress=False, log=lambda *_: None)
    return Path(cfg.out_dir)


@pytest.mark.parametrize("damage", ["truncate", "flip", "json"])
def test_damaged_checkpoint_is_refused(trained, damage, capsys):
    tensors = json.loads((trained / "ckpt.json").read_text())["tensors"]
    target = trained / ("ckpt.json" if damage == "json" else tensors["model"])
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
    meta = json.loads((trained / "ckpt.json").read_text())
    names = {p.name for p in trained.iterdir()}
    assert names == {"ckpt.json", *meta["files"]}  # no temp files, no earlier checkpoint left
    assert set(meta["files"]) == set(meta["tensors"].values())
    assert sorted(meta["tensors"]) == ["model", "state"]
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
    assert p.stdout.count("done:") == 1 and p.stdout.count("parameters,") == 1  # rank 0 only
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


# ---------------------------------------------------------------- issue 9: bad configs


_BASE = {
    "data": {"path": "toy.txt"},
    "model": {"kind": "memlm", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8,
              "n_slots": 8},
    "train": {"batch_size": 4, "max_iters": 2, "eval_iters": 1, "threads": 1},
}  # fmt: skip


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v != v:
        return "nan"
    if isinstance(v, float) and abs(v) == float("inf"):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):  # a TOML basic string: JSON's escapes, astral characters as they are
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _write(path: Path, doc: dict) -> Path:
    top = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    secs = [f"[{k}]\n" + "".join(f"{kk} = {_toml_value(vv)}\n" for kk, vv in v.items())
            for k, v in doc.items() if isinstance(v, dict)]  # fmt: skip
    path.write_text("\n".join(top) + "\n" + "\n".join(secs))
    return path


def _with(tmp_path: Path, section: str | None, key: str, value) -> Path:
    doc = {"out_dir": str(tmp_path / "run"), **json.loads(json.dumps(_BASE))}
    doc["data"]["path"] = str(_corpus(tmp_path))
    if section is None:
        doc[key] = value
    else:
        doc.setdefault(section, {})[key] = value
    return _write(tmp_path / "c.toml", doc)


@pytest.mark.parametrize(
    "section, key, value, words",
    [
        ("model", "n_head", 0, ["n_head", ">= 1", "got 0"]),
        ("train", "eval_iters", 0, ["eval_iters", ">= 1"]),
        ("train", "eval_iters", -1, ["eval_iters", ">= 1"]),
        ("train", "batch_size", 0, ["batch_size", ">= 1"]),
        ("train", "batch_size", "8", ["batch_size", "integer", "Write 8, without quotes"]),
        ("train", "lr", -1, ["lr", "> 0"]),
        ("train", "lr", float("inf"), ["lr", "finite"]),
        ("train", "beta1", 1.5, ["beta1", "< 1"]),
        ("data", "train_frac", float("nan"), ["train_frac", "finite"]),
        ("model", "n_embd", 18, ["n_embd", "multiple of 4·n_head = 8"]),
        ("model", "n_slots", 1e9, ["n_slots", "integer", "Write 1000000000"]),
        ("model", "mlp_bank", "bogus", ["mlp_bank", "'swap', 'separate', 'none'"]),
        ("model", "temp", "bogus", ["temp", "'learned', 'fixed'"]),
        ("train", "device", "GPU", ["device", "'auto', 'cpu', 'cuda' or 'cuda:N'"]),
        ("model", "n_layer", 0, ["n_layer", ">= 1"]),
        ("model", "n_layer", -3, ["n_layer", ">= 1"]),
        ("model", "n_layer", 2.5, ["n_layer", "integer", "whole number"]),
        ("model", "n_layer", "8", ["n_layer", "integer", "Write 8"]),
        ("model", "n_layer", [1, 2], ["n_layer", "a list"]),
        ("model", "n_layer", {"a": 1}, ["n_layer", "a table"]),
        ("train", "grad_clip", -1, ["grad_clip", ">= 0"]),
        ("train", "weight_decay", float("nan"), ["weight_decay", "finite"]),
        ("train", "min_lr", float("nan"), ["min_lr", "finite"]),
        ("model", "rope_base", float("nan"), ["rope_base", "finite"]),
        ("model", "joint", "true", ["joint", "true or false", "Write true, without quotes"]),
        ("model", "joint", 1, ["joint", "true or false", "Write true"]),
        ("model", "vocab_size", 100, ["vocab_size", "set by the tokenizer", "[data] vocab_size"]),
        (None, "model", 5, ["model", "must be a table"]),
        (None, "train", [1, 2], ["train", "must be a table"]),
    ],
)
def test_issue_9_config_reproducers_exit_2_with_file_line_and_key(
    tmp_path, capsys, section, key, value, words
):
    toml = _with(tmp_path, section, key, value)
    assert main(["train", str(toml), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "Traceback" not in err and f"{toml}:" in err, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize("device", ["mps", "cuda", "cuda:99"])
def test_a_device_this_machine_lacks_is_refused_before_work(tmp_path, capsys, device):
    toml = _with(tmp_path, "train", "device", device)
    rc = main(["train", str(toml), "--quiet"])
    err = " ".join(capsys.readouterr().err.split())
    if device != "mps" and torch.cuda.device_count() > 99:
        pytest.skip("this machine has that device")
    assert rc == 2 and "device" in err and f"{toml}:" in err, err


def test_out_dir_that_is_a_file_or_under_one_or_unwritable_is_refused_first(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    unwritable = tmp_path / "ro"
    if os.geteuid() == 0:  # root writes anywhere a permission allows: use a folder no one can make
        unwritable = Path("/proc/assocmem-no-such-run")
    else:
        unwritable.mkdir(mode=0o500)
    for out, words in ((blocker, "is a file, not a folder"),
                       (blocker / "run", "is a file, so no folder"),
                       (unwritable / "run", "cannot write")):  # fmt: skip
        toml = _with(tmp_path, None, "out_dir", str(out))
        assert main(["train", str(toml), "--quiet"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"{toml}:1: out_dir:" in err and words in err, err


def test_a_model_too_large_for_memory_is_refused_with_its_size(tmp_path, capsys):
    toml = _with(tmp_path, "model", "n_slots", 10**12)
    assert main(["train", str(toml), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{toml}:5: model: needs about" in err and "GiB" in err and "n_slots" in err, err


def test_batch_not_split_by_the_processes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(InputError, match=r"\[train\] batch_size: 8 does not split over the 3"):
        train(_cfg(tmp_path, "gpt"), progress=False, log=lambda *_: None)


def test_rerunning_into_a_run_needs_resume_or_force(tmp_path, capsys):
    toml = _with(tmp_path, None, "out_dir", str(tmp_path / "run"))
    assert main(["train", str(toml), "--quiet"]) == 0
    first = (tmp_path / "run" / "ckpt.json").read_text()
    assert main(["train", str(toml), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "already holds a run" in err and "--resume" in err and "--force" in err
    assert (tmp_path / "run" / "ckpt.json").read_text() == first  # untouched
    assert main(["train", str(toml), "--quiet", "--force"]) == 0
    assert "done:" in capsys.readouterr().out
    assert main(["train", str(toml), "--quiet", "--resume", "--force"]) == 2
    fresh = tmp_path / "fresh.toml"
    fresh.write_text(toml.read_text().replace(str(tmp_path / "run"), str(tmp_path / "none")))
    assert main(["train", str(fresh), "--quiet", "--resume"]) == 2
    assert "holds no checkpoint to resume" in capsys.readouterr().err


def test_an_experiment_file_given_to_train_names_run(capsys):
    assert main(["train", str(ROOT / "examples" / "masha.toml")]) == 2
    assert "assocmem run" in capsys.readouterr().err


def test_example_configs_load_unchanged():
    for p in sorted((ROOT / "examples" / "lm").glob("*.toml")):
        cfg = load_config(p)
        assert cfg.train.max_iters >= 1 and cfg.model["kind"] in ("memlm", "gpt")


def _ctrl_c(tmp_path: Path, before_first_iteration: bool = False):
    cli = Path(sys.executable).parent / "assocmem"
    if not cli.exists():
        pytest.skip(f"the assocmem console script is not installed next to {sys.executable}")
    toml = _with(tmp_path, "train", "max_iters", 100000)
    toml.write_text(toml.read_text().replace("threads = 1", "threads = 1\nckpt_interval = 5"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([str(cli), "train", str(toml), "--quiet"], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    start = time.monotonic()
    while not (tmp_path / "run" / "ckpt.json").is_file() and time.monotonic() - start < 120:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    return p.returncode, out + err, toml


def test_ctrl_c_saves_a_checkpoint_says_how_to_resume_and_exits_130(tmp_path):
    rc, said, toml = _ctrl_c(tmp_path)
    said = " ".join(said.split())
    assert rc == 130, said
    assert "interrupted after iteration" in said and f"assocmem train {toml} --resume" in said
    meta = json.loads((tmp_path / "run" / "ckpt.json").read_text())
    n = int(said.split("interrupted after iteration ")[1].split(":")[0])
    assert meta["iter"] == n == len(meta["losses"])  # the checkpoint is of that iteration


def _interrupt_on(text: str):
    def log(msg, *_):
        if text in str(msg):
            signal.raise_signal(signal.SIGINT)

    return log


def test_ctrl_c_in_the_loop_stops_after_the_iteration_with_a_checkpoint(tmp_path):
    from assocmem.lm.train import Interrupted

    cfg = _cfg(tmp_path, "gpt", max_iters=50, eval_interval=2)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler; SIG_IGN when run with &
    with pytest.raises(Interrupted) as e:
        train(cfg, progress=False, log=_interrupt_on("iter 2:"))  # Ctrl-C during iteration 2
    assert e.value.it == 3 and e.value.saved == Path(cfg.out_dir) / "ckpt.json"
    meta = json.loads(e.value.saved.read_text())
    assert meta["iter"] == 3 and len(meta["losses"]) == 3
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler restored


def test_ctrl_c_before_the_first_iteration_says_nothing_was_saved(tmp_path):
    from assocmem.lm.train import Interrupted

    cfg = _cfg(tmp_path, "gpt")
    with pytest.raises(Interrupted) as e:
        train(cfg, progress=False, log=_interrupt_on("parameters"))
    assert e.value.it == 0 and e.value.saved is None
    assert not (Path(cfg.out_dir) / "ckpt.json").exists()


# ---------------------------------------------------------------- fuzz: generated bad values


def _keys() -> list[tuple[str | None, str]]:
    """Every key a training config can hold, from the dataclasses themselves."""
    top = [(None, f.name) for f in dataclasses.fields(RunConfig)]
    data = [("data", f.name) for f in dataclasses.fields(DataConfig)]
    tr = [("train", f.name) for f in dataclasses.fields(TrainConfig)]
    tr += [("continual", f.name) for f in dataclasses.fields(ContinualConfig)]
    model = {("model", f.name) for cls in (MemLMConfig, GPTConfig) for f in dataclasses.fields(cls)}
    return top + data + tr + sorted(model) + [("model", "kind")]


_values = st.one_of(
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(_keys()), value=_values)
def test_fuzz_every_key_bad_values_are_input_errors_with_the_key_located(key, value):
    section, name = key
    with tempfile.TemporaryDirectory() as tmp:
        toml = _with(Path(tmp), section, name, value)
        try:
            cfg = load_config(toml)
        except InputError as e:
            msg = str(e)
            assert f"{toml}:" in msg and name in msg, msg
            return
        # accepted: then the value is what the config holds
        if section is None:
            assert name != "out_dir" or cfg.out_dir == value
        elif section == "model":
            assert cfg.model[name] == value
        else:
            got = getattr(getattr(cfg, section), name)
            if isinstance(got, tuple):  # a list for a tuple field is held as a tuple
                got = list(got)
            assert got == value and type(got) in (type(value), float)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from([k for k in _keys() if k[0] is not None]),
    value=st.one_of(st.lists(st.integers(), max_size=2), st.just({"x": 1})),
)
def test_fuzz_through_the_cli_exits_2_without_a_traceback(key, value):
    with tempfile.TemporaryDirectory() as tmp:
        toml = _with(Path(tmp), *key, value)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["train", str(toml), "--quiet"])
        said = " ".join(err.getvalue().split())
        assert rc == 2 and "Traceback" not in said and f"{toml}:" in said and key[1] in said, said


def test_the_docs_config_reference_is_the_generated_one():
    from assocmem.lm.train import config_reference

    doc = (ROOT / "docs" / "learned.md").read_text()
    start, end = "<!-- config-reference:start -->\n", "\n<!-- config-reference:end -->"
    held = doc[doc.index(start) + len(start) : doc.index(end)]
    assert held == config_reference(), (
        "docs/learned.md's config reference is stale: replace it with the output of "
        '.venv/bin/python -c "from assocmem.lm.train import config_reference; print(config_reference())"'
    )


def test_a_text_shorter_than_the_context_is_refused_before_the_model_is_built(tmp_path, capsys):
    toml = _with(tmp_path, "model", "block_size", 4000)
    assert main(["train", str(toml), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{toml}:" in err and "[model] block_size: is 4000" in err and "split holds only" in err


def test_a_batch_too_large_for_memory_is_refused_before_training(tmp_path, capsys):
    toml = _with(tmp_path, "train", "batch_size", 10**8)
    assert main(["train", str(toml), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "[train] batch_size: a batch of 100000000 windows" in err and "GiB" in err, err


def test_a_data_path_that_is_no_text_file_is_refused_at_its_key(tmp_path, capsys):
    for path, words in ((tmp_path, "is a folder, not a text file"),
                        (Path("/dev/null"), "is not a regular file"),
                        (tmp_path / "nope.txt", "not found")):  # fmt: skip
        toml = _with(tmp_path, None, "out_dir", str(tmp_path / "run"))
        toml.write_text(toml.read_text().replace(str(_corpus(tmp_path)), str(path)))
        assert main(["train", str(toml), "--quiet"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"{toml}:" in err and "[data] path:" in err and words in err, err


def test_an_empty_config_is_refused_not_trained_with_every_default(tmp_path, capsys):
    toml = tmp_path / "empty.toml"
    toml.write_text("# nothing yet\n")
    assert main(["train", str(toml), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{toml}: holds no settings" in err and "examples/lm/tiny.toml" in err, err


@pytest.mark.parametrize(
    "option, value",
    [("--tokens", "-1"), ("--tokens", "0"), ("--tokens", str(10**12)), ("--top-k", "-1"),
     ("--temperature", "nan"), ("--temperature", "inf"), ("--temperature", "0")],
)  # fmt: skip
def test_sample_refuses_bad_options_before_sampling(trained, capsys, option, value):
    assert main(["sample", str(trained), option, value]) == 2
    captured = capsys.readouterr()
    assert option in captured.err and "Traceback" not in captured.err and not captured.out


@pytest.mark.parametrize("option, value", [("--top", "0"), ("--layer", "-2"), ("--limit", "-1")])
def test_inspect_refuses_bad_options(trained, capsys, option, value):
    assert main(["inspect", str(trained), option, value]) == 2
    captured = capsys.readouterr()
    assert option in captured.err and "Traceback" not in captured.err and not captured.out
