"""A memory read back from a trained MemLM: every slot as ``KEY = VALUE`` in its tokens.

The spelling is exactly ``assocmem inspect --export``'s (:mod:`assocmem.lm.inspect`): this
module only turns those lines into a :class:`~assocmem.graph.Graph`, so the learned memory
can be checked, edited and compiled like a hand-written one::

    from assocmem.memories.learned import learned_graph
    graph = learned_graph("runs/pushkin_bpe_memlm", layer=0, bank="assoc")
    print(graph)           # ␣ка = 0.41*ша + ...

The tokens are the model's (characters or byte-level BPE pieces, spaces shown as ``␣``),
not words: a learned memory speaks the model's vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from assocmem.errors import InputError
from assocmem.graph import Graph, parse_graph

__all__ = ["learned_graph", "graph_from_model"]


def graph_from_model(
    model, token_names: list[str], *, layer: int | None = None, bank: str | None = None,
    top: int = 3, source: str = "<memlm>",
) -> Graph:  # fmt: skip
    """The slots of ``model`` (a MemLM) as a graph; ``token_names[t]`` spells token ``t``
    (:func:`assocmem.lm.inspect.spell`). ``layer`` / ``bank`` (``assoc`` or ``mlp``) keep
    only those slots."""
    from assocmem.lm.inspect import slot_lines, to_graph

    lines = slot_lines(model, token_names, top=top)
    if layer is not None:
        lines = [sl for sl in lines if sl.layer == layer]
    if bank is not None:
        lines = [sl for sl in lines if sl.bank == bank]
    if not lines:
        raise InputError(f"{source}: no slots in layer {layer}, bank {bank}")
    return parse_graph(to_graph(lines, source), file=source)


def learned_graph(
    ckpt: str | Path, *, layer: int | None = None, bank: str | None = None, top: int = 3
) -> Graph:
    """The slots of the MemLM checkpoint ``ckpt`` (a run folder or its ckpt.json) as a graph."""
    from assocmem.lm.inspect import token_names
    from assocmem.lm.train import load_model

    model, tok, _ = load_model(ckpt)
    return graph_from_model(
        model, token_names(tok), layer=layer, bank=bank, top=top, source=str(ckpt)
    )
