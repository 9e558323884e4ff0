"""Checkpoints: weights and training state as safetensors, config and progress as JSON.

A checkpoint is a folder holding ``model.safetensors`` (the weights),
``state.safetensors`` (optimiser moments, RNG states) and ``ckpt.json`` (config,
tokenizer, iteration, loss history and the sha256 of both tensor files). Every file is
written to a temporary name in the same folder and moved into place with
:func:`os.replace`; the JSON goes last, so a crash leaves either the old checkpoint or
the new one. On load, a missing, truncated or altered file fails its checksum or its
parse and is refused with an :class:`~assocmem.errors.InputError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from assocmem.errors import InputError

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_json", "FORMAT"]

FORMAT = 1
MODEL_FILE, STATE_FILE, JSON_FILE = "model.safetensors", "state.safetensors", "ckpt.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(
    out_dir: str | Path, model: dict[str, torch.Tensor], state: dict[str, torch.Tensor], meta: dict
) -> Path:
    """Write a checkpoint into ``out_dir``; return the path of its JSON.

    ``model`` and ``state`` map names to tensors; ``meta`` must be JSON-serialisable.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, tensors in ((MODEL_FILE, model), (STATE_FILE, state)):
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        _atomic(out / name, lambda p, t=tensors: save_file(t, str(p)))
        files[name] = _sha256(out / name)
    doc = {"format": FORMAT, "files": files, **meta}
    _atomic(out / JSON_FILE, lambda p: p.write_text(json.dumps(doc, indent=1)))
    return out / JSON_FILE


def checkpoint_json(path: str | Path) -> Path:
    """The ``ckpt.json`` of a checkpoint given as its folder or its JSON file."""
    p = Path(path)
    return p / JSON_FILE if p.is_dir() else p


def load_checkpoint(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint (folder or its ``ckpt.json``): ``(model tensors, state tensors, meta)``."""
    jp = checkpoint_json(path)
    if not jp.is_file():
        raise InputError(
            f"no checkpoint at {str(path)!r}: expected a folder holding {JSON_FILE} (as written by `assocmem train`) or that file itself."
        )
    try:
        doc = json.loads(jp.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(
            f"checkpoint {str(jp)!r} is truncated or corrupted: its JSON does not parse ({e}). Resume from an earlier checkpoint or retrain."
        ) from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != FORMAT
        or not isinstance(doc.get("files"), dict)
    ):
        raise InputError(
            f"{str(jp)!r} is not an assocmem checkpoint of format {FORMAT} (no 'format'/'files' entries)."
        )
    loaded = []
    for name in (MODEL_FILE, STATE_FILE):
        fp = jp.parent / name
        want = doc["files"].get(name)
        if not fp.is_file() or want is None:
            raise InputError(f"checkpoint {str(jp.parent)!r} is incomplete: {name} is missing.")
        got = _sha256(fp)
        if got != want:
            raise InputError(
                f"checkpoint file {str(fp)!r} is truncated or altered: its sha256 is {got[:16]}…, "
                f"the checkpoint recorded {want[:16]}…. Refusing to load it; resume from an earlier checkpoint or retrain."
            )
        try:
            loaded.append(load_file(str(fp)))
        except (SafetensorError, OSError) as e:
            raise InputError(f"checkpoint file {str(fp)!r} does not load ({e}).") from None
    return loaded[0], loaded[1], doc
