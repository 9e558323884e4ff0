"""Continual training (lm/continual.py): a run continued from an earlier one on a second text,
with real or self replay, or with grown slots; the new config keys refuse bad values."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from assocmem.cli import main
from assocmem.lm import checkpoint as ckpt
from assocmem.lm.continual import ContinualConfig, mixed_batch, sample_replay
from assocmem.lm.data import get_batch
from assocmem.lm.train import DataConfig, RunConfig, TrainConfig, load_config, load_model, train
from assocmem.settings import SettingsError

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"progress": False, "log": lambda *_: None}
MODEL = {"kind": "memlm", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "n_slots": 32}
TRAIN = {"batch_size": 8, "lr": 3e-3, "min_lr": 3e-4, "warmup_iters": 5, "eval_interval": 0,
         "eval_iters": 4, "ckpt_interval": 0, "threads": 1}  # fmt: skip


def _text(path: Path, words: list[str], seed: int, n: int = 3000) -> Path:
    rng = random.Random(seed)
    path.write_text(" ".join(rng.choice(words) for _ in range(n)))
    return path


@pytest.fixture
def texts(tmp_path):
    """Task A and task B: two word lists over the same letters (one char vocabulary)."""
    a = _text(tmp_path / "a.txt", ["the", "cat", "sat", "on", "mat"], 0)
    b = _text(tmp_path / "b.txt", ["tame", "oats", "nest", "hat", "cots"], 1)
    return a, b


def _run(tmp_path, out: str, path: Path, iters: int, model=MODEL, **continual) -> RunConfig:
    return RunConfig(
        out_dir=str(tmp_path / out),
        data=DataConfig(path=str(path)),
        model=dict(model),
        train=TrainConfig(**TRAIN, max_iters=iters),
        continual=ContinualConfig(**continual),
    )


@pytest.fixture
def task_a(tmp_path, texts):
    """A MemLM trained on task A: its run folder."""
    train(_run(tmp_path, "a", texts[0], 20), **QUIET)
    return tmp_path / "a"


def _slot_weights(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith((".K", ".V"))}


def test_slot_growth_leaves_the_old_slots_bit_identical(tmp_path, texts, task_a):
    before = load_file(next(task_a.glob("model-*.safetensors")))
    cfg = _run(tmp_path, "g", texts[1], 15, model={"kind": "memlm"}, init_from=str(task_a),
               grow_slots=8, frozen_lr=0.5)  # fmt: skip
    r = train(cfg, **QUIET)
    model, _, _ = load_model(tmp_path / "g")
    after = model.state_dict()
    assert r.params == sum(v.numel() for v in before.values()) + 2 * 2 * 8 * 32
    old = _slot_weights(before)
    assert old and all(torch.equal(after[k], v) for k, v in old.items())
    assert not torch.equal(
        after["h.0.ln_c.weight"], before["h.0.ln_c.weight"]
    )  # slowed, not frozen
    grown = after["h.0.slots.K_new"]  # (8, 32)
    assert grown.shape == (8, 32) and r.losses[-1] < r.losses[0]


def test_slot_growth_with_frozen_lr_0_trains_the_new_slots_only(tmp_path, texts, task_a):
    before = load_file(next(task_a.glob("model-*.safetensors")))
    cfg = _run(
        tmp_path, "g", texts[1], 10, model={"kind": "memlm"}, init_from=str(task_a), grow_slots=4
    )
    train(cfg, **QUIET)
    after, _, _ = load_model(tmp_path / "g")
    sd = after.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in before.items())


def test_the_mixer_takes_its_share_of_windows_from_the_replay():
    data, replay = torch.zeros(500, dtype=torch.long), torch.ones(300, dtype=torch.long)
    for frac, batch in ((0.25, 12), (0.5, 8), (0.1, 12), (0.9, 10)):
        x, y = mixed_batch(data, replay, 16, batch, frac, torch.Generator().manual_seed(0))
        rows = x.eq(1).all(1)  # (B,): windows drawn from the replay
        assert x.shape == y.shape == (batch, 16) and rows.sum() == round(frac * batch)
        assert (x.eq(0).all(1) | rows).all()  # every window whole from one source
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = get_batch(data + torch.arange(500), 16, 8, g1)
    none = mixed_batch(data + torch.arange(500), None, 16, 8, 0.25, g2)
    assert all(torch.equal(a, b) for a, b in zip(plain, none, strict=True))  # no replay: unchanged


def test_self_replay_reads_no_data_of_the_earlier_task(tmp_path, texts, task_a):
    texts[0].unlink()  # task A's text is gone: self replay needs only the model
    cfg = _run(tmp_path, "s", texts[1], 10, model={"kind": "memlm"}, init_from=str(task_a),
               replay="self", replay_tokens=200, replay_frac=0.5)  # fmt: skip
    train(cfg, **QUIET)
    _, state, _ = ckpt.load_checkpoint(tmp_path / "s")
    assert state["replay.self"].shape == (200,)


def test_the_sampler_draws_from_the_model_alone(task_a):
    model, tok, _ = load_model(task_a)
    a = sample_replay(model, tok.encode(" ")[0], 100, torch.Generator().manual_seed(0), batch=2)
    b = sample_replay(model, tok.encode(" ")[0], 100, torch.Generator().manual_seed(0), batch=2)
    assert a.shape == (100,) and torch.equal(a, b)
    text = tok.decode(a.tolist())
    assert text.count(" ") > 5  # it learned the word breaks of task A


@pytest.mark.parametrize("continual", [
    {"replay": "self", "replay_tokens": 100, "replay_frac": 0.5},
    {"grow_slots": 4, "frozen_lr": 0.2},
    {"replay": "real", "replay_tokens": 300},
])  # fmt: skip
def test_a_continued_run_resumes_exactly(tmp_path, texts, task_a, continual):
    if continual.get("replay") == "real":
        continual["prev_path"] = str(texts[0])
    whole = train(_run(tmp_path, "w", texts[1], 12, model={"kind": "memlm"},
                       init_from=str(task_a), **continual), **QUIET)  # fmt: skip
    cfg = _run(tmp_path, "r", texts[1], 12, model={"kind": "memlm"}, init_from=str(task_a),
               **continual)  # fmt: skip
    cfg = RunConfig(
        **{**cfg.__dict__, "train": TrainConfig(**{**TRAIN, "ckpt_interval": 5}, max_iters=12)}
    )
    train(cfg, stop_at=7, **QUIET)  # a crash after iteration 7: the checkpoint holds 5
    resumed = train(cfg, resume=True, **QUIET)
    assert resumed.losses == whole.losses and resumed.val_loss == whole.val_loss


def test_real_replay_logs_the_earlier_tasks_loss(tmp_path, texts, task_a):
    cfg = _run(tmp_path, "p", texts[1], 10, model={"kind": "memlm"}, init_from=str(task_a),
               replay="real", prev_path=str(texts[0]), replay_tokens=500)  # fmt: skip
    r = train(cfg, **QUIET)
    assert r.val_prev is not None and 0 < r.val_prev < 10


def test_one_bpe_tokenizer_over_several_texts_whatever_the_role(tmp_path, texts):
    def tok_of(out: str, path: Path, others: list[Path]):
        data = DataConfig(path=str(path), tokenizer="bpe", vocab_size=300,
                          tokenizer_texts=tuple(map(str, others)))  # fmt: skip
        cfg = RunConfig(out_dir=str(tmp_path / out), data=data, model=dict(MODEL),
                        train=TrainConfig(**TRAIN, max_iters=1))  # fmt: skip
        train(cfg, **QUIET)
        return load_model(tmp_path / out)[1]

    a, b = texts
    t1, t2, alone = tok_of("1", a, [b]), tok_of("2", b, [a, b]), tok_of("3", a, [])
    assert t1.state() == t2.state() and t1.state() != alone.state()


def _toml(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(f'out_dir = "{tmp_path / "out"}"\n{body}')
    return p


@pytest.mark.parametrize("body, key, said", [
    ('[continual]\nreplay = "self"\n', "replay", "init_from is empty"),
    ('[continual]\nreplay = "real"\n', "replay", "prev_path is empty"),
    ('[continual]\nreplay = "echo"\n', "replay", "must be one of"),
    ('[continual]\ngrow_slots = 4\n', "grow_slots", "init_from is empty"),
    ('[continual]\ngrow_slots = -1\n', "grow_slots", ">= 0"),
    ('[continual]\nreplay = "real"\nprev_path = "a.txt"\nreplay_frac = 0\n', "replay_frac", "never"),
    ('[continual]\nreplay_frac = 1.0\n', "replay_frac", "< 1"),
    ('[continual]\nfrozen_lr = 0.5\n', "frozen_lr", "grow_slots"),
    ('[data]\ntokenizer_texts = "b.txt"\n', "tokenizer_texts", "must be a list"),
])  # fmt: skip
def test_bad_continual_keys_exit_2_naming_file_line_and_key(tmp_path, capsys, body, key, said):
    p = _toml(tmp_path, body)
    assert main(["train", str(p), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{p}:" in err and key in err and said in err and "Traceback" not in err, err


def test_files_the_continual_keys_name_are_checked_before_work(tmp_path, texts, capsys):
    body = (f'[data]\npath = "{texts[1]}"\ntokenizer_texts = ["{tmp_path / "gone.txt"}"]\n'
            f'[model]\nn_layer = 2\n[continual]\ninit_from = "{tmp_path / "nowhere"}"\n'
            f'replay = "real"\nprev_path = "{tmp_path / "no.txt"}"\n')  # fmt: skip
    p = _toml(tmp_path, body)
    assert main(["train", str(p), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    for key in ("init_from", "prev_path", "tokenizer_texts", "model"):
        assert key in err, (key, err)
    assert not (tmp_path / "out" / ckpt.JSON_FILE).exists()


def test_growing_a_gpt_is_refused_at_its_key(tmp_path, texts):
    gpt = {k: v for k, v in MODEL.items() if k != "n_slots"} | {"kind": "gpt"}
    train(_run(tmp_path, "g", texts[0], 3, model=gpt), **QUIET)
    cfg = _run(tmp_path, "x", texts[1], 3, model={"kind": "memlm"}, init_from=str(tmp_path / "g"),
               grow_slots=4)  # fmt: skip
    with pytest.raises(SettingsError, match="grow_slots.*MemLM"):
        train(cfg, **QUIET)


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_continual", ROOT / "bench" / "continual.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench, json.loads((ROOT / "bench" / "continual.json").read_text())


def test_the_example_configs_are_the_benchmarks_runs():
    """examples/lm/continual_*.toml hold bench/continual.py's seed-1337 runs with the options
    its committed JSON chose, and load as configs."""
    bench, results = _bench()
    for name, text in bench.example_tomls(bench.parser().parse_args([]), results["chosen"]).items():
        path = ROOT / "examples" / "lm" / name
        assert path.read_text() == text, f"{path} differs from bench/continual.py's run"
        load_config(path)


def test_the_docs_table_is_the_benchmarks():
    bench, results = _bench()
    assert bench.markdown(results["lm"]) in (ROOT / "docs" / "continual.md").read_text()


def test_replay_every_mixes_the_replay_into_every_kth_batch_only(
    tmp_path, texts, task_a, monkeypatch
):
    from assocmem.lm import continual

    shares, real = [], continual.mixed_batch

    def spy(data, replay, block, batch, frac, gen):
        shares.append(frac)
        return real(data, replay, block, batch, frac, gen)

    monkeypatch.setattr(continual, "mixed_batch", spy)
    cfg = _run(tmp_path, "e", texts[1], 9, model={"kind": "memlm"}, init_from=str(task_a),
               replay="real", prev_path=str(texts[0]), replay_frac=0.25, replay_every=3)  # fmt: skip
    train(cfg, **QUIET)
    assert shares == [0.25, 0.0, 0.0] * 3


def test_a_replay_share_of_zero_windows_per_batch_is_refused(tmp_path, texts, task_a):
    """0.05 of 8 windows rounds to none: the run would silently be plain fine-tuning."""
    cfg = _run(tmp_path, "z", texts[1], 5, model={"kind": "memlm"}, init_from=str(task_a),
               replay="self", replay_tokens=100, replay_frac=0.05)  # fmt: skip
    with pytest.raises(SettingsError, match=r"\[continual\] replay_frac.*0 replay windows"):
        train(cfg, **QUIET)


def test_run_hashes_do_not_depend_on_where_the_checkout_lies(monkeypatch):
    """A finished run is found again from another clone (the texts' absolute paths differ)."""
    bench, _ = _bench()
    args = bench.parser().parse_args([])
    here = bench.run_path(args, bench.configs(args, 1337), "replay_real", 1337)
    elsewhere = Path("/elsewhere/clone")
    for name in ("TEXT_A", "TEXT_B"):
        monkeypatch.setattr(bench, name, elsewhere / getattr(bench, name).relative_to(bench.ROOT))
    monkeypatch.setattr(bench, "ROOT", elsewhere)
    assert bench.run_path(args, bench.configs(args, 1337), "replay_real", 1337) == here
