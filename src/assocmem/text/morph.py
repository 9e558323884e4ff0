"""Russian morphology through pymorphy3: lemmas and grammatical features of tokens.

    >>> lemma("КАШУ"), lemma("каши"), lemma("Каша")
    ('КАША', 'КАША', 'КАША')
    >>> [t.key for t in lemmatize("Маша ест кашу")]
    ['МАША', 'ЕСТЬ', 'КАША']
    >>> agrees("ОНА", "МАША"), agrees("ОНА", "КАШУ"), agrees("ОН", "КУБОК"), agrees("ОН", "КАШУ")
    (True, True, True, False)

Public API (other modules import these; keep them stable):

* :func:`analyzer` ``() -> pymorphy3.MorphAnalyzer``: loaded once per process (about 0.3 s)
  and cached.
* :class:`Features`: a frozen dataclass of one reading of a word: ``pos`` (OpenCorpora
  tags: ``NOUN``, ``NPRO`` = personal pronoun, ``VERB``, ``ADJF``, ...), ``gender``
  (``masc``, ``femn``, ``neut``; ``None`` for plurals-only nouns and the
  common gender of СИРОТА, which agree with either), ``number`` (``sing``,
  ``plur``), ``animacy`` (``anim``, ``inan``), ``case`` (``nomn``, ``gent``, ``datv``,
  ``accs``, ``ablt``, ``loct``, ...), ``person`` (``1per``, ``2per``, ``3per``); a feature
  the word does not mark is ``None``.
* :class:`Word`: a frozen dataclass: ``token`` (:class:`~assocmem.text.tokenize.Token`,
  the surface form kept for display), ``lemma`` (the lemma as a vocabulary key, upper
  case: КАШУ → КАША), ``features`` (the likeliest reading) and ``readings`` (every
  likely reading, the first being ``features``; see :func:`analyze`).
* :func:`analyze` ``(word: str | Token) -> Word``; :func:`analyze_text` ``(text) -> tuple[Word, ...]``.
* :func:`lemma` ``(word: str) -> str``: the lemma key (a word pymorphy3 does not know as
  Russian, e.g. Latin, comes back as its own key).
* :func:`lemmatize` ``(text_or_tokens) -> tuple[Token, ...]``: the tokens re-keyed by lemma,
  surface forms and spans kept.
* :func:`agrees` ``(pronoun, noun) -> bool``: may ``pronoun`` refer to ``noun`` by gender
  and number? (ОНА agrees with МАША and КАШУ, ОН with КУБОК, ОНИ with any plural.)

Ambiguity: pymorphy3 gives every reading of a word with a probability. :func:`analyze`
keeps the readings of the likeliest reading's part of speech (for a pronoun: its
personal-pronoun readings, so ЕЁ counts as ОНА, not as the possessive) whose probability
is at least half the best one's: МАША's reading as a form of "маш" (masculine, 9 %) is
dropped, ЕГО keeps он (24 %) and drops оно (6.5 %), НЕМУ keeps both (50 % each).
:func:`agrees` is true when any kept reading of the pronoun agrees with any kept reading
of the noun, and when the words mark no gender or number at all (Latin words, unknown
ones): it says False only on evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from assocmem.text.tokenize import Token, normalize, tokenize

__all__ = [
    "Features",
    "Word",
    "analyzer",
    "analyze",
    "analyze_text",
    "lemma",
    "lemmatize",
    "agrees",
]

# A reading is kept when its probability is at least this share of the best reading's.
KEEP_SHARE = 0.5


@lru_cache(maxsize=1)
def analyzer() -> Any:
    """The pymorphy3 analyser with the Russian dictionaries, loaded once."""
    import pymorphy3  # imported here: loading the dictionaries costs time only when used

    return pymorphy3.MorphAnalyzer(lang="ru")


@dataclass(frozen=True)
class Features:
    """One reading of a word: its part of speech and grammatical features (None = unmarked)."""

    pos: str | None = None
    gender: str | None = None
    number: str | None = None
    animacy: str | None = None
    case: str | None = None
    person: str | None = None

    @property
    def is_pronoun(self) -> bool:
        """A personal pronoun (ОН, ОНА, ОНИ, ЕЁ, ...)."""
        return self.pos == "NPRO"

    @property
    def is_noun(self) -> bool:
        return self.pos == "NOUN"


@dataclass(frozen=True)
class Word:
    """A token with its lemma (a vocabulary key) and its likely readings."""

    token: Token
    lemma: str
    features: Features
    readings: tuple[Features, ...]


def _features(tag: Any) -> Features:
    def plain(v: Any) -> str | None:  # pymorphy3's grammemes compare only to known names
        return None if v is None else str(v)

    attrs = ("POS", "gender", "number", "animacy", "case", "person")
    return Features(*(plain(getattr(tag, a)) for a in attrs))


@lru_cache(maxsize=65536)
def _analyze_key(word: str) -> tuple[str, tuple[Features, ...]]:
    """(lemma key, kept readings) of one word; cached, as texts repeat their words."""
    parses = analyzer().parse(word.lower())
    if not parses:
        return normalize(word), (Features(),)
    npro = [p for p in parses if p.tag.POS == "NPRO"]
    # a pronoun's personal readings win over its possessive ones (ЕЁ, ЕГО)
    pool = npro if npro else [p for p in parses if p.tag.POS == parses[0].tag.POS]
    best = max(p.score for p in pool)
    kept = [p for p in pool if p.score >= KEEP_SHARE * best]
    readings = tuple(dict.fromkeys(_features(p.tag) for p in kept))
    return normalize(kept[0].normal_form), readings


def analyze(word: str | Token) -> Word:
    """Lemma and readings of one word (a string is tokenized as a single word)."""
    tok = word if isinstance(word, Token) else Token(word, normalize(word), 0, len(word))
    lem, readings = _analyze_key(tok.text)
    return Word(token=tok, lemma=lem, features=readings[0], readings=readings)


def analyze_text(text: str | Iterable[Token]) -> tuple[Word, ...]:
    """Every word of ``text`` (a string, or tokens from :func:`~assocmem.text.tokenize.tokenize`)."""
    toks = tokenize(text) if isinstance(text, str) else tuple(text)
    return tuple(analyze(t) for t in toks)


def lemma(word: str) -> str:
    """The lemma of ``word`` as a vocabulary key: ``lemma("кашу") == "КАША"``."""
    return _analyze_key(word)[0]


def lemmatize(text: str | Iterable[Token]) -> tuple[Token, ...]:
    """The tokens of ``text`` keyed by their lemma (surface form and span kept)."""
    return tuple(w.token.rekey(w.lemma) for w in analyze_text(text))


def _agree(p: Features, n: Features) -> bool:
    if p.number and n.number and p.number != n.number:
        return False
    if p.number == "plur" or n.number == "plur":
        return True  # Russian plurals do not mark gender
    if not p.gender or not n.gender:  # unmarked: common gender (СИРОТА), Latin words
        return True
    return p.gender == n.gender


def agrees(pronoun: str | Word, noun: str | Word) -> bool:
    """True when ``pronoun`` may refer to ``noun`` by gender and number (any likely reading).

    False only on evidence: words that mark neither (Latin, unknown) agree.
    """
    p = pronoun if isinstance(pronoun, Word) else analyze(pronoun)
    n = noun if isinstance(noun, Word) else analyze(noun)
    return any(_agree(a, b) for a in p.readings for b in n.readings)
