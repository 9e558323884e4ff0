"""Planted features: residual streams whose every direction a person wrote down.

A random relation graph (each token is the key of one slot whose value is ``terms`` other
tokens, ``t = a + b``) is compiled against random unit embeddings of width ``d``, with
``tokens = tokens_per_dim · d`` tokens: beyond one token per dimension the token directions
are in superposition. A :class:`~assocmem.model.MemTransformer` (cosine reads, no
renormalisation) runs random token sequences; its residual stream is then exactly a sum of
token directions, ``x = c · E``, and the coefficients ``c`` follow from the traced read
weights (:func:`true_codes`): the input token with weight 1, each read's weights times the
token content of what it read (slot values, earlier positions, slot keys). So the true
features are the rows of ``E`` (the slots' keys are single tokens here, so they are rows of
``E`` too), and the true codes are known for every activation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from assocmem.compiler import Memory, compile_graph
from assocmem.config import ModelConfig
from assocmem.embedding import Vocabulary, make_embedding
from assocmem.errors import InputError
from assocmem.graph import Graph, parse_graph
from assocmem.model import MemTransformer
from assocmem.sae import metrics
from assocmem.sae.model import SAE, SAEConfig
from assocmem.sae.train import SAETrainConfig, train_sae

__all__ = [
    "PlantedSpec",
    "PlantedSet",
    "planted_model",
    "true_codes",
    "planted_activations",
    "score_planted",
]


@dataclass(frozen=True)
class PlantedSpec:
    """A planted-feature data set: graph, embedding, model and sequences."""

    d: int = 32  # residual width
    tokens_per_dim: float = 1.0  # tokens / d: > 1 puts the token directions in superposition
    terms: int = 1  # value terms per slot: more terms, more features active per position
    layers: int = 1
    seq_len: int = 16
    n_seqs: int = 2000
    temp: float = 0.05  # of every (cosine) read: sharp, so each read picks few rows
    seed: int = 0  # graph and embedding
    seq_seed: int = 0  # the sequences: another value gives held-out data from the same model

    def __post_init__(self) -> None:
        if self.d < 2 or self.layers < 1 or self.seq_len < 2 or self.n_seqs < 1:
            raise InputError("planted set: need d >= 2, layers >= 1, seq_len >= 2, n_seqs >= 1")
        if not 1 <= self.terms < self.n_tokens:
            raise InputError(f"planted set: terms must lie in 1..{self.n_tokens - 1}")

    @property
    def n_tokens(self) -> int:
        return max(int(round(self.tokens_per_dim * self.d)), 2)


@dataclass(frozen=True)
class PlantedSet:
    acts: torch.Tensor  # (N, d) float32: the residual stream at `hook`, one row per position
    codes: torch.Tensor  # (N, n) the true coefficients: acts = codes @ features
    features: torch.Tensor  # (n, d) unit token directions (rows of E)
    hook: str

    @property
    def true_l0(self) -> float:
        """Mean number of features a position holds with weight above 0.1."""
        return float((self.codes.abs() > 0.1).sum(-1).float().mean())


def random_graph(spec: PlantedSpec) -> Graph:
    """``t{i} = t{a} + t{b} …``: every token keys one slot of ``spec.terms`` random other tokens."""
    g = torch.Generator().manual_seed(spec.seed)
    n, lines = spec.n_tokens, []
    for i in range(n):
        others = torch.randperm(n - 1, generator=g)[: spec.terms]  # (terms,) indices skipping i
        values = [int(j) + (int(j) >= i) for j in others]
        lines.append(f"t{i} = " + " + ".join(f"t{j}" for j in values))
    return parse_graph("\n".join(lines), file="<planted>")


def planted_model(spec: PlantedSpec) -> MemTransformer:
    """The model over :func:`random_graph` with random unit embeddings of width ``spec.d``."""
    graph = random_graph(spec)
    vocab = Vocabulary(tuple(f"t{i}" for i in range(spec.n_tokens)))
    emb = make_embedding(vocab, "random", dim=spec.d, seed=spec.seed)
    cfg = ModelConfig(
        layers=spec.layers,
        temp_assoc=spec.temp,
        temp_context=spec.temp,
        temp_mlp=spec.temp,
        qk_norm=True,
    )
    return MemTransformer(compile_graph(graph, emb), emb, cfg)


def _token_content(memory: Memory, vocab: Vocabulary, side: str) -> torch.Tensor:
    """``(m, n)``: slot ``i``'s ``side`` ("key" or "value") as weights over the tokens."""
    out = torch.zeros(len(memory), len(vocab), dtype=torch.float64)  # (m, n)
    for i, s in enumerate(memory.slots):
        for t in getattr(s, side):
            out[i, vocab.index[t.token]] += t.weight
    return out


def true_codes(model: MemTransformer, ids: torch.Tensor, cache: dict) -> torch.Tensor:
    """The token coefficients ``(B, T, n)`` of ``layers.{L}.out`` from the cached read weights."""
    cfg = model.config
    if cfg.norm != "none" or cfg.joint or cfg.context_source != "layer":
        raise InputError("true_codes needs norm='none', joint=False, context_source='layer'")
    vocab = model.embedding.vocab
    vals = _token_content(model.memory, vocab, "value")  # (m, n)
    keys = _token_content(model.memory, vocab, "key")  # (m, n)
    c = torch.nn.functional.one_hot(ids, len(vocab)).double()  # (B, T, n)
    for layer in range(1, cfg.layers + 1):
        p = f"layers.{layer}"
        c_in = c
        c = c + cache[f"{p}.assoc.weights"] @ vals  # (B, T, n)
        c = c + cache[f"{p}.context.weights"] @ c_in  # (B, T, n): earlier positions' content
        c = c + cache[f"{p}.mlp.weights"] @ keys  # (B, T, n): the swapped read returns keys
    return c


@torch.no_grad()
def planted_activations(spec: PlantedSpec) -> PlantedSet:
    """Run :func:`planted_model` on ``spec.n_seqs`` random sequences; keep ``layers.{L}.out``."""
    model = planted_model(spec)
    g = torch.Generator().manual_seed(spec.seed * 7919 + spec.seq_seed + 1)
    ids = torch.randint(spec.n_tokens, (spec.n_seqs, spec.seq_len), generator=g)  # (B, T)
    hook = f"layers.{spec.layers}.out"
    _, cache = model.run_with_cache(ids, names_filter=lambda n: n == hook or n.endswith("weights"))
    codes = true_codes(model, ids, cache)  # (B, T, n)
    acts = cache[hook]  # (B, T, d)
    return PlantedSet(
        acts=acts.reshape(-1, spec.d).float(),
        codes=codes.reshape(-1, spec.n_tokens).float(),
        features=model.E.float(),
        hook=hook,
    )


def score_planted(
    planted: PlantedSet, sae_cfg: SAEConfig, tc: SAETrainConfig, held_out: PlantedSet
) -> dict:
    """Train an SAE on ``planted`` and score it on ``held_out`` (same model, other sequences):
    MMCS and MCC of its decoder against the true features (and the MMCS of an untrained SAE's
    random unit directions: chance), L0, explained variance, dead fraction; and the true L0
    of the held-out set."""
    sae, _ = train_sae(planted.acts, sae_cfg, tc)
    with torch.no_grad():
        x_hat, f = sae(held_out.acts)  # (N, d), (N, w)
    return {
        "kind": sae_cfg.kind,
        "width": sae_cfg.width,
        "mmcs": metrics.mmcs(sae.W_dec, planted.features),
        "mmcs_random": metrics.mmcs(SAE(sae_cfg, seed=tc.seed + 1).W_dec, planted.features),
        "mcc": metrics.mcc(sae.W_dec, planted.features),
        "l0": metrics.l0(f),
        "true_l0": held_out.true_l0,
        "explained_variance": metrics.explained_variance(held_out.acts, x_hat),
        "dead_fraction": metrics.dead_fraction(f),
    }
