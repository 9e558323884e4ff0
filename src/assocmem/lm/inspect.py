"""Reading a learned memory back: each slot of a MemLM as a graph line ``KEY = VALUE``.

A slot's key is spelled by the tokens that read it most: with ``w[t] = softmax over
slots of LN(wte[t])·K / temp`` (the read a token's embedding would make through the
bank's own normalisation), slot i's key is ``w[t, i]`` normalised over tokens. Its value
is spelled by what the model would predict if the slot's value were the whole residual
stream: ``softmax_t(LN_f(V[i])·wte[t])``. Exact for layer 0's input, an approximation
deeper in (the residual stream there holds more than one token). In a joint-softmax model
the slots are read inside the context read, per head: a token's read over the slots is
then the slot part of each head's softmax, averaged over heads, and a slot's value is
what it adds to the residual, ``c_proj(V[i])``. Each side is written as
a weighted sum of its top tokens, e.g. ``a = 0.62*b + 0.31*c``. The "MLP" bank of a
``swap`` model is the same slot read backwards, so its line is ``V[i] = K[i]``.

Token spellings that keep a line parseable and visible: space ``␣``, newline ``⏎``, tab
``⇥``, carriage return ``␍``; the graph language's own characters ``=``, ``+``, ``*``, ``#``
become ``⟨eq⟩``, ``⟨plus⟩``, ``⟨star⟩``, ``⟨hash⟩``; an all-digit token ``7`` becomes
``⟨7⟩`` (not a weight); other invisible characters ``⟨U+XXXX⟩``. A byte-level BPE token is
decoded to its text first (``Ġ``, a space, is shown as ``␣``; ``ÐµÐ¶`` as ``еж``), and a byte
that is only part of a character as ``⟨xD0⟩``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from assocmem.errors import InputError
from assocmem.lm.memlm import MemLM, joint_slots
from assocmem.primitive import mem

__all__ = ["SlotLine", "spell", "bpe_text", "token_names", "slot_lines", "to_graph"]

_SPECIAL = {
    " ": "␣",
    "\n": "⏎",
    "\t": "⇥",
    "\r": "␍",
    "=": "⟨eq⟩",
    "+": "⟨plus⟩",
    "*": "⟨star⟩",
    "#": "⟨hash⟩",
}


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    moved = [b for b in range(256) if b not in keep]  # the others move up past 255, in order
    return {chr(b): b for b in keep} | {chr(256 + i): b for i, b in enumerate(moved)}


_BYTES = _byte_level_alphabet()


def bpe_text(token: str) -> str:
    """The text of a byte-level BPE token (``ÐµÐ¶`` is the UTF-8 of ``еж``); a byte that is only
    part of a character (a token may split one) becomes a lone surrogate U+DC80..U+DCFF."""
    if not all(c in _BYTES for c in token):
        return token  # not a byte-level spelling (a special token)
    return bytes(_BYTES[c] for c in token).decode("utf-8", errors="surrogateescape")


def spell(token: str, bpe: bool = False) -> str:
    """A visible spelling of ``token`` that the graph language reads as one name; a
    byte-level BPE token (``bpe``) is decoded to its text first, and a byte that is only part
    of a character is written ``⟨xD0⟩``."""
    if bpe:
        token = bpe_text(token)
    if token.isdigit():
        return f"⟨{token}⟩"
    out = []
    for c in token:
        if c in _SPECIAL:
            out.append(_SPECIAL[c])
        elif 0xDC80 <= ord(c) <= 0xDCFF:
            out.append(f"⟨x{ord(c) - 0xDC00:02X}⟩")
        elif not c.isprintable() or c.isspace():
            out.append(f"⟨U+{ord(c):04X}⟩")
        else:
            out.append(c)
    return "".join(out)


def token_names(tok) -> list[str]:
    """Every token of the tokenizer ``tok`` spelled by :func:`spell` (BPE's ``Ġ``, ``Ċ`` as ``␣``, ``⏎``)."""
    from assocmem.lm.data import BPETokenizer

    bpe = isinstance(tok, BPETokenizer)
    return [spell(tok.token(i), bpe) for i in range(tok.vocab_size)]


@dataclass
class SlotLine:
    layer: int
    bank: str  # "assoc" or "mlp"
    slot: int
    key: list[tuple[str, float]]  # (spelled token, weight), strongest first
    value: list[tuple[str, float]]

    @property
    def line(self) -> str:
        return f"{_side(self.key)} = {_side(self.value)}"


def _side(terms: list[tuple[str, float]]) -> str:
    if len(terms) == 1 and terms[0][1] >= 0.995:
        return terms[0][0]
    return " + ".join(f"{w:.2f}*{t}" for t, w in terms)


def _top(p: torch.Tensor, names: list[str], top: int, min_weight: float) -> list[tuple[str, float]]:
    w, i = p.topk(min(top, p.numel()))  # (top,)
    terms = [
        (names[j], float(x)) for x, j in zip(w.tolist(), i.tolist(), strict=True) if x >= min_weight
    ]
    return terms or [(names[int(i[0])], float(w[0]))]


@torch.no_grad()
def slot_lines(
    model: MemLM, token_names: list[str], top: int = 3, min_weight: float = 0.05
) -> list[SlotLine]:
    """Every slot of every layer (assoc bank, then MLP bank) spelled in tokens.

    ``token_names[t]`` is the spelling of token ``t`` (see :func:`spell`).
    """
    if not isinstance(model, MemLM):
        raise InputError(
            "inspect reads the slots of a MemLM; this checkpoint holds a GPT baseline, which has no slots."
        )
    wte = model.wte.weight  # (V, d)
    out: list[SlotLine] = []

    def emit(layer: int, name: str, w: torch.Tensor, values: torch.Tensor) -> None:
        """w (vocab, N): each token's read over the slots; values (N, d) in the residual."""
        pk = w / w.sum(dim=0, keepdim=True)  # (vocab, N): who reads slot i, as shares
        pv = torch.softmax(model.ln_f(values) @ wte.T, dim=-1)  # (N, vocab)
        for i in range(w.shape[1]):
            key = _top(pk[:, i], token_names, top, min_weight)
            out.append(SlotLine(layer, name, i, key, _top(pv[i], token_names, top, min_weight)))

    def bank(layer: int, name: str, ln, K, V, temp) -> None:
        _, w = mem(ln(wte), K, V, temp, return_weights=True)  # (vocab, N)
        emit(layer, name, w, V)

    for li, layer in enumerate(model.h):
        s = layer.slots
        if model.config.joint:
            # The slots share the context read: each head's query (its non-rotary half, where
            # the slot keys live) scores the slots; take the slot part of that softmax,
            # averaged over heads. A slot read by every head adds c_proj(V[i]).
            ctx = layer.ctx
            q = ctx.c_attn(layer.ln_c(wte))[:, : wte.shape[1]]  # (vocab, d)
            q = q.view(-1, ctx.h, ctx.hd).transpose(0, 1)  # (h, vocab, hd)
            Ks, Vs = joint_slots(s, ctx.h)  # (h, N, hd) each
            _, w = mem(q, Ks, Vs, s.temp(0), return_weights=True)  # (h, vocab, N)
            emit(li, "assoc", w.mean(0), ctx.c_proj(s.values()))
        else:
            bank(li, "assoc", layer.ln_a, s.keys(), s.values(), s.temp(0))
        if model.config.mlp_bank == "swap":
            bank(li, "mlp", layer.ln_m, s.values(), s.keys(), s.temp(1))
        elif model.config.mlp_bank == "separate":
            m = layer.mlp_slots
            bank(li, "mlp", layer.ln_m, m.keys(), m.values(), m.temp(0))
    return out


def to_graph(lines: list[SlotLine], source: str = "") -> str:
    """The lines as a ``.graph`` file: one ``KEY = VALUE`` per slot, a ``#`` comment per bank."""
    text = [
        f"# assocmem inspect {source}".rstrip(),
        "# key = value per slot; spellings: ␣ space, ⏎ newline, ⇥ tab, ⟨eq⟩ =, ⟨plus⟩ +, ⟨star⟩ *, ⟨hash⟩ #, ⟨7⟩ digits",
    ]
    cur = None
    for sl in lines:
        if (sl.layer, sl.bank) != cur:
            cur = (sl.layer, sl.bank)
            text.append(f"# layer {sl.layer}, {sl.bank} bank")
        text.append(sl.line)
    return "\n".join(text) + "\n"
