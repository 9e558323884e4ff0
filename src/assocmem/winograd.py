"""The pronoun test on a Winograd benchmark: one memory per sentence, the pronoun as the probe.

For each item (one line of a JSONL file in the format of ``xwino_ru_dev.jsonl``)::

    sentence  Кубок не помещается в коричневый чемодан, потому что он слишком большой.
    tokens    КУБОК НЕ ПОМЕЩАТЬСЯ В КОРИЧНЕВЫЙ ЧЕМОДАН ПОТОМУ ЧТО ОН СЛИШКОМ БОЛЬШОЙ   (lemmas)
    graph     ОН = КУБОК + ЧЕМОДАН                        the seed's slot: pronoun → candidates
              БОЛЬШОЙ = 0.19*КУБОК + 0.19*ЧЕМОДАН ...     the associations the builder gives
    model     the three-bank MemTransformer over that memory, the probe *ОН appended
    decision  the candidate whose head lemma has the higher probe logit; margin = the difference

A candidate of several words is represented by its head: the first word of its span that
pymorphy3 reads as a noun (else its last word). Two candidates with the same head lemma tie:
the first is chosen with margin 0. Every rule here is the same for every item: nothing reads
the answers, and no list of words comes from the data.

The same run scores the baselines (:data:`BASELINES`) and the statistics: the Wilson 95 %
interval of the accuracy and the one-sided binomial p-value against chance (50 %).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch

from assocmem import settings
from assocmem.config import ModelConfig
from assocmem.errors import InputError, read_text
from assocmem.experiment import (
    OPEN_MIN_SCORE,
    Case,
    CaseResult,
    Experiment,
    _expect_type,
    build_model,
    model_locator,
    parse_model,
    run_case,
)
from assocmem.graph import Graph, Slot, Term, parse_graph
from assocmem.memories import Associations, association_graph, graph_token
from assocmem.settings import Settings, SettingsError, setting
from assocmem.text.morph import KEEP_SHARE, Word, _features, agrees, analyze, analyzer, lemmatize
from assocmem.text.tokenize import normalize, tokenize

__all__ = [
    "Candidate",
    "Item",
    "load_items",
    "BuilderConfig",
    "LMConfig",
    "WinogradConfig",
    "parse_config",
    "load_config",
    "default_config_path",
    "ItemResult",
    "analyse",
    "fits",
    "head",
    "item_case",
    "run_item",
    "wilson",
    "binomial_p",
    "BASELINES",
    "Report",
    "evaluate",
]

# ---------------------------------------------------------------- items


@dataclass(frozen=True)
class Candidate:
    text: str
    span: tuple[int, int]  # [start, end) in the item's tokens
    correct: bool


@dataclass(frozen=True)
class Item:
    """One Winograd sentence: its tokens, the pronoun's span and two candidates."""

    sentence: str
    tokens: tuple[str, ...]
    pronoun: Candidate  # text and span; ``correct`` unused
    candidates: tuple[Candidate, Candidate]
    line: int = 0

    @property
    def answer(self) -> int:
        """The index of the correct candidate."""
        return 0 if self.candidates[0].correct else 1


def _span(value: Any, n: int, where: str, key: str) -> tuple[int, int]:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )
    if not ok or not 0 <= value[0] < value[1] <= n:
        raise InputError(
            f"{where}: key {key!r} must be a token span [start, end) with "
            f"0 <= start < end <= {n} (the number of tokens); got {value!r}"
        )
    return value[0], value[1]


def _item(row: Any, where: str, line: int) -> Item:
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object per line")
    for key in ("sentence", "tokens", "pronoun", "candidates"):
        if key not in row:
            raise InputError(f"{where}: missing key {key!r} (see ../shared/data/SOURCES.md)")
    sentence = _expect_type(row["sentence"], str, "sentence", where)
    toks = _expect_type(row["tokens"], list, "tokens", where)
    if not toks or not all(isinstance(t, str) and t.strip() for t in toks):
        raise InputError(f"{where}: key 'tokens' must be a non-empty list of non-empty strings")
    pron = _expect_type(row["pronoun"], dict, "pronoun", where)
    cands = _expect_type(row["candidates"], list, "candidates", where)
    if len(cands) != 2:
        raise InputError(f"{where}: key 'candidates' must hold two candidates, got {len(cands)}")
    parsed = []
    for k, c in enumerate(cands):
        cw = f"{where}: candidates[{k}]"
        _expect_type(c, dict, "a candidate", cw)
        for key in ("text", "span", "correct"):
            if key not in c:
                raise InputError(f"{cw}: missing key {key!r}")
        correct = _expect_type(c["correct"], bool, "correct", cw)
        span = _span(c["span"], len(toks), cw, "span")
        parsed.append(Candidate(_expect_type(c["text"], str, "text", cw), span, correct))
    if sum(c.correct for c in parsed) != 1:
        raise InputError(f'{where}: exactly one candidate must have "correct": true')
    if "span" not in pron:
        raise InputError(f"{where}: pronoun: missing key 'span'")
    pspan = _span(pron["span"], len(toks), f"{where}: pronoun", "span")
    ptext = str(pron.get("text", " ".join(toks[pspan[0] : pspan[1]])))
    return Item(sentence, tuple(toks), Candidate(ptext, pspan, False), (parsed[0], parsed[1]), line)


def load_items(path: str | Path) -> list[Item]:
    """Every item of a JSONL file, each line checked (errors name the file, line and key)."""
    path = Path(path)
    items = []
    for i, line in enumerate(read_text(path, "Winograd JSONL file").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        items.append(_item(row, where, i))
    if not items:
        raise InputError(f"{path}: no items (expected one JSON object per line)")
    return items


# ---------------------------------------------------------------- words
# Lemmas and features come from assocmem.text.morph; two rules of this test are added here:
# a candidate's words read as nouns, and a pronoun's agreement with a coordination.

CONTENT = {"NOUN", "ADJF", "ADJS", "COMP", "VERB", "INFN", "PRTF", "PRTS", "GRND", "ADVB", "PRED"}
_PROPER = {"Name", "Surn", "Patr", "Geox", "Orgn"}


@cache
def analyse(token: str, noun: bool = False) -> Word | None:
    """The :class:`~assocmem.text.morph.Word` of the first word of ``token`` (an item's token
    may carry punctuation: ``его,``); None when it holds no word.

    With ``noun``: the likeliest noun reading that is not an abbreviation, when there is one
    (inside a candidate's span, which names a thing: ВАЗУ is ВАЗА, not the car maker ВАЗ;
    ЛИЛИ the name, not the verb ЛИТЬ)."""
    words = tokenize(token)
    if not words:
        return None
    w = analyze(words[0])
    if not noun:
        return w
    parses = analyzer().parse(w.token.text.lower())
    nouns = [p for p in parses if p.tag.POS == "NOUN" and not {"Abbr", "Orgn"} & p.tag.grammemes]
    if not nouns:
        return w
    best = nouns[0]
    readings = tuple(
        dict.fromkeys(
            _features(p.tag)
            for p in nouns
            if p.normal_form == best.normal_form and p.score >= KEEP_SHARE * best.score
        )
    )
    return Word(w.token, normalize(best.normal_form), readings[0], readings)


def proper(word: Word) -> bool:
    """Whether pymorphy3's likeliest reading of ``word`` is a name (or it knows no reading)."""
    p = analyzer().parse(word.token.text)[0]
    return p.tag.POS is None or bool(_PROPER & p.tag.grammemes)


def fits(pronoun: Word, head: Word, plural: bool = False) -> bool:
    """Whether a third-person ``pronoun`` can stand for the noun ``head``
    (:func:`~assocmem.text.morph.agrees`), with three additions: a first or second person
    pronoun (МЫ) is not checked; a coordination (``plural``: "Сэм и Эми") takes a plural
    pronoun; and ЕГО, ЕМУ, НЁМ, ... (the oblique cases, which он and оно share) fit a neuter."""
    if any(r.person in ("1per", "2per") for r in pronoun.readings):
        return True
    if plural:
        return any(r.number != "sing" for r in pronoun.readings)
    oblique = pronoun.features.case not in (None, "nomn") and pronoun.features.gender == "masc"
    if oblique and any(r.gender == "neut" for r in head.readings):
        return True
    return agrees(pronoun, head)


def lemmatise_text(text: str) -> list[list[str]]:
    """Paragraphs (non-empty lines) of ``text`` as lists of lemma keys."""
    out = []
    for line in text.splitlines():
        keys = [t.key for t in lemmatize(line)]
        if keys:
            out.append(keys)
    return out


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BuilderConfig(Settings):
    """Where the sentence's associations come from (``[builder]``)."""

    # "vectors": navec cosine; "cooccur": NPMI over a corpus; "none": the pronoun's slot alone
    kind: Literal["vectors", "cooccur", "none"] = "vectors"
    targets: Literal["candidates", "all"] = "candidates"  # word → candidate slots only, or any pair
    top_k: int = setting(2, ge=1, le=1000)  # partners per slot
    threshold: float = setting(0.3, ge=0, le=1)  # the least association kept (both are <= 1)
    vectors: str = ""  # a navec .tar; "" = the one inside the natasha package
    corpus: str = "../shared/data/pushkin/pushkin_prose.txt"  # for "cooccur", from the cwd
    window: int = setting(5, ge=1, le=1000)  # co-occurrence window, in words
    min_count: int = setting(2, ge=1)  # rarer words get no co-occurrence slots


@dataclass(frozen=True)
class LMConfig(Settings):
    """The language models of the LM-scoring baselines (``[lm]``): run folders, from the cwd."""

    memlm: str = "runs/pushkin_bpe_memlm"
    gpt: str = "runs/pushkin_bpe_gpt"
    scoring: Literal["partial", "full"] = "partial"  # the words after the pronoun, or the sentence
    inflect: bool = True  # put the candidate in the pronoun's grammatical case


@dataclass(frozen=True)
class _File(Settings):
    """The file's own tables, as written (``[model]`` is read by the experiments' parser)."""

    agreement: bool = True  # drop candidates the pronoun cannot agree with from its slot
    builder: BuilderConfig = field(default_factory=BuilderConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    model: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WinogradConfig:
    """Everything ``assocmem winograd`` reads from its TOML file."""

    builder: BuilderConfig = field(default_factory=BuilderConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(min_score=OPEN_MIN_SCORE))
    embedding: str = "onehot"
    dim: int = 64
    seed: int = 0
    agreement: bool = True  # drop candidates the pronoun cannot agree with from its slot
    file: str = "<default>"


_TRAIN = {
    "memlm": "assocmem train examples/lm/pushkin_bpe_memlm.toml",
    "gpt": "assocmem train examples/lm/pushkin_bpe_gpt.toml",
}


def parse_config(text: str, file: str = "<string>") -> WinogradConfig:
    """A :class:`WinogradConfig` from TOML ``text``; every key and value checked before work,
    each bad one named with its file, line and key (:mod:`assocmem.settings`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{file}: not valid TOML: {e}") from None
    try:
        own = settings.parse(_File, data)
    except SettingsError as e:
        raise e.located(file, text) from None
    model, emb, dim, seed = parse_model(own.model, model_locator(text, file))
    if model.min_score is None:  # a sentence's words mostly have no slot: the open vocabulary's
        model = replace(model, min_score=OPEN_MIN_SCORE)  # null read, as in experiment files
    return WinogradConfig(own.builder, own.lm, model, emb, dim, seed, own.agreement, file)


def default_config_path() -> Path:
    """The project's default configuration, shipped with the package."""
    return Path(str(resources.files("assocmem") / "data" / "winograd_default.toml"))


def load_config(path: str | Path | None = None) -> WinogradConfig:
    """The configuration at ``path``, or the default one (:func:`default_config_path`)."""
    p = Path(path) if path is not None else default_config_path()
    return parse_config(read_text(p, "winograd config (.toml)"), str(p))


# ---------------------------------------------------------------- the memory and the run


def head(item: Item, k: int) -> Word:
    """The head word of candidate ``k``: the first noun of its span, else its last word."""
    c = item.candidates[k]
    words = [
        w for t in item.tokens[c.span[0] : c.span[1]] if (w := analyse(t, noun=True)) is not None
    ]
    if not words:
        raise InputError(f"line {item.line}: candidate {c.text!r} holds no word")
    return next((w for w in words if w.features.pos == "NOUN"), words[-1])


def _plural(item: Item, k: int) -> bool:
    c = item.candidates[k]
    return any(t.lower() == "и" for t in item.tokens[c.span[0] : c.span[1]])


def sentence_words(item: Item) -> list[tuple[int, Word]]:
    """``(token index, word)`` for every token that holds a word (punctuation dropped); the
    tokens of a candidate read as nouns where they can (:func:`analyse`)."""
    inside = {i for c in item.candidates for i in range(*c.span)}
    return [(i, w) for i, t in enumerate(item.tokens) if (w := analyse(t, i in inside)) is not None]


def pronoun_word(item: Item) -> Word:
    w = analyse(item.tokens[item.pronoun.span[0]])
    if w is None:
        raise InputError(f"line {item.line}: the pronoun {item.pronoun.text!r} holds no word")
    return w


def pronoun_slot(item: Item, agreement: bool) -> Slot:
    """``PRONOUN = HEAD1 + HEAD2``; under ``agreement`` only the heads the pronoun can stand
    for (both when it agrees with neither, or with both)."""
    pron = pronoun_word(item)
    heads = [head(item, k) for k in (0, 1)]
    keep = [fits(pron, h, _plural(item, k)) for k, h in enumerate(heads)] if agreement else []
    if not any(keep) or all(keep) or not agreement:
        keep = [True, True]
    names = list(dict.fromkeys(h.lemma for h, k in zip(heads, keep, strict=True) if k))
    return Slot(key=(Term(pron.lemma),), value=tuple(Term(n) for n in names))


def association_slots(item: Item, assoc: Associations | None, cfg: BuilderConfig) -> list[Slot]:
    """The builder's slots over the sentence's content words (the pronoun left out)."""
    if assoc is None:
        return []
    pron = pronoun_word(item).lemma
    words = [
        w for _, w in sentence_words(item) if w.features.pos in CONTENT and graph_token(w.lemma)
    ]
    words = list({w.lemma: w for w in words if w.lemma != pron}.values())
    heads = {head(item, k).lemma for k in (0, 1)}
    for k in (0, 1):  # a head is a target even when pymorphy gives it no content tag
        h = head(item, k)
        if h.lemma not in {w.lemma for w in words} and graph_token(h.lemma) and h.lemma != pron:
            words.append(h)
    if len(words) < 2:
        return []
    S = assoc.scores([w.lemma for w in words])  # (n, n)
    if cfg.targets == "candidates":
        is_head = torch.tensor([w.lemma in heads for w in words])  # (n,)
        S = S * (~is_head)[:, None] * is_head[None, :]  # (n, n) only word → candidate
    g = association_graph([w.lemma for w in words], S, top_k=cfg.top_k, threshold=cfg.threshold)
    return list(g.slots) if g is not None else []


def item_case(item: Item, cfg: WinogradConfig, assoc: Associations | None) -> tuple[Graph, Case]:
    """The sentence's memory (the pronoun's slot first) and the case to run on it."""
    slots = [pronoun_slot(item, cfg.agreement), *association_slots(item, assoc, cfg.builder)]
    graph = parse_graph("\n".join(map(str, slots)), file=f"item {item.line}")
    sentence = tuple(w.lemma for _, w in sentence_words(item))
    return graph, Case(name=f"line {item.line}", sentence=sentence, probe=pronoun_word(item).lemma)


@dataclass
class ItemResult:
    item: Item
    chosen: int  # index of the chosen candidate
    margin: float  # the chosen head's logit minus the other's (0: a tie)
    heads: tuple[str, str]
    graph: Graph
    result: CaseResult

    @property
    def correct(self) -> bool:
        return self.chosen == self.item.answer

    def to_json(self) -> dict[str, Any]:
        return {
            "sentence": self.item.sentence,
            "candidates": [c.text for c in self.item.candidates],
            "chosen": self.item.candidates[self.chosen].text,
            "correct": self.correct,
            "margin": round(self.margin, 6),
        }


def run_item(item: Item, cfg: WinogradConfig, assoc: Associations | None) -> ItemResult:
    """Build the item's memory, run the probe, choose the candidate with the higher logit."""
    graph, case = item_case(item, cfg, assoc)
    model = build_model(
        graph, cfg.model, tokens=case.tokens, embedding=cfg.embedding, dim=cfg.dim, seed=cfg.seed
    )
    result = run_case(model, case, where=f"line {item.line}")
    heads = (head(item, 0).lemma, head(item, 1).lemma)
    l0, l1 = result.logits[heads[0]], result.logits[heads[1]]
    chosen = 1 if l1 > l0 else 0
    return ItemResult(item, chosen, abs(l0 - l1), heads, graph, result)


def item_experiment(r: ItemResult, cfg: WinogradConfig) -> Experiment:
    """The item as an :class:`Experiment` of one case, for the HTML report."""
    return Experiment(
        graph=r.graph,
        config=cfg.model,
        vocabulary="open",
        embedding=cfg.embedding,
        dim=cfg.dim,
        seed=cfg.seed,
        cases=(r.result.case,),
        file=f"winograd item, line {r.item.line}",
    )


# ---------------------------------------------------------------- statistics


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95 % by default)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_p(k: int, n: int, p: float = 0.5) -> float:
    """One-sided P(X >= k) for X ~ Binomial(n, p): the chance of doing this well by guessing."""
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


# ---------------------------------------------------------------- baselines


def nearest_choice(item: Item) -> int:
    """The candidate whose span lies nearest the pronoun's (ties: the first)."""
    ps, pe = item.pronoun.span

    def dist(c: Candidate) -> int:
        s, e = c.span
        return ps - e if e <= ps else s - pe if s >= pe else 0

    d0, d1 = dist(item.candidates[0]), dist(item.candidates[1])
    return 1 if d1 < d0 else 0


def vector_choice(item: Item, vectors) -> int:
    """The candidate whose head's vector is closer (mean cosine) to the content words after
    the pronoun; no vectors for either side: the first."""
    after = [
        w
        for i, w in sentence_words(item)
        if i >= item.pronoun.span[1] and w.features.pos in CONTENT
    ]
    words = [head(item, 0).lemma, head(item, 1).lemma, *(w.lemma for w in after)]
    if len(words) < 3:
        return 0
    S = vectors.scores(words)  # (n, n)
    s0, s1 = float(S[0, 2:].mean()), float(S[1, 2:].mean())
    return 1 if s1 > s0 else 0


BASELINES = ("first", "nearest", "vectors", "lm_memlm", "lm_gpt")


# ---------------------------------------------------------------- LM scoring


def _offsets(item: Item) -> list[tuple[int, int]]:
    """Character ``[start, end)`` of every token in the sentence (tokens found in order; a
    token the sentence spells otherwise, like the tokenizer's quotes ``````, takes a
    quotation mark or, failing that, no characters)."""
    out, at = [], 0
    for t in item.tokens:
        for spelling in (t, '"'):
            s = item.sentence.find(spelling, at)
            if s >= 0:
                out.append((s, s + len(spelling)))
                at = s + len(spelling)
                break
        else:
            out.append((at, at))
    return out


def _inflect(word: str, case: str | None) -> str:
    if case is None:
        return word
    p = analyzer().parse(word)[0]
    if p.tag.POS not in ("NOUN", "ADJF", "PRTF") or p.tag.case == case:
        return word
    form = p.inflect({case})
    if form is None:
        return word
    w = form.word
    return w[0].upper() + w[1:] if word[:1].isupper() else w


def substituted(item: Item, k: int, inflect: bool) -> tuple[str, str]:
    """``(prefix, suffix)``: the sentence with candidate ``k`` in the pronoun's place, split
    after the candidate. With ``inflect``, the candidate's head and the words before it that
    share its case take the pronoun's case (ОН → Кубок, ЕМУ → Кубку)."""
    off = _offsets(item)
    c = item.candidates[k]
    (ps, pe), h = item.pronoun.span, head(item, k)
    words = list(item.tokens[c.span[0] : c.span[1]])
    pron = pronoun_word(item)
    if inflect:
        hi = next(i for i, t in enumerate(words) if analyse(t, True) == h)
        case = h.features.case
        for i in range(hi + 1):
            w = analyse(words[i], True)
            if w is not None and (i == hi or w.features.case == case):
                surface = w.token.text
                words[i] = words[i].replace(surface, _inflect(surface, pron.features.case))
    text = " ".join(words)
    first_word = analyse(words[0], True)
    if c.span[0] == 0 and first_word is not None and not proper(first_word):
        text = text[:1].lower() + text[1:]
    pron_start = off[ps][0]
    if pron_start == 0 or item.sentence[:pron_start].rstrip()[-1:] in ".!?":
        text = text[:1].upper() + text[1:]
    surface = pron.token.text
    tail = item.tokens[ps][len(surface) :] if item.tokens[ps].startswith(surface) else ""
    return item.sentence[:pron_start] + text, tail + item.sentence[off[pe - 1][1] :]


@torch.no_grad()
def sequence_logprob(model, ids: list[int], start: int) -> float:
    """Sum of ``log p(ids[t] | ids[:t])`` for ``t >= start``, windows of the model's context
    (``block_size``) sliding by half a block past it."""
    block = model.config.block_size
    x = torch.tensor(ids)  # (n,)
    total, t = 0.0, max(start, 1)
    while t < len(ids):
        end = min(t + max(block // 2, 1), len(ids))  # targets t .. end-1
        lo = max(0, end - 1 - block)
        logits, _ = model(x[lo : end - 1][None])  # (1, w, V)
        lp = torch.log_softmax(logits[0].float(), dim=-1)  # (w, V)
        rows = torch.arange(t - 1 - lo, end - 1 - lo)  # positions predicting t .. end-1
        total += float(lp[rows, x[t:end]].sum())
        t = end
    return total


def lm_choice(item: Item, model, tok, lm: LMConfig) -> tuple[int, float]:
    """Trinh & Le (2018): each candidate in the pronoun's place; the likelier sentence wins
    (``partial``: only the words after the candidate are scored). Returns (choice, margin)."""
    scores = []
    for k in (0, 1):
        prefix, suffix = substituted(item, k, lm.inflect)
        a, b = tok.encode("\n" + prefix), tok.encode(suffix)
        scores.append(sequence_logprob(model, a + b, len(a) if lm.scoring == "partial" else 1))
    return (1 if scores[1] > scores[0] else 0), abs(scores[1] - scores[0])


def load_lm(path: str):
    """``(model, tokenizer)`` of a trained run folder; an InputError names what is missing."""
    from assocmem.lm.train import load_model

    model, tok, _ = load_model(Path(path))
    return model, tok


# ---------------------------------------------------------------- the whole run


@dataclass
class Report:
    """The results of one run: the model's decisions, the baselines', the statistics."""

    results: list[ItemResult]
    baselines: dict[str, list[int] | None]  # choices per item; None: the baseline is missing
    missing: dict[str, str]  # baseline -> why, and how to make it available

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def correct(self) -> int:
        return sum(r.correct for r in self.results)

    def correct_of(self, choices: Sequence[int]) -> int:
        """How many of ``choices`` (one candidate index per item) are right."""
        return sum(c == r.item.answer for c, r in zip(choices, self.results, strict=True))

    def accuracy_of(self, choices: Sequence[int]) -> float:
        return self.correct_of(choices) / self.n

    def to_json(self) -> dict[str, Any]:
        lo, hi = wilson(self.correct, self.n)
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.correct / self.n,
            "ci95": [lo, hi],
            "p_value": binomial_p(self.correct, self.n),
            "baselines": {
                name: None if ch is None else self.accuracy_of(ch)
                for name, ch in self.baselines.items()
            },
            "items": [r.to_json() for r in self.results],
        }


def make_associations(cfg: BuilderConfig) -> Associations | None:
    """The configured builder's association source (None for ``kind = "none"``)."""
    if cfg.kind == "none":
        return None
    if cfg.kind == "vectors":
        from assocmem.memories.vectors import load_navec

        return load_navec(cfg.vectors or None)
    from assocmem.lm.data import load_text
    from assocmem.memories.cooccur import Cooccurrence

    paragraphs = lemmatise_text(load_text(cfg.corpus))
    return Cooccurrence.from_paragraphs(
        paragraphs, window=cfg.window, min_count=cfg.min_count, name=cfg.corpus
    )


def evaluate(
    items: Sequence[Item],
    cfg: WinogradConfig,
    *,
    progress: Callable[[Sequence[Item], str], Any] = lambda xs, _: xs,
) -> Report:
    """Run the model and every baseline on ``items`` (``progress`` wraps loops, e.g. tqdm)."""
    assoc = make_associations(cfg.builder)
    results = [run_item(it, cfg, assoc) for it in progress(items, "memory")]
    vectors = assoc if cfg.builder.kind == "vectors" else None
    missing: dict[str, str] = {}
    if vectors is None:
        from assocmem.memories.vectors import load_navec

        try:
            vectors = load_navec(cfg.builder.vectors or None)
        except InputError as e:
            missing["vectors"] = str(e)
    baselines: dict[str, list[int] | None] = {
        "first": [0] * len(items),
        "nearest": [nearest_choice(it) for it in items],
        "vectors": None if vectors is None else [vector_choice(it, vectors) for it in items],
    }
    for name in ("memlm", "gpt"):
        try:
            lm = load_lm(getattr(cfg.lm, name))
        except InputError as e:
            missing[f"lm_{name}"] = f"{e} Train it with `{_TRAIN[name]}`."
            baselines[f"lm_{name}"] = None
            continue
        baselines[f"lm_{name}"] = [
            lm_choice(it, *lm, cfg.lm)[0] for it in progress(items, f"LM {name}")
        ]
    return Report(results, baselines, missing)
