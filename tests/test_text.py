"""Tokenisation (assocmem.text.tokenize) and Russian lemmas and features (assocmem.text.morph)."""

from __future__ import annotations

import doctest

import pytest

import assocmem.text.morph as morph_module
import assocmem.text.tokenize as tokenize_module
from assocmem.text.morph import Word, agrees, analyze, analyze_text, analyzer, lemma, lemmatize
from assocmem.text.tokenize import Token, keys, tokenize


def test_docstring_examples_hold():
    for module in (tokenize_module, morph_module):
        assert doctest.testmod(module).failed == 0


def test_tokens_keep_surface_and_span():
    text = "The trophy doesn’t fit, because it is TOO big!"
    toks = tokenize(text)
    assert [t.key for t in toks] == [
        "THE", "TROPHY", "DOESN'T", "FIT", "BECAUSE", "IT", "IS", "TOO", "BIG",
    ]  # fmt: skip
    for t in toks:
        assert text[t.start : t.end] == t.text
    assert toks[2].text == "doesn’t"  # the surface form is kept for display


def test_cyrillic_hyphen_and_punctuation_tokens():
    assert keys("Кто-то сказал: «Маша ест кашу».") == ("КТО-ТО", "СКАЗАЛ", "МАША", "ЕСТ", "КАШУ")
    with_punct = [t.key for t in tokenize("Да, нет.", punctuation=True)]
    assert with_punct == ["ДА", ",", "НЕТ", "."]
    assert tokenize("  ,;  ") == ()


def test_lemmas_join_word_forms():
    assert {lemma(w) for w in ("КАШУ", "КАША", "каши")} == {"КАША"}
    toks = lemmatize("Маша ела кашу.")
    assert [t.key for t in toks] == ["МАША", "ЕСТЬ", "КАША"]
    assert [t.text for t in toks] == ["Маша", "ела", "кашу"]  # surface kept
    assert lemma("trophy") == "TROPHY"  # not Russian: its own key


def test_features_of_a_noun_and_a_pronoun():
    w = analyze("кубок")
    assert isinstance(w, Word) and w.lemma == "КУБОК"
    assert (w.features.pos, w.features.gender, w.features.number, w.features.animacy) == (
        "NOUN", "masc", "sing", "inan",
    )  # fmt: skip
    masha = analyze(Token("Маша", "МАША", 3, 7))
    assert masha.token.span == (3, 7) and masha.features.animacy == "anim"
    assert analyze("её").features.is_pronoun  # the personal reading beats the possessive
    assert analyze("КАШУ").features.case == "accs"


@pytest.mark.parametrize(
    "pronoun, noun, expected",
    [
        ("ОНА", "МАША", True),
        ("ОНА", "КАШУ", True),
        ("ОН", "КУБОК", True),
        ("ОН", "МАША", False),  # МАША's rare masculine reading (a form of "маш") is dropped
        ("ОНА", "КУБОК", False),
        ("ОНИ", "организаторам", True),
        ("ОНИ", "МАША", False),
        ("ЕЁ", "КАШУ", True),
        ("IT", "TROPHY", True),  # no features: no evidence against
    ],
)
def test_agreement(pronoun, noun, expected):
    assert agrees(pronoun, noun) is expected


def test_analyzer_is_loaded_once():
    assert analyzer() is analyzer()
    words = analyze_text("ОНА ЕСТ КАШУ")
    assert [w.lemma for w in words] == ["ОНА", "ЕСТЬ", "КАША"]
