"""Hook names for the learned language models, in the TransformerLens style of
:class:`assocmem.model.MemTransformer` (layers count from 1)::

    embed            (B, T, C)   the token vectors (plus positions for GPT), after dropout
    layers.{l}.out   (B, T, C)   the residual stream after layer / block ``l``

:class:`HookedLM` gives a model with ``drop`` (the embedding dropout) and ``h`` (its layers)
``run_with_cache`` and ``run_with_hooks``, done with PyTorch forward hooks on those modules,
so the models' own ``forward`` stays untouched (and as fast) when nothing is hooked.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from assocmem.errors import InputError, did_you_mean

__all__ = ["HookedLM", "LMHook"]

LMHook = Callable[[torch.Tensor, str], "torch.Tensor | None"]


class HookedLM(nn.Module):
    """Mixin for :class:`~assocmem.lm.gpt.GPT` and :class:`~assocmem.lm.memlm.MemLM`."""

    @property
    def hook_names(self) -> list[str]:
        """Every hook name of this model, in the order they are computed."""
        return ["embed"] + [f"layers.{i}.out" for i in range(1, len(self.h) + 1)]

    def _module(self, name: str) -> nn.Module:
        return self.drop if name == "embed" else self.h[int(name.split(".")[1]) - 1]

    def run_with_hooks(
        self,
        idx: torch.Tensor,
        hooks: dict[str, LMHook],
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``forward(idx, targets)`` with ``hooks``: ``{name: fn(value, name) -> new value or None}``.

        A hook that returns a tensor replaces the value from then on (patching), e.g.
        ``{"layers.2.out": lambda v, n: sae(v)}`` splices an autoencoder's reconstruction in.
        """
        unknown = sorted(set(hooks) - set(self.hook_names))
        if unknown:
            raise InputError(
                f"unknown hook name(s) {unknown}.{did_you_mean(unknown[0], self.hook_names)}"
            )
        handles = []
        for name, fn in hooks.items():

            def call(_mod, _inp, out, name=name, fn=fn):
                new = fn(out, name)
                if new is not None and new.shape != out.shape:
                    raise InputError(
                        f"hook {name!r} returned shape {tuple(new.shape)}, expected {tuple(out.shape)}"
                    )
                return new

            handles.append(self._module(name).register_forward_hook(call))
        try:
            return self(idx, targets)
        finally:
            for h in handles:
                h.remove()

    def run_with_cache(
        self,
        idx: torch.Tensor,
        names_filter: Callable[[str], bool] | None = None,
        targets: torch.Tensor | None = None,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor | None], dict[str, torch.Tensor]]:
        """Run and record every activation (or those ``names_filter`` keeps) by hook name:
        ``((logits, loss), cache)``."""
        cache: dict[str, torch.Tensor] = {}

        def keep(v: torch.Tensor, name: str) -> None:
            cache[name] = v.detach()

        names = [n for n in self.hook_names if names_filter is None or names_filter(n)]
        out = self.run_with_hooks(idx, dict.fromkeys(names, keep), targets)
        return out, cache
