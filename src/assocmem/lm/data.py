"""Text loading, tokenizers (character and byte-level BPE), the train / val / test split and batches.

A tokenizer is saved inside the checkpoint JSON as a plain dict (:meth:`state`) so a
checkpoint is self-contained: no file or hub is needed to decode its samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

import torch

from assocmem.errors import InputError

__all__ = [
    "CharTokenizer",
    "BPETokenizer",
    "Tokenizer",
    "load_text",
    "text_file_problem",
    "TEXT_HINT",
    "build_tokenizer",
    "tokenizer_from_state",
    "split_ids",
    "Splits",
    "split_three",
    "get_batch",
]


def text_file_problem(path: str | Path) -> str | None:
    """What keeps ``path`` from being read as a text file (missing, a folder, a device or
    pipe), or None."""
    p = Path(path)
    if p.is_file():
        return None
    if p.is_dir():
        return f"{str(p)!r} is a folder, not a text file"
    if p.exists():
        return f"{str(p)!r} is not a regular file (a device, pipe or socket)"
    return f"text file {str(p)!r} not found (resolved: {p.resolve()})"


TEXT_HINT = (
    "The example configs expect the corpora under ../shared/data/ relative to the repository "
    "root; set [data] path in the config to a UTF-8 text file."
)


def load_text(path: str | Path) -> str:
    """The whole file at ``path`` as UTF-8 text; an :class:`InputError` if it is missing,
    not a regular file, or not UTF-8."""
    problem = text_file_problem(path)
    if problem:
        raise InputError(f"{problem}. {TEXT_HINT}")
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{str(p)!r} is not UTF-8 text ({e}); convert it first.") from None
    except OSError as e:
        raise InputError(f"{str(p)!r}: cannot read it ({e.strerror or e})") from None


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def token(self, i: int) -> str: ...
    def state(self) -> dict: ...


class CharTokenizer:
    """One token per distinct character of the training text (nanoGPT's shakespeare_char)."""

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise InputError(
                f"character {e.args[0]!r} is not in this model's vocabulary of {self.vocab_size} characters."
            ) from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def token(self, i: int) -> str:
        """The raw text of token ``i``."""
        return self.chars[i]

    def state(self) -> dict:
        return {"kind": "char", "chars": "".join(self.chars)}


class BPETokenizer:
    """Byte-level BPE (GPT-2 style) trained locally with the ``tokenizers`` package."""

    def __init__(self, tok):  # tok: tokenizers.Tokenizer
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
            show_progress=False,
        )
        tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
        return cls(tok)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def token(self, i: int) -> str:
        """The byte-level spelling of token ``i`` (``Ġ`` = space, ``Ċ`` = newline)."""
        return self.tok.id_to_token(i)

    def state(self) -> dict:
        return {"kind": "bpe", "json": self.tok.to_str()}


def build_tokenizer(kind: str, text: str, vocab_size: int = 512) -> CharTokenizer | BPETokenizer:
    """Train a tokenizer of ``kind`` (``"char"`` or ``"bpe"``) on ``text``."""
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "bpe":
        if vocab_size < 257:
            raise InputError(f"bpe vocab_size must be > 256 (the byte alphabet); got {vocab_size}.")
        return BPETokenizer.train(text, vocab_size)
    raise InputError(f"unknown tokenizer {kind!r}; use 'char' or 'bpe'.")


def tokenizer_from_state(state: dict) -> CharTokenizer | BPETokenizer:
    """Rebuild a tokenizer from :meth:`state` (as stored in a checkpoint)."""
    if state.get("kind") == "char":
        return CharTokenizer(list(state["chars"]))
    if state.get("kind") == "bpe":
        from tokenizers import Tokenizer as HFTokenizer

        return BPETokenizer(HFTokenizer.from_str(state["json"]))
    raise InputError(f"checkpoint names an unknown tokenizer {state.get('kind')!r}.")


def split_ids(ids: list[int], train_frac: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``train_frac`` of the tokens for training, the rest for validation (nanoGPT's split)."""
    data = torch.tensor(ids, dtype=torch.long)  # (n,)
    n = int(train_frac * len(data))
    return data[:n], data[n:]


class Splits(NamedTuple):
    """Three disjoint, contiguous pieces of one token stream, in this order."""

    train: torch.Tensor  # (n_train,): the first part, trained on
    val: torch.Tensor  # (n_val,): every choice (variants, settings, early stopping)
    test: torch.Tensor  # (n_test,): reported only, never used for a choice


def split_three(ids: list[int], train_frac: float = 0.9, val_frac: float = 0.1) -> Splits:
    """nanoGPT's split (:func:`split_ids`) keeps the last ``1 - train_frac`` as the test set;
    val is the last ``val_frac`` of the rest. With the defaults: train 81 %, val 9 %, test
    10 % of the stream. Each piece is its own tensor, so a window drawn from one
    (:func:`get_batch`) never reaches into another."""
    trainval, test = split_ids(ids, train_frac)  # (n_tv,), (n_test,)
    n_val = int(val_frac * len(trainval))
    return Splits(trainval[: len(trainval) - n_val], trainval[len(trainval) - n_val :], test)


def get_batch(
    data: torch.Tensor, block_size: int, batch_size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``data``: inputs ``x`` and next-token targets ``y``, each ``(B, T)``.

    All randomness comes from ``gen``, so saving its state saves the data position.
    """
    if len(data) <= block_size:
        raise InputError(
            f"the text split has {len(data)} tokens, fewer than block_size + 1 = {block_size + 1}; use a longer text or a shorter context."
        )
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=gen)  # (B,)
    x = torch.stack([data[i : i + block_size] for i in ix.tolist()])  # (B, T)
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix.tolist()])  # (B, T)
    return x, y
