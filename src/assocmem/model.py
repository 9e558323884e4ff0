"""MemTransformer: a transformer in which every sublayer is one read of a memory.

For every position i (all at once, with masks), every layer does, in order::

    x += mem(x, K, V, t_assoc)              # associative bank: the compiled graph
    x += mem(x, X[:i], X[:i], t_context)    # context bank: the layer's input at earlier positions
    x += mem(x, V, K, t_mlp)                # "MLP" bank: the same memory, keys and values swapped

The probe token is simply the last position; its logits are read after
``readout_layer`` layers as ``x · Eᵀ``.

Every intermediate has a stable hook name (TransformerLens style, layers count
from 1 as in the seed's "measured on the third layer")::

    embed                       (..., n, d)   token vectors
    layers.{l}.{bank}.weights   (..., n, m)   read weights (m = slots, or n positions for context)
    layers.{l}.{bank}.read      (..., n, d)   what the read returned
    layers.{l}.{bank}.out       (..., n, d)   the residual after adding it
    layers.{l}.{bank}.logits    (..., n, V)   logit lens at that point
    layers.{l}.out              (..., n, d)   the layer's output
    logits                      (..., n, V)   the readout at ``readout_layer``

``bank`` is ``assoc``, ``context``, ``mlp`` (or ``joint`` and ``mlp`` with ``joint=True``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from assocmem.compiler import Memory
from assocmem.config import BANKS, ModelConfig
from assocmem.embedding import Embedding
from assocmem.errors import InputError, did_you_mean
from assocmem.primitive import mem
from assocmem.trace import Trace

__all__ = ["ModelConfig", "MemTransformer", "ModelOutput", "Hook", "BANKS"]

Hook = Callable[[torch.Tensor, str], "torch.Tensor | None"]


@dataclass
class ModelOutput:
    """The result of a forward pass."""

    logits: torch.Tensor  # (..., n, V) readout at config.readout_at
    resid: torch.Tensor  # (..., n, d) the residual at config.readout_at


@dataclass
class _Run:
    """Per-call hook state: what to record and what to replace."""

    hooks: dict[str, Hook] = field(default_factory=dict)
    cache: dict[str, torch.Tensor] | None = None
    names_filter: Callable[[str], bool] | None = None

    def __call__(self, name: str, value: torch.Tensor) -> torch.Tensor:
        fn = self.hooks.get(name)
        if fn is not None:
            new = fn(value, name)
            if new is not None:
                if new.shape != value.shape:
                    raise InputError(
                        f"hook {name!r} returned shape {tuple(new.shape)}, expected {tuple(value.shape)}"
                    )
                value = new
        if self.cache is not None and (self.names_filter is None or self.names_filter(name)):
            self.cache[name] = value.detach()
        return value

    def wants(self, name: str) -> bool:
        return name in self.hooks or (
            self.cache is not None and (self.names_filter is None or self.names_filter(name))
        )


class MemTransformer(torch.nn.Module):
    """A stack of memory reads over a compiled :class:`~assocmem.compiler.Memory`.

    Args:
        memory: the compiled graph, ``K``, ``V`` of shape ``(m, d)``.
        embedding: token vectors ``E`` ``(V, d)``, for the input and the readout.
        config: layers, temperatures and the options of :class:`ModelConfig`.
    """

    def __init__(self, memory: Memory, embedding: Embedding, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        self.memory = memory
        self.embedding = embedding
        self.register_buffer("K", memory.K, persistent=False)  # (m, d)
        self.register_buffer("V", memory.V, persistent=False)  # (m, d)
        self.register_buffer("E", embedding.E, persistent=False)  # (V, d)
        # The memory's rows as the reads score them (unit rows under qk_norm), made once here
        # rather than in every layer of every forward; without qk_norm they are K and V.
        if self.config.qk_norm:
            K_unit, V_unit = memory.scored(True)  # (m, d) each
            self.register_buffer("K_unit", K_unit, persistent=False)  # (m, d)
            self.register_buffer("V_unit", V_unit, persistent=False)  # (m, d)

    @property
    def K_score(self) -> torch.Tensor:
        """The keys as the assoc read scores them: ``(m, d)``."""
        return self.K_unit if self.config.qk_norm else self.K

    @property
    def V_score(self) -> torch.Tensor:
        """The values as the swapped "MLP" read scores them (its keys): ``(m, d)``."""
        return self.V_unit if self.config.qk_norm else self.V

    @property
    def hook_names(self) -> list[str]:
        """Every hook name of this model, in the order they are computed."""
        names = ["embed", "embed.logits"]
        for layer in range(1, self.config.depth + 1):
            for bank in self.config.banks:
                names += [
                    f"layers.{layer}.{bank}.{p}" for p in ("weights", "read", "out", "logits")
                ]
            names.append(f"layers.{layer}.out")
        return names + ["logits"]

    def ids(self, tokens: Sequence[str] | torch.Tensor) -> torch.Tensor:
        """Token strings (or ids ``(..., n)``, checked) to ids."""
        if isinstance(tokens, torch.Tensor):
            size = len(self.embedding.vocab.tokens)
            if (
                tokens.dtype.is_floating_point
                or tokens.dtype.is_complex
                or tokens.dtype == torch.bool
            ):
                raise InputError(f"token ids must be integers; got dtype {tokens.dtype}")
            if tokens.numel() and not (0 <= int(tokens.min()) and int(tokens.max()) < size):
                # a negative id would index from the end: a silent wrong token
                raise InputError(
                    f"token ids must lie in 0..{size - 1} (the vocabulary); got "
                    f"{int(tokens.min())}..{int(tokens.max())}"
                )
            return tokens
        if not len(tokens):
            raise InputError("the input is empty: give at least one token")
        return self.embedding.vocab.ids(list(tokens))

    def _readout(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        v = x - x0 if self.config.readout == "delta" else x  # (..., n, d)
        return v @ self.E.T  # (..., n, V)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)  # (..., n, d)

    def _read(
        self,
        run: _Run,
        name: str,
        q: torch.Tensor,
        K: torch.Tensor,
        V: torch.Tensor,
        temp: float,
        mask: torch.Tensor | None,
        floor: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One hooked memory read ``(..., n, d)``. Weights are materialised only when asked for.

        With ``qk_norm`` the query is normalised here and ``K`` must come normalised
        (``K_score``, ``V_score``, or the normalised context): ``softmax(cos(q, K) / temp) · V``.
        ``floor``: the threshold (``min_score``): a float, or one per column ``(m,)``; the
        query reads only columns with ``q·k >= floor`` (``K`` as given), and a null slot
        (zero key, zero value) that only a query matching no column reads. The null's
        weight is left out of the recorded weights (its value is zero).
        """
        if self.config.qk_norm:
            q = self._norm(q)  # (..., n, d)
        Kr, Vr, bias = K, V, None
        if floor is not None:
            below = q @ K.transpose(-1, -2) < floor  # (..., n, m): the mask, not a read
            if mask is not None:
                below = below | ~mask
            mask = torch.cat([~below, torch.ones_like(below[..., :1])], dim=-1)  # (..., n, m+1)
            Kr = torch.cat([K, K.new_zeros(*K.shape[:-2], 1, K.shape[-1])], dim=-2)  # (..., m+1, d)
            Vr = torch.cat([V, V.new_zeros(*V.shape[:-2], 1, V.shape[-1])], dim=-2)  # (..., m+1, d)
            # the null's score: far below any readable slot's, so it takes weight only alone
            bias = torch.zeros(Kr.shape[-2], dtype=q.dtype, device=q.device)  # (m+1,)
            bias[-1] = -1e4
        if run.wants(f"{name}.weights"):
            r, w = mem(
                q, Kr, Vr, temp, mask=mask, bias=bias, return_weights=True
            )  # (..., n, d), (..., n, m[+1])
            if floor is not None:
                w = w[..., :-1]  # (..., n, m)
            w2 = run(f"{name}.weights", w)
            if w2 is not w:  # a patched weight row: recombine the values with it
                r = w2 @ V  # (..., n, d)
        else:
            r = mem(q, Kr, Vr, temp, mask=mask, bias=bias)  # (..., n, d)
        return run(f"{name}.read", r)

    def _forward(self, ids: torch.Tensor, run: _Run) -> ModelOutput:
        cfg = self.config
        ids = ids.to(self.E.device)  # token strings become CPU ids; follow the model to its device
        n = ids.shape[-1]
        if n == 0:
            raise InputError("the input is empty: give at least one token")
        x0 = run("embed", self.E[ids])  # (..., n, d)
        if run.wants("embed.logits"):
            run("embed.logits", self._readout(x0, x0))
        # context: position i reads positions j < i (j <= i with context_self)
        ctx_mask = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril(
            0 if cfg.context_self else -1
        )  # (n, n)
        x, out = x0, None

        def add(name: str, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            x = x + r  # (..., n, d)
            if cfg.norm == "read":
                x = self._norm(x)
            x = run(f"{name}.out", x)
            if run.wants(f"{name}.logits"):
                run(f"{name}.logits", self._readout(x, x0))
            return x

        for layer in range(1, cfg.depth + 1):
            # (..., n, d) this layer's context memory: its input, or the token vectors
            prev = x0 if cfg.context_source == "embed" else x
            prev_score = self._norm(prev) if cfg.qk_norm else prev  # (..., n, d) context keys
            p = f"layers.{layer}"
            if cfg.joint:
                # One softmax over [slots; earlier positions]. Keys are pre-divided by their
                # bank's temperature so the read itself runs at temp 1.
                ta, tc = cfg.temp("assoc", layer), cfg.temp("context", layer)
                lead = prev.shape[:-2]
                Kj = torch.cat(
                    [(self.K_score / ta).expand(*lead, *self.K.shape), prev_score / tc], dim=-2
                )  # (..., m+n, d)
                Vj = torch.cat([self.V.expand(*lead, *self.V.shape), prev], dim=-2)  # (..., m+n, d)
                mj = torch.cat(
                    [torch.ones(n, len(self.K), dtype=torch.bool, device=ids.device), ctx_mask],
                    dim=-1,
                )  # (n, m+n)
                floor = None
                if cfg.min_score is not None:  # the slot columns only (keys divided by ta)
                    floor = torch.full((Kj.shape[-2],), -math.inf, dtype=x.dtype, device=x.device)
                    floor[: len(self.K)] = cfg.min_score / ta  # (m+n,)
                x = add(f"{p}.joint", x, self._read(run, f"{p}.joint", x, Kj, Vj, 1.0, mj, floor))
            else:
                x = add(
                    f"{p}.assoc",
                    x,
                    self._read(
                        run,
                        f"{p}.assoc",
                        x,
                        self.K_score,
                        self.V,
                        cfg.temp("assoc", layer),
                        None,
                        cfg.min_score,
                    ),
                )
                x = add(
                    f"{p}.context",
                    x,
                    self._read(
                        run,
                        f"{p}.context",
                        x,
                        prev_score,
                        prev,
                        cfg.temp("context", layer),
                        ctx_mask,
                    ),
                )
            x = add(
                f"{p}.mlp",
                x,
                self._read(
                    run,
                    f"{p}.mlp",
                    x,
                    self.V_score,
                    self.K,
                    cfg.temp("mlp", layer),
                    None,
                    cfg.min_score,
                ),
            )
            if cfg.norm == "layer":
                x = self._norm(x)
            x = run(f"{p}.out", x)
            if layer == cfg.readout_at:
                out = x
        assert out is not None
        return ModelOutput(logits=run("logits", self._readout(out, x0)), resid=out)

    def forward(self, tokens: Sequence[str] | torch.Tensor) -> ModelOutput:
        """Run ``tokens`` (strings, or ids ``(..., n)``) on the fast path."""
        return self._forward(self.ids(tokens), _Run())

    def run_with_hooks(
        self, tokens: Sequence[str] | torch.Tensor, hooks: dict[str, Hook]
    ) -> ModelOutput:
        """Run with ``hooks``: ``{name: fn(value, name) -> new value or None}``.

        A hook that returns a tensor replaces the value from then on (patching);
        e.g. ``{"layers.1.context.read": lambda v, n: torch.zeros_like(v)}`` removes
        the first context read. Patching ``*.weights`` recombines the values with
        the new weights.
        """
        return self._forward(self.ids(tokens), _Run(hooks=self._checked(hooks)))

    def _checked(self, hooks: dict[str, Hook] | None) -> dict[str, Hook]:
        """``hooks``, refusing unknown names (a typo would silently patch nothing)."""
        unknown = sorted(set(hooks or {}) - set(self.hook_names))
        if unknown:
            raise InputError(
                f"unknown hook name(s) {unknown}.{did_you_mean(unknown[0], self.hook_names)}"
            )
        return dict(hooks or {})

    def run_with_cache(
        self,
        tokens: Sequence[str] | torch.Tensor,
        names_filter: Callable[[str], bool] | None = None,
        hooks: dict[str, Hook] | None = None,
    ) -> tuple[ModelOutput, dict[str, torch.Tensor]]:
        """Run and record every activation (or those ``names_filter`` keeps) by hook name."""
        run = _Run(hooks=self._checked(hooks), cache={}, names_filter=names_filter)
        out = self._forward(self.ids(tokens), run)
        return out, run.cache or {}

    def run_with_trace(
        self, tokens: Sequence[str] | torch.Tensor, hooks: dict[str, Hook] | None = None
    ) -> tuple[ModelOutput, Trace]:
        """Run and return ``(output, Trace)``: weights, residuals and logit lens of every read."""
        ids = self.ids(tokens)
        out, cache = self.run_with_cache(ids, hooks=hooks)
        names = [self.embedding.vocab.tokens[i] for i in ids.reshape(-1, ids.shape[-1])[0].tolist()]
        return out, Trace(
            cache=cache,
            tokens=names,
            vocab=list(self.embedding.vocab.tokens),
            slots=self.memory.labels,
            config=self.config,
        )
