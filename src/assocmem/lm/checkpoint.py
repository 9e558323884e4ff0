"""Checkpoints: weights and training state as safetensors, config and progress as JSON.

A checkpoint is a folder holding ``model.safetensors`` (the weights),
``state.safetensors`` (optimiser moments, RNG states) and ``ckpt.json`` (config,
tokenizer, iteration, loss history and the sha256 of both tensor files). Every file is
written with :func:`assocmem.errors.write_atomic` (a temporary file in the same folder,
then :func:`os.replace`); the JSON goes last, so a crash leaves either the old checkpoint or
the new one. On load, a missing, truncated or altered file fails its checksum or its
parse and is refused with an :class:`~assocmem.errors.InputError`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from assocmem.errors import InputError, write_atomic

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_json", "FORMAT"]

FORMAT = 1
MODEL_FILE, STATE_FILE, JSON_FILE = "model.safetensors", "state.safetensors", "ckpt.json"


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
        raw = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        write_atomic(out / name, raw)
        files[name] = hashlib.sha256(raw).hexdigest()  # of the bytes written, not re-read
    doc = {"format": FORMAT, "files": files, **meta}
    write_atomic(out / JSON_FILE, json.dumps(doc, indent=1))
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
        raw = fp.read_bytes()  # read once: hashed, then parsed
        got = hashlib.sha256(raw).hexdigest()
        if got != want:
            raise InputError(
                f"checkpoint file {str(fp)!r} is truncated or altered: its sha256 is {got[:16]}…, "
                f"the checkpoint recorded {want[:16]}…. Refusing to load it; resume from an earlier checkpoint or retrain."
            )
        try:
            loaded.append(load(raw))
        except (SafetensorError, OSError) as e:
            raise InputError(f"checkpoint file {str(fp)!r} does not load ({e}).") from None
    return loaded[0], loaded[1], doc
