"""Checkpoints: weights and training state as safetensors, config and progress as JSON.

A checkpoint is ``ckpt.json`` in the run's folder (config, tokenizer, iteration, loss
history) naming its two tensor files, ``model-<tag>.safetensors`` (the weights) and
``state-<tag>.safetensors`` (optimiser moments, RNG states), with their sha256 and their
codec (``"codecs"``: ``"none"``, plain safetensors, or ``"zipnn"``, compressed losslessly, in
files named ``<role>-<tag>.zipnn.safetensors``; see :mod:`assocmem.lm.codec`). Loading reads
the codec from ``ckpt.json`` and decodes by itself; a checkpoint without ``"codecs"`` is plain.

A save is atomic as a whole: the tensor files of the new checkpoint get new names (the
previous checkpoint's files stay untouched), each written through a temporary file and
flushed to disk; then ``ckpt.json`` is replaced in one :func:`os.replace`, the single
moment at which the new checkpoint takes over; only then are the previous checkpoint's
files (and any leftovers of a save that was killed) removed. A kill at any moment leaves
either the previous checkpoint or the new one, complete. On load, a missing, truncated or
altered file fails its checksum or its parse and is refused with an
:class:`~assocmem.errors.InputError`.

:func:`flatten_state` and :func:`unflatten_state` turn an optimiser's ``state_dict`` and
named RNG states into the flat tensor dict of ``state-*.safetensors`` and back.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import torch
from safetensors import SafetensorError

from assocmem.errors import InputError, write_atomic
from assocmem.lm import codec as codecs

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_json",
    "remove_checkpoint",
    "flatten_state",
    "unflatten_state",
    "json_line",
    "FORMAT",
    "JSON_FILE",
]

FORMAT = 1
JSON_FILE = "ckpt.json"
ROLES = ("model", "state")  # the two tensor files, in the order they are written
_LEGACY = {"model": "model.safetensors", "state": "state.safetensors"}  # before named files


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put(path: Path, data: bytes | str) -> None:
    """Write ``path`` atomically and flush it to disk (a rename is only as durable as the data)."""
    write_atomic(path, data)
    _fsync(path)


def _drop(path: Path) -> None:
    path.unlink(missing_ok=True)


def _ours(name: str) -> bool:
    """A file a checkpoint save writes in the run folder (tensor files and temporaries)."""
    plain = name.removeprefix(".")
    tensor = any(plain.startswith(f"{r}-") or plain.startswith(f"{r}.") for r in ROLES)
    return (tensor and ".safetensors" in plain) or plain.startswith(f"{JSON_FILE}.")


def save_checkpoint(
    out_dir: str | Path,
    model: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    meta: dict,
    codec: str = "none",
    threads: int = 1,
) -> Path:
    """Write a checkpoint into ``out_dir`` (atomically as a whole); return the path of its JSON.

    ``model`` and ``state`` map names to tensors (left untouched); ``meta`` must be
    JSON-serialisable; ``codec``: ``"none"`` or ``"zipnn"`` (``threads`` for its work).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{int(meta.get('iter', 0)):08d}-{secrets.token_hex(4)}"  # never a live file's name
    suffix = "safetensors" if codec == "none" else f"{codec}.safetensors"
    files, tensors, used = {}, {}, {}
    for role, values in zip(ROLES, (model, state), strict=True):
        raw = codecs.encode(values, codec, threads)  # checked to decode bit-exactly
        name = f"{role}-{tag}.{suffix}"
        _put(out / name, raw)
        # sha256 of the stored (for zipnn: compressed) bytes written, not re-read: checked on
        # load before anything is decoded; the raw tensors were compared at encode.
        files[name] = hashlib.sha256(raw).hexdigest()
        tensors[role], used[name] = name, codec
    doc = {"format": FORMAT, "files": files, "codecs": used, "tensors": tensors, **meta}
    _put(out / JSON_FILE, json.dumps(doc, indent=1))  # the new checkpoint takes over here
    _fsync(out)  # the rename itself
    for p in out.iterdir():  # the previous checkpoint, and leftovers of killed saves
        if p.name not in files and _ours(p.name):
            _drop(p)
    return out / JSON_FILE


def remove_checkpoint(out_dir: str | Path) -> None:
    """Delete the checkpoint in ``out_dir`` (its JSON first, so no half checkpoint is ever seen)."""
    out = Path(out_dir)
    if out.is_dir():
        _drop(out / JSON_FILE)
        for p in out.iterdir():
            if _ours(p.name):
                _drop(p)


def checkpoint_json(path: str | Path) -> Path:
    """The ``ckpt.json`` of a checkpoint given as its folder or its JSON file."""
    p = Path(path)
    return p / JSON_FILE if p.is_dir() else p


def json_line(text: str, key: str) -> int | None:
    """The line of top-level ``key`` in a checkpoint's JSON text (written with indent 1)."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith(f' "{key}":'):
            return n
    return None


def load_checkpoint(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint (folder or its ``ckpt.json``): ``(model tensors, state tensors, meta)``."""
    jp = checkpoint_json(path)
    if not jp.is_file():
        raise InputError(
            f"no checkpoint at {str(path)!r}: expected a folder holding {JSON_FILE} (as written by `assocmem train`) or that file itself."
        )
    if jp.name != JSON_FILE:  # a config, an experiment, a tensor file: not a damaged checkpoint
        hint = {
            ".toml": " It looks like a config: train it with `assocmem train` (or run an experiment with `assocmem run`)."
        }
        raise InputError(
            f"{str(path)!r} is not a checkpoint: give a run's folder (its out_dir) or its {JSON_FILE}.{hint.get(jp.suffix, '')}"
        )
    try:
        doc = json.loads(jp.read_text(encoding="utf-8"))
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
    names = doc.get("tensors", _LEGACY)
    if not isinstance(names, dict) or not all(isinstance(names.get(r), str) for r in ROLES):
        raise InputError(f"{str(jp)!r}: 'tensors' must name the {' and '.join(ROLES)} files.")
    loaded = []
    for role in ROLES:
        name = names[role]
        fp = jp.parent / name
        want = doc["files"].get(name)
        if Path(name).name != name or not fp.is_file() or not isinstance(want, str):
            raise InputError(f"checkpoint {str(jp.parent)!r} is incomplete: {name} is missing.")
        raw = fp.read_bytes()  # read once: hashed, then decoded
        got = hashlib.sha256(raw).hexdigest()  # of the stored bytes, as save_checkpoint recorded
        if got != want:
            raise InputError(
                f"checkpoint file {str(fp)!r} is truncated or altered: its sha256 is {got[:16]}…, "
                f"the checkpoint recorded {want[:16]}…. Refusing to load it; resume from an earlier checkpoint or retrain."
            )
        loaded.append(_decoded(raw, _codec(doc, jp, name), fp))
    return loaded[0], loaded[1], doc


def _codec(doc: dict, jp: Path, name: str) -> str:
    """The codec ``ckpt.json`` records for tensor file ``name`` (none when it records none)."""
    used = doc.get("codecs", {})
    c = used.get(name, "none") if isinstance(used, dict) else None
    if c not in codecs.CODECS:
        raise InputError(
            f"{str(jp)!r}: 'codecs' must map {name} to one of {', '.join(map(repr, codecs.CODECS))} (got {c!r})."
        )
    why = codecs.missing(c)
    if why:
        raise InputError(
            f"checkpoint file {str(jp.parent / name)!r} is compressed with {c} and {why}. {codecs.INSTALL_HINT}"
        )
    return c


def _decoded(raw: bytes, codec: str, fp: Path) -> dict[str, torch.Tensor]:
    try:
        return codecs.decode(raw, codec, torch.get_num_threads())
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as e:
        raise InputError(f"checkpoint file {str(fp)!r} does not load ({e}).") from None


def flatten_state(
    optim: dict, rngs: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """An optimiser's ``state_dict()`` and named RNG states as one flat dict of tensors
    (``optim.<param id>.<name>``, ``rng.<name>``), and the parameter ids that have state.
    The param groups are not stored: the config rebuilds them. Undone by :func:`unflatten_state`."""
    flat = {f"optim.{i}.{k}": v for i, s in optim["state"].items() for k, v in s.items()}
    flat.update({f"rng.{name}": t for name, t in rngs.items()})
    return flat, list(optim["state"].keys())


def unflatten_state(
    flat: dict[str, torch.Tensor], ids: list[int], groups: list[dict]
) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(optimiser state_dict, RNG states)`` from :func:`flatten_state`'s output, with the
    optimiser's current ``param_groups`` (``optimizer.state_dict()["param_groups"]``)."""
    state = {}
    for i in ids:
        prefix = f"optim.{i}."
        state[i] = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
    rngs = {k[len("rng.") :]: v for k, v in flat.items() if k.startswith("rng.")}
    return {"state": state, "param_groups": groups}, rngs
