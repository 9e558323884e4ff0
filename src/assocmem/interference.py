"""Add relations to a compiled memory and report which old reads they change.

A hand-set memory grows by new slots: the old rows of ``K`` and ``V`` stay as they
were, but every read is a softmax over all rows, so a new key close to an old one
takes read weight from it. :func:`interference_report` compiles the old graph and the
old graph plus the added relations over one embedding (the vocabulary of both, so the
only change between the two is the new slots), reads every old key back in each
(:func:`~assocmem.compiler.check_memory`) and pairs the results: the read, its margin
and whether it flipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from assocmem.compiler import SlotCheck, check_memory, compile_graph
from assocmem.embedding import EmbeddingKind, Vocabulary, make_embedding
from assocmem.graph import Graph

__all__ = ["ReadChange", "InterferenceReport", "add_relations", "interference_report"]


@dataclass(frozen=True)
class ReadChange:
    """One old slot read back before and after the relations were added."""

    before: SlotCheck
    after: SlotCheck

    @property
    def flipped(self) -> bool:
        """The read passed before and fails after, or the other way round."""
        return self.before.ok != self.after.ok

    @property
    def broken(self) -> bool:
        """The read passed before and fails after."""
        return self.before.ok and not self.after.ok

    @property
    def margin_change(self) -> float:
        return self.after.margin - self.before.margin


@dataclass(frozen=True)
class InterferenceReport:
    """Every old slot's read before and after, and the added slots' own reads."""

    old: tuple[ReadChange, ...]
    added: tuple[SlotCheck, ...]
    dim: int

    @property
    def broken(self) -> list[ReadChange]:
        return [c for c in self.old if c.broken]


def add_relations(old: Graph, added: Graph) -> Graph:
    """``old`` with the slots of ``added`` after its own (each slot keeps its file and line)."""
    return Graph(slots=old.slots + added.slots, file=old.file)


def interference_report(
    old: Graph,
    added: Graph,
    kind: EmbeddingKind = "onehot",
    dim: int = 64,
    seed: int = 0,
    temp: float = 0.1,
    *,
    threshold: float = 0.05,
    qk_norm: bool = False,
) -> InterferenceReport:
    """Compile ``old`` and ``old + added`` over one embedding and read every slot back.

    Both memories are read over the vocabulary of both graphs (for ``onehot`` the old
    memory simply has zeros in the new tokens' dimensions; ``random`` vectors depend on
    the token alone), so a change in an old read is due to the new slots only.
    """
    both = add_relations(old, added)
    emb = make_embedding(Vocabulary.from_tokens(both.tokens), kind, dim, seed)
    before = check_memory(compile_graph(old, emb), emb, temp, threshold=threshold, qk_norm=qk_norm)
    after = check_memory(compile_graph(both, emb), emb, temp, threshold=threshold, qk_norm=qk_norm)
    changes = tuple(ReadChange(b, a) for b, a in zip(before, after[: len(old)], strict=True))
    return InterferenceReport(old=changes, added=tuple(after[len(old) :]), dim=emb.dim)
