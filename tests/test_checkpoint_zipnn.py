"""ZipNN-compressed checkpoints (``[train] compress = "zipnn"``): bit-exact round trip in
float32 and bfloat16, the caller's tensors untouched, checksums of the stored bytes, exact
resume, and a clear error before any work when the zipnn package is missing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from assocmem.cli import main
from assocmem.errors import InputError
from assocmem.lm import checkpoint as ckpt
from assocmem.lm import codec
from assocmem.lm.train import RunConfig, TrainConfig, load_model, train
from assocmem.settings import SettingsError
from tests.test_checkpoint import _quiet, _tiny, _toml

needs_zipnn = pytest.mark.skipif(
    importlib.util.find_spec("zipnn") is None,
    reason='zipnn is not installed (pip install "torch==2.13.0" zipnn): compressed checkpoints untested',
)


def _weights(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Trained-looking weights in ``dtype`` plus the values a codec gets wrong first: NaN with
    a payload, -0.0, infinities, subnormals; a scalar, an empty tensor, an integer tensor."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 48, generator=g) * 0.02  # (64, 48)
    odd = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e-40, -1e-42, float("nan")])
    t = {"w": w.to(dtype), "odd": odd.to(dtype), "scalar": torch.tensor(3.5, dtype=dtype)}
    bits = t["odd"].view(torch.int16 if dtype.itemsize == 2 else torch.int32)
    bits[-1] |= 1  # a NaN with a payload: must come back as these bits, not a canonical NaN
    t["empty"] = torch.empty(0, 5, dtype=dtype)
    t["step"] = torch.arange(10, dtype=torch.int64)  # no ZipNN mode: stored raw
    return t


def _bits(t: dict[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: (v.dtype, tuple(v.shape), codec.tensor_bytes(v)) for k, v in t.items()}


@needs_zipnn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_is_bit_exact_and_leaves_the_input_untouched(tmp_path, dtype):
    model, state = _weights(dtype), {"optim.0.exp_avg": torch.randn(300).to(dtype)}
    before = _bits(model), _bits(state)
    ckpt.save_checkpoint(tmp_path, model, state, {"iter": 1}, codec="zipnn", threads=1)
    assert (_bits(model), _bits(state)) == before  # ZipNN got copies, not these buffers
    m, s, meta = ckpt.load_checkpoint(tmp_path)
    assert (_bits(m), _bits(s)) == before
    assert set(meta["codecs"].values()) == {"zipnn"}
    assert all(name.endswith(".zipnn.safetensors") for name in meta["files"])


@needs_zipnn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_zipnn_stores_weights_in_fewer_bytes(dtype):
    w = {"w": (torch.randn(256, 256, generator=torch.Generator().manual_seed(1)) * 0.02).to(dtype)}
    assert len(codec.encode(w, "zipnn")) < len(codec.encode(w, "none"))


@needs_zipnn
def test_an_altered_compressed_file_fails_its_checksum(tmp_path):
    ckpt.save_checkpoint(tmp_path, _weights(torch.float32), {}, {"iter": 1}, codec="zipnn")
    meta = json.loads((tmp_path / "ckpt.json").read_text())
    fp = tmp_path / meta["tensors"]["model"]
    raw = bytearray(fp.read_bytes())
    raw[-10] ^= 0xFF  # inside the compressed stream
    fp.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="sha256"):
        ckpt.load_checkpoint(tmp_path)


def test_an_unknown_codec_in_ckpt_json_is_refused(tmp_path):
    ckpt.save_checkpoint(tmp_path, {"w": torch.ones(3)}, {}, {"iter": 1})
    meta = json.loads((tmp_path / "ckpt.json").read_text())
    meta["codecs"] = {name: "gzip" for name in meta["files"]}
    (tmp_path / "ckpt.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="'codecs' must map .* to one of 'none', 'zipnn'"):
        ckpt.load_checkpoint(tmp_path)


@needs_zipnn
@pytest.mark.parametrize("then", ["zipnn", "none"])
def test_resume_from_a_compressed_checkpoint_is_exact(tmp_path, then):
    """Resumed with compression on, or off (loading reads the codec from ckpt.json)."""
    full = train(_tiny(tmp_path, "full", max_iters=8, ckpt_interval=3), progress=False, log=_quiet)
    cfg = _tiny(tmp_path, "crash", max_iters=8, ckpt_interval=3, compress="zipnn")
    part = train(cfg, stop_at=5, progress=False, log=_quiet)  # last checkpoint at 3
    assert len(part.losses) == 5
    meta = json.loads((tmp_path / "crash" / "ckpt.json").read_text())
    assert meta["iter"] == 3 and set(meta["codecs"].values()) == {"zipnn"}
    cfg = _tiny(tmp_path, "crash", max_iters=8, ckpt_interval=3, compress=then)
    resumed = train(cfg, resume=True, progress=False, log=_quiet)
    assert resumed.losses == full.losses  # exactly, not approximately
    assert resumed.val_loss == full.val_loss
    _, _, done = load_model(tmp_path / "crash")
    assert done["iter"] == 8 and set(done["codecs"].values()) == {then}


@needs_zipnn
def test_cli_compress_flag_writes_a_compressed_checkpoint_that_samples(tmp_path, capsys):
    toml = _toml(_tiny(tmp_path, max_iters=2, ckpt_interval=0), tmp_path / "c.toml")
    assert main(["train", str(toml), "--quiet", "--compress", "zipnn"]) == 0
    meta = json.loads((tmp_path / "run" / "ckpt.json").read_text())
    assert set(meta["codecs"].values()) == {"zipnn"} and meta["config"]["train"]["compress"] == "zipnn"  # fmt: skip
    assert main(["sample", str(tmp_path / "run"), "--tokens", "5", "--prompt", "the"]) == 0


def test_cli_compress_flag_refuses_an_unknown_codec(tmp_path, capsys):
    toml = _toml(_tiny(tmp_path, max_iters=2), tmp_path / "c.toml")
    assert main(["train", str(toml), "--quiet", "--compress", "zipn"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--compress must be one of none, zipnn" in err and "zipnn?" in err, err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def no_zipnn(monkeypatch):
    """As if the zipnn package were not installed (an import of it fails)."""
    monkeypatch.setitem(sys.modules, "zipnn", None)


def test_missing_zipnn_is_a_config_error_before_any_work(tmp_path, no_zipnn):
    cfg = _tiny(tmp_path, compress="zipnn")
    with pytest.raises(SettingsError) as e:
        train(cfg, progress=False, log=_quiet)
    assert [p.key for p in e.value.problems] == [("train", "compress")]
    assert 'pip install "torch==2.13.0" zipnn' in str(e.value)
    assert not (Path(cfg.out_dir) / "ckpt.json").exists()  # nothing trained, nothing saved


def test_missing_zipnn_via_cli_exits_2_naming_the_key(tmp_path, capsys, no_zipnn):
    cfg = _tiny(tmp_path)
    toml = _toml(RunConfig(out_dir=cfg.out_dir, data=cfg.data, model=cfg.model,
                           train=TrainConfig(**{**vars(cfg.train), "compress": "zipnn"})),
                 tmp_path / "c.toml")  # fmt: skip
    assert main(["train", str(toml), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    line = toml.read_text().splitlines().index('compress = "zipnn"') + 1
    assert f"{toml}:{line}: [train] compress: needs the zipnn package" in err, err
    assert 'pip install "torch==2.13.0" zipnn' in err and "Traceback" not in err
    toml2 = _toml(cfg, tmp_path / "plain.toml")  # the flag alone: named by its key too
    assert main(["train", str(toml2), "--quiet", "--compress", "zipnn"]) == 2
    assert "[train] compress: needs the zipnn package" in capsys.readouterr().err
    assert not (Path(cfg.out_dir) / "ckpt.json").exists()


@needs_zipnn
def test_loading_a_compressed_checkpoint_without_zipnn_says_how_to_install(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, {"w": torch.randn(50)}, {}, {"iter": 1}, codec="zipnn")
    monkeypatch.setitem(sys.modules, "zipnn", None)
    with pytest.raises(InputError, match=r"compressed with zipnn .* pip install \"torch==2.13.0\" zipnn"):  # fmt: skip
        ckpt.load_checkpoint(tmp_path)


def test_the_docs_tables_are_the_bench_json():
    """docs/learned.md and bench/RESULTS.md show bench/zipnn_ckpt.json's rows, not a retyped copy."""
    pytest.importorskip("zstandard", reason="bench/zipnn_ckpt.py needs zstandard")
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("zipnn_ckpt", root / "bench" / "zipnn_ckpt.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = json.loads((root / "bench" / "zipnn_ckpt.json").read_text())["rows"]
    assert all(r["bit_exact"] and r["input_unchanged"] for r in rows)
    for doc in ("docs/learned.md", "bench/RESULTS.md"):
        assert bench.table(rows) in (root / doc).read_text(), f"{doc}: rerun --table and paste"
