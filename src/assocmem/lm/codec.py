"""Codecs of a checkpoint's tensor files: ``"none"`` (plain safetensors) and ``"zipnn"``.

ZipNN (arXiv 2411.05239, the ``zipnn`` package, an optional extra) compresses floating-point
tensors losslessly: it groups the bytes of each number (the exponent bytes, which vary little
in trained weights, together) and entropy-codes each group. A ``"zipnn"`` file is itself a
safetensors file holding one 1-D ``uint8`` tensor per dtype: the bytes of every tensor of
that dtype, one after the other, compressed as one stream (one stream compresses faster than
many small ones). Its metadata records each tensor's dtype, shape and byte range in its
stream, and each stream's storage: ``"zipnn"``, or ``"raw"`` where ZipNN has no mode for the
dtype (integers, RNG states) or does not make it smaller.

ZipNN rewrites the buffer it is handed (it reorders the bytes in place): :func:`encode` only
ever hands it a fresh copy (the joined bytes), so the caller's tensors are never touched.
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


def _u8(data: bytes | bytearray) -> torch.Tensor:
    """``data`` as a 1-D uint8 tensor (sharing a bytearray's memory; empty allowed)."""
    if not data:
        return torch.empty(0, dtype=torch.uint8)
    buf = data if isinstance(data, bytearray) else bytearray(data)
    return torch.frombuffer(buf, dtype=torch.uint8)


def _stream(dtype: torch.dtype, data: bytearray, threads: int) -> tuple[str, bytes | bytearray]:
    """How one dtype's joined bytes are stored, and the stored bytes: ZipNN's stream when that
    is smaller, else the bytes themselves."""
    if dtype not in _ZIPNN_DTYPES or not data:
        return "raw", data
    # a copy: ZipNN rewrites what it is given, and ``data`` is kept in case ZipNN does not pay
    packed = _zipnn(dtype, threads).compress(bytearray(data))
    return ("zipnn", packed) if len(packed) < len(data) else ("raw", data)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


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
    joined: dict[torch.dtype, bytearray] = {}
    layout = {}
    for name, t in tensors.items():
        buf = joined.setdefault(t.dtype, bytearray())
        data = tensor_bytes(t)
        layout[name] = [_dtype_name(t.dtype), list(t.shape), len(buf), len(buf) + len(data)]
        buf += data
    blobs, storage = {}, {}
    for dtype, data in joined.items():
        storage[_dtype_name(dtype)], stored = _stream(dtype, data, threads)
        blobs[_dtype_name(dtype)] = _u8(stored)
    meta = {"codec": codec, "layout": json.dumps(layout), "streams": json.dumps(storage)}
    raw = save(blobs, metadata=meta)
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


def _joined(name: str, blob: torch.Tensor, how: str, threads: int) -> torch.Tensor:
    """One dtype's stream decoded to its joined bytes, as a uint8 tensor."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or (how == "zipnn" and dtype not in _ZIPNN_DTYPES):
        raise ValueError(f"holds a stream of unknown dtype {name!r} stored as {how!r}")
    if how == "zipnn":
        return _u8(_zipnn(dtype, threads).decompress(tensor_bytes(blob)))
    if how != "raw":
        raise ValueError(f"names an unknown storage {how!r}")
    return blob


def _tensor(joined: dict, name: str, dtype_name: str, shape: list, a: int, b: int) -> torch.Tensor:
    """Tensor ``name`` cut from its dtype's joined bytes (a copy of its own)."""
    data = joined.get(dtype_name)
    if data is None:
        raise ValueError(f"has no {dtype_name} stream for tensor {name}")
    dtype = getattr(torch, dtype_name)
    numel = 1
    for n in shape:
        numel *= n
    if not (0 <= a <= b <= len(data) and b - a == numel * dtype.itemsize):
        raise ValueError(
            f"gives tensor {name} bytes {a}:{b} of {len(data)}, not a {dtype_name} {shape}"
        )
    return data[a:b].clone().view(dtype).reshape(shape)


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
    storage = json.loads(meta.get("streams", "{}"))
    if set(storage) != set(blobs):
        raise ValueError("has streams that its metadata does not name")
    joined = {k: _joined(k, blobs[k], how, threads) for k, how in storage.items()}
    layout = json.loads(meta.get("layout", "{}"))
    return {name: _tensor(joined, name, *entry) for name, entry in layout.items()}
