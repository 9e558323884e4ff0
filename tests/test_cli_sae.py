"""``assocmem sae train`` / ``assocmem sae inspect`` on a tiny trained checkpoint."""

import json
import random
from pathlib import Path

import pytest

from assocmem.cli import main
from assocmem.lm.train import DataConfig, RunConfig, TrainConfig, train


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sae_cli")
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]
    (tmp / "toy.txt").write_text(" ".join(rng.choice(words) for _ in range(3000)))
    model = {"kind": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16}
    tr = {"batch_size": 8, "max_iters": 20, "eval_interval": 0, "eval_iters": 2}
    cfg = RunConfig(
        out_dir=str(tmp / "run"),
        data=DataConfig(path=str(tmp / "toy.txt")),
        model=model,
        train=TrainConfig(**tr, ckpt_interval=0, threads=1),
    )
    train(cfg, progress=False, log=lambda *_: None)
    return Path(cfg.out_dir)


def test_train_then_inspect(ckpt, tmp_path, capsys):
    out = tmp_path / "sae"
    args = ["sae", "train", str(ckpt), "--out", str(out), "--hook", "layers.1.out"]
    small = ["--steps", "60", "--windows", "40", "--val-windows", "10", "--quiet"]
    assert main(args + small) == 0
    meta = json.loads((out / "sae.json").read_text())
    assert meta["hook"] == "layers.1.out" and meta["config"]["width"] == 64
    assert 0 < meta["scores"]["l0"] <= 16
    assert "loss recovered" in capsys.readouterr().out
    assert main(["sae", "inspect", str(out), "--windows", "20", "--top", "3"]) == 0
    listed = capsys.readouterr().out
    feature = int(next(line.split("│")[1] for line in listed.splitlines() if line.count("│") > 3))
    page = tmp_path / "f.html"
    assert main(["sae", "inspect", str(out), "--feature", str(feature), "--html", str(page)]) == 0
    text = page.read_text()
    assert "top activating contexts" in text and 'class="peak"' in text  # it fires somewhere
    assert "Content-Security-Policy" in text


def test_bad_input_exits_2(ckpt, tmp_path):
    out = str(tmp_path / "s")
    assert main(["sae", "train", str(ckpt), "--out", out, "--kind", "gated"]) == 2
    assert main(["sae", "train", str(ckpt), "--out", out, "--hook", "layers.9.out"]) == 2
    assert main(["sae", "inspect", str(tmp_path / "nothing")]) == 2


def test_the_default_hook_is_the_middle_layer_of_any_depth(ckpt, tmp_path):
    """Not a fixed ``layers.2.out``, which a one-layer model lacks."""
    out = tmp_path / "sae"
    small = ["--steps", "5", "--windows", "10", "--val-windows", "4", "--quiet"]
    assert main(["sae", "train", str(ckpt), "--out", str(out), *small]) == 0
    assert json.loads((out / "sae.json").read_text())["hook"] == "layers.1.out"  # 2 layers
