"""An ordinary sentence string → tokens, each keyed the way the seed writes them.

    >>> [t.key for t in tokenize("The trophy doesn't fit, because it is too big.")]
    ['THE', 'TROPHY', "DOESN'T", 'FIT', 'BECAUSE', 'IT', 'IS', 'TOO', 'BIG']
    >>> [t.key for t in tokenize("Маша ест кашу, потому что она вкусная!")]
    ['МАША', 'ЕСТ', 'КАШУ', 'ПОТОМУ', 'ЧТО', 'ОНА', 'ВКУСНАЯ']

Public API (other modules import these; keep them stable):

* :class:`Token`: a frozen dataclass per token: ``text`` (the surface form as written, for
  display), ``key`` (the normalised form, the vocabulary key: upper case, as the seed's
  graphs write tokens), ``start``/``end`` (the character span in the sentence, so
  ``sentence[t.start:t.end] == t.text``).
* :func:`tokenize` ``(text, *, punctuation=False) -> tuple[Token, ...]``.
* :func:`normalize` ``(word) -> str``: the key of one word (what :func:`tokenize` puts in ``key``).
* :func:`keys` ``(text) -> tuple[str, ...]``: just the keys.

A word is a run of letters and digits (any script: Latin, Cyrillic, ...), with inner
apostrophes and hyphens kept (``DOESN'T``, ``КТО-ТО``). The typographic apostrophe ``’``
is written ``'`` in the key. Punctuation is dropped unless ``punctuation=True`` (then each
punctuation character is a token of its own). Lemmas are not this module's business:
:func:`assocmem.text.morph.lemmatize` re-keys tokens by lemma.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Token", "tokenize", "normalize", "keys"]

# letters/digits, joined by single inner apostrophes or hyphens
_WORD = r"[^\W_]+(?:['’\-][^\W_]+)*"
_PUNCT = r"[^\w\s]|_"
_WORD_RX = re.compile(_WORD)
_ANY_RX = re.compile(f"{_WORD}|{_PUNCT}")


@dataclass(frozen=True)
class Token:
    """One token of a sentence.

    ``text``: the surface form as written (kept for display); ``key``: the normalised form,
    the vocabulary key; ``start``/``end``: its character span in the sentence.
    """

    text: str
    key: str
    start: int
    end: int

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)

    def rekey(self, key: str) -> Token:
        """The same token under another key (e.g. its lemma)."""
        return Token(self.text, key, self.start, self.end)


def normalize(word: str) -> str:
    """The vocabulary key of ``word``: upper case, typographic apostrophes made plain."""
    return word.replace("’", "'").upper()


def tokenize(text: str, *, punctuation: bool = False) -> tuple[Token, ...]:
    """Split ``text`` into :class:`Token` s (words; punctuation too when asked)."""
    rx = _ANY_RX if punctuation else _WORD_RX
    return tuple(Token(m[0], normalize(m[0]), m.start(), m.end()) for m in rx.finditer(text))


def keys(text: str) -> tuple[str, ...]:
    """The keys of ``text``'s words: ``keys("It is big.") == ("IT", "IS", "BIG")``."""
    return tuple(t.key for t in tokenize(text))
