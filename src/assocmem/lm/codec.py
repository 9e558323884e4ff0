"""Codecs of a checkpoint's tensor files: ``"none"`` (plain safetensors) and ``"zipnn"``.

ZipNN (arXiv 2411.05239, the ``zipnn`` package, an optional extra) compresses floating-point
tensors losslessly: it groups the bytes of each number (the exponent bytes, which vary little
in trained weights, together) and entropy-codes each group. A ``"zipnn"`` file is itself a
safetensors file: each tensor becomes a 1-D ``uint8`` tensor holding its compressed bytes, and
the file's metadata records each tensor's dtype, shape and how it was stored: ``"zipnn"``, or
``"raw"`` where ZipNN has no mode for the dtype (integers, RNG states) or does not make the
tensor smaller (a few dozen numbers, where its header outweighs the gain).

ZipNN rewrites the buffer it is handed (it reorders the bytes in place): :func:`encode` only
ever hands it a fresh copy, so the caller's tensors are never touched.
"""

from __future__ import annotations

import json
import typing
from typing import Literal

import torch
from safetensors.torch import load, save

from assocmem.errors import InputError

__all__ = ["Codec", "CODECS", "INSTALL_HINT", "missing", "encode", "decode", "tensor_bytes"]

Codec = Literal["none", "zipnn"]
CODECS: tuple[str, ...] = typing.get_args(Codec)
INSTALL_HINT = 'Install it with: pip install "torch==2.13.0" zipnn (or the project\'s [zip] extra).'
_ZIPNN_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def missing(codec: str) -> str | None:
    """Why ``codec`` cannot be used on this machine (its package is not installed), or None."""
    if codec != "zipnn":
        return None
    try:
        import zipnn  # noqa: F401
    except ImportError as e:
        return f"needs the zipnn package, which does not import here ({e})"
    return None


def _zipnn(dtype: torch.dtype, threads: int):
    from zipnn import ZipNN

    return ZipNN(input_format="byte", bytearray_dtype=_ZIPNN_DTYPES[dtype], threads=threads)


def tensor_bytes(t: torch.Tensor) -> bytes:
    """A tensor's raw bytes (a copy, in memory order of its contiguous form)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _u8(data: bytes) -> torch.Tensor:
    """``data`` as a 1-D uint8 tensor of its own (a writable copy; empty allowed)."""
    if not data:
        return torch.empty(0, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _stored(t: torch.Tensor, threads: int) -> tuple[str, bytes]:
    """How one tensor is stored and its bytes: ZipNN's stream when that is smaller, else raw."""
    raw = tensor_bytes(t)
    if t.dtype not in _ZIPNN_DTYPES or not raw:
        return "raw", raw
    packed = bytes(_zipnn(t.dtype, threads).compress(bytearray(raw)))  # a copy: rewritten in place
    return ("zipnn", packed) if len(packed) < len(raw) else ("raw", raw)


def encode(
    tensors: dict[str, torch.Tensor], codec: str, threads: int = 1, check: bool = True
) -> bytes:
    """The bytes of a tensor file holding ``tensors`` in ``codec`` (the inputs stay untouched).

    ``check``: decode the result and compare it byte for byte with ``tensors`` (zipnn only), so
    that a codec fault is caught when saving, while the previous checkpoint still exists, and
    not at the resume that needs it."""
    if codec == "none":
        return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    if codec != "zipnn":
        raise ValueError(f"unknown codec {codec!r}; one of {CODECS}")
    blobs, layout = {}, {}
    for name, t in tensors.items():
        how, data = _stored(t, threads)
        blobs[name] = _u8(data)
        layout[name] = [str(t.dtype).removeprefix("torch."), list(t.shape), how]
    raw = save(blobs, metadata={"codec": codec, "layout": json.dumps(layout)})
    if check:
        back = decode(raw, codec, threads)
        bad = [k for k, t in tensors.items() if not _same(back[k], t)]
        if bad:
            raise RuntimeError(f"the {codec} codec does not give back tensors {bad} bit-exactly")
    return raw


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes (bit-exact: NaN payloads and -0.0 included)."""
    return a.dtype == b.dtype and a.shape == b.shape and tensor_bytes(a) == tensor_bytes(b)


def _metadata(raw: bytes) -> dict:
    """The ``__metadata__`` of safetensors bytes (its header: a length, then JSON)."""
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]).get("__metadata__") or {}


def _tensor(data: bytes, dtype_name: str, shape: list, how: str, threads: int) -> torch.Tensor:
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype) or (how == "zipnn" and dtype not in _ZIPNN_DTYPES):
        raise ValueError(f"holds a tensor of unknown dtype {dtype_name!r} for {how!r}")
    if how == "zipnn":
        data = bytes(_zipnn(dtype, threads).decompress(data))
    elif how != "raw":
        raise ValueError(f"names an unknown storage {how!r}")
    numel = 1
    for s in shape:
        numel *= s
    if len(data) != numel * dtype.itemsize:
        raise ValueError(f"holds {len(data)} bytes for a {dtype_name} tensor of shape {shape}")
    return _u8(data).view(dtype).reshape(shape)


def decode(raw: bytes, codec: str, threads: int = 1) -> dict[str, torch.Tensor]:
    """The tensors of a tensor file's bytes written by :func:`encode` with ``codec``.

    Raises :class:`ValueError` (or safetensors' error) on bytes that do not decode, and
    :class:`~assocmem.errors.InputError` when the codec's package is missing."""
    blobs = load(raw)  # parses and checks the container
    if codec == "none":
        return blobs
    why = missing(codec)
    if why:
        raise InputError(f"{why}. {INSTALL_HINT}")
    meta = _metadata(raw)
    if meta.get("codec") != codec:
        raise ValueError(f"is not a {codec} file (its metadata says {meta.get('codec')!r})")
    layout = json.loads(meta.get("layout", "{}"))
    if set(layout) != set(blobs):
        raise ValueError("has a layout that does not name its tensors")
    return {
        name: _tensor(tensor_bytes(blobs[name]), *layout[name], threads=threads) for name in blobs
    }
