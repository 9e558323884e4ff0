"""Learned associative memories: a language model whose every sublayer is a read of
:func:`assocmem.mem` (:mod:`~assocmem.lm.memlm`), a nanoGPT baseline
(:mod:`~assocmem.lm.gpt`), and the code to train, checkpoint, sample and inspect them."""

from assocmem.lm.gpt import GPT, GPTConfig
from assocmem.lm.memlm import MemLM, MemLMConfig

__all__ = ["GPT", "GPTConfig", "MemLM", "MemLMConfig"]
