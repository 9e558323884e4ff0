"""Experiment files (TOML): a graph, model settings and cases, and running them.

    graph = \"\"\"
    ОНА = МАША + КАШУ
    \"\"\"                       # or graph_file = "x.graph", relative to this file

    [model]
    layers = 2
    embedding = "random"       # or "onehot"
    dim = 64                   # ignored for onehot
    seed = 0
    temp = 0.1                 # or { assoc = .., context = .., mlp = .. }, each a float or a list per layer
    readout_layer = 3
    # optional: norm, readout, qk_norm, context_source, context_self, joint (see ModelConfig)

    [[case]]
    name = "tasty"
    sentence = "МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ВКУСНАЯ"
    probe = "ОНА"
    expect = "КАШУ"

    [[case]]                     # a sentence may also be ordinary text (assocmem.text.tokenize):
    text = "Маша ест кашу, потому что она вкусная."   # -> МАША ЕСТ КАШУ ПОТОМУ ЧТО ОНА ВКУСНАЯ
    probe = "ОНА"

Vocabulary (top-level ``vocabulary``):

* ``"graph"`` (the default): every token of a sentence must appear in the graph: a
  token the graph never mentions has no relations, so it is almost always a typo, and
  the error names the nearest known tokens.
* ``"open"``: sentences may hold tokens that have no slot (``THE``, ``DOES``). Each gets
  an embedding (its own one-hot dimension, or a random vector) and takes part in the
  context bank like any other token. So that such a token reads nothing from the slot
  banks rather than the mean of all values, an open vocabulary always has a threshold
  with a null slot (``ModelConfig.min_score``, default :data:`OPEN_MIN_SCORE`; set
  ``min_score`` under ``[model]`` to change it): a query reads only the slots it matches
  at least that well, and nothing when it matches none. ``expect`` must still be a token of
  the graph or of the case.

From Python: ``Experiment(graph, config, vocabulary="open", cases=(Case.from_text(...),))``,
then ``run_case(exp.build(), case)``; or :func:`build_model` for a graph plus extra tokens.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from assocmem import settings
from assocmem.compiler import Memory, compile_graph
from assocmem.config import BANKS, ModelConfig, field_kinds
from assocmem.embedding import Vocabulary, make_embedding
from assocmem.errors import InputError, did_you_mean, read_text
from assocmem.graph import MAX_FILE_BYTES, Graph, load_graph, parse_graph
from assocmem.model import MemTransformer
from assocmem.text.tokenize import keys
from assocmem.trace import Trace

__all__ = [
    "Case",
    "Experiment",
    "CaseResult",
    "build_model",
    "load_experiment",
    "parse_experiment",
    "parse_model",
    "model_locator",
    "run_case",
    "VOCABULARIES",
    "OPEN_MIN_SCORE",
]

TOP_KEYS = ("graph", "graph_file", "vocabulary", "model", "case")
# top-level keys only a training config has (assocmem train, lm/train.py)
TRAINING_KEYS = {"train", "data", "out_dir"}
# [model] keys: how the tokens become vectors (Experiment's own fields), one ``temp`` for
# the three temp_* fields, and every other ModelConfig field under its own name.
EMBEDDING_KEYS = ("embedding", "dim", "seed")
MODEL_KEYS = (*EMBEDDING_KEYS, "temp", *field_kinds())
CASE_KEYS = ("name", "sentence", "text", "probe", "expect")
VOCABULARIES = ("graph", "open")
# The threshold of an open vocabulary: a query reads a slot only when it matches its key at
# least this well (cosine under qk_norm), else nothing. Half of a token's match with itself.
OPEN_MIN_SCORE = 0.5
# Widest random embedding, and the most numbers an experiment may hold at once: the
# embedding, the compiled memory and one case's trace (check_size). Beyond them a run ends in
# an allocator error, or takes minutes; dim = 10**12 did.
MAX_DIM = 2**16
MAX_FLOATS = 2**28  # 1 GiB of float32
# Longest sentence a case may hold. A case's trace keeps every layer's (n, n) context
# weights and the report shows them per token: 2,100 tokens took minutes and wrote an
# 82 MB HTML file. The seed's sentences have 7 tokens; the explorer allows 64.
MAX_SENTENCE_TOKENS = 512


@dataclass(frozen=True)
class Case:
    """One sentence to run, with its probe token and (optionally) the expected top token."""

    name: str
    sentence: tuple[str, ...]
    probe: str
    expect: str | None = None
    line: int = 0  # where the case starts in its file

    @property
    def tokens(self) -> tuple[str, ...]:
        """The model input: the sentence with the probe appended."""
        return (*self.sentence, self.probe)

    @classmethod
    def from_text(
        cls, text: str, probe: str, expect: str | None = None, name: str = "case"
    ) -> Case:
        """A case whose sentence is ordinary text, tokenized (:func:`assocmem.text.tokenize.keys`)."""
        return cls(name=name, sentence=keys(text), probe=probe, expect=expect)


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file."""

    graph: Graph
    config: ModelConfig
    embedding: str = "onehot"
    dim: int = 64
    seed: int = 0
    cases: tuple[Case, ...] = ()
    file: str = "<string>"
    vocabulary: str = "graph"  # "graph" or "open" (see the module docstring)

    def __post_init__(self) -> None:
        if self.vocabulary not in VOCABULARIES:
            raise InputError(
                f"{self.file}: vocabulary must be {' or '.join(map(repr, VOCABULARIES))}, "
                f"got {self.vocabulary!r}.{did_you_mean(str(self.vocabulary), VOCABULARIES)}"
            )
        if self.vocabulary == "open" and self.config.min_score is None:
            object.__setattr__(self, "config", replace(self.config, min_score=OPEN_MIN_SCORE))

    @property
    def tokens(self) -> tuple[str, ...]:
        """The model's vocabulary: the graph's tokens, then (open) the cases' other tokens."""
        if self.vocabulary == "graph":
            return self.graph.tokens
        extra = (t for c in self.cases for t in (*c.tokens, c.expect) if t is not None)
        return Vocabulary.from_tokens(self.graph.tokens, extra).tokens

    @property
    def unslotted(self) -> tuple[str, ...]:
        """Tokens of the cases that no slot mentions (always empty for ``vocabulary="graph"``)."""
        return self.tokens[len(self.graph.tokens) :]

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(vocabulary, dim, slots)``: a one-hot embedding is as wide as the vocabulary."""
        vocab = len(self.tokens)
        return vocab, vocab if self.embedding == "onehot" else self.dim, len(self.graph)

    def build(self, seed: int | None = None) -> MemTransformer:
        """Compile the graph over the vocabulary and build the model (``seed`` overrides the file's)."""
        return build_model(
            self.graph,
            self.config,
            tokens=self.tokens,
            embedding=self.embedding,
            dim=self.dim,
            seed=self.seed if seed is None else seed,
        )

    def with_model(self, **changes: Any) -> Experiment:
        """A copy with model settings changed (``embedding``, ``dim``, ``seed`` or any ModelConfig field)."""
        own = {k: changes.pop(k) for k in EMBEDDING_KEYS if k in changes}
        return replace(self, config=replace(self.config, **changes), **own)


def build_model(
    graph: Graph,
    config: ModelConfig | None = None,
    *,
    tokens: Iterable[str] = (),
    embedding: str = "onehot",
    dim: int = 64,
    seed: int = 0,
    vectors: Mapping[str, torch.Tensor] | None = None,
) -> MemTransformer:
    """A MemTransformer over ``graph`` whose vocabulary also holds ``tokens`` (tokens with no
    slot: give the config a ``min_score`` so that they read nothing from the slots).

    ``embedding``: ``"onehot"``, ``"random"`` (``dim``, ``seed``) or ``"vectors"`` (``vectors``:
    ``{token: (d,)}``, e.g. pretrained word vectors; tokens without one get a random vector).
    """
    vocab = Vocabulary.from_tokens(graph.tokens, tokens)
    emb = make_embedding(vocab, embedding, dim, seed, vectors=vectors)  # type: ignore[arg-type]
    memory: Memory = compile_graph(graph, emb)
    return MemTransformer(memory, emb, config)


@dataclass
class CaseResult:
    """The probe's readout for one case, and the full trace."""

    case: Case
    logits: dict[str, float]  # token -> logit of the probe, vocabulary order
    top: list[str]  # tokens, best first
    trace: Trace

    @property
    def passed(self) -> bool | None:
        return None if self.case.expect is None else self.top[0] == self.case.expect

    @property
    def margin(self) -> float:
        """Top logit minus the runner-up's."""
        v = sorted(self.logits.values(), reverse=True)
        return v[0] - v[1] if len(v) > 1 else float("inf")

    @property
    def lead(self) -> str:
        """Whose lead the margin is, in words: the top token over the runner-up when the case
        passes (or expects nothing), over the expected token when it fails."""
        if len(self.top) < 2:
            return f"{self.top[0]} is the only token"
        other = self.top[1] if self.passed is not False else self.case.expect
        assert other is not None
        gap = self.logits[self.top[0]] - self.logits[other]
        return f"{self.top[0]} leads {other} by {gap:.3f}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "tokens": [*self.case.sentence, "*" + self.case.probe],
            "probe": self.case.probe,
            "logits": {t: round(v, 6) for t, v in self.logits.items()},
            "top": self.top,
            "expect": self.case.expect,
            "pass": self.passed,
            "attention": self.trace.attention(),
        }


def run_case(model: MemTransformer, case: Case, where: str = "") -> CaseResult:
    """Run one case with a full trace and read the probe (the last position).

    A read that overflows (a huge graph weight: ``A = 1e200*B``) is an InputError, never
    a NaN verdict."""
    where = f"{where} (case {case.name!r})" if where else f"case {case.name!r}"
    ids = model.embedding.vocab.ids(list(case.tokens), where=where)
    _, trace = model.run_with_trace(ids)
    bad = next((k for k, v in trace.cache.items() if not torch.isfinite(v).all()), None)
    if bad is not None:
        slot = max(model.memory.slots, key=lambda s: max(abs(t.weight) for t in (*s.key, *s.value)))
        top = max(abs(t.weight) for t in (*slot.key, *slot.value))
        raise InputError(
            f"{where}: the run overflowed: {bad!r} is not finite (inf or NaN). "
            f"Hint: keep the graph's weights small; the largest is {top:g} "
            f"({slot.file}:{slot.line}: {slot})"
        )
    trace.tokens[-1] = "*" + case.probe  # the probe, written as in the seed
    probe_logits = trace["logits"][..., -1, :].reshape(-1)  # (V,)
    vocab = model.embedding.vocab.tokens
    logits = {t: float(v) for t, v in zip(vocab, probe_logits, strict=True)}
    order = torch.argsort(probe_logits, descending=True, stable=True).tolist()
    return CaseResult(case=case, logits=logits, top=[vocab[i] for i in order], trace=trace)


def footprint(vocab: int, dim: int, slots: int, depth: int = 0, tokens: int = 0) -> int:
    """About how many numbers a run holds at once: the embedding ``(V, d)``, the memory's
    keys and values ``(m, d)``, and one case's trace of ``tokens`` positions through
    ``depth`` layers (per read: weights over slots or positions, residuals, logit lens)."""
    n = tokens
    per_layer = n * (2 * slots + n) + 3 * n * (2 * dim + vocab) + n * dim
    return vocab * dim + 2 * slots * dim + n * (dim + vocab) + depth * per_layer


def check_size(where: str, vocab: int, dim: int, slots: int, depth: int = 0, tokens: int = 0):
    """An InputError when :func:`footprint` exceeds :data:`MAX_FLOATS`, naming the sizes."""
    need = footprint(vocab, dim, slots, depth, tokens)
    if need > MAX_FLOATS:
        raise InputError(
            f"{where}: too large to run: about {need * 4 / 2**30:.1f} GiB of numbers (vocabulary "
            f"{vocab:,} tokens, dim {dim:,}, {slots:,} slots, {depth} layers, {tokens} tokens in "
            f"the longest case); at most {MAX_FLOATS * 4 / 2**30:.0f} GiB. Hint: a smaller dim "
            '(embedding = "random" instead of "onehot" for a large graph), fewer layers, a '
            "shorter sentence or a smaller graph"
        )


def unknown_token(
    graph: Graph,
    sentence: tuple[str, ...],
    probe: str,
    expect: str | None,
    vocabulary: str = "graph",
) -> tuple[str, str, str] | None:
    """The first token of a case the graph never mentions, as ``(field, token, message)``
    (field: "sentence", "probe" or "expect"), or None when every token is known.

    With ``vocabulary="open"`` only ``expect`` is checked, against the graph and the case:
    an expected token found nowhere can never be the top token."""
    if vocabulary == "open":
        if expect is None or expect in {*graph.tokens, *sentence, probe}:
            return None
        close = did_you_mean(expect, [*graph.tokens, *sentence])
        return ("expect", expect, f"expected token {expect!r} is in neither the graph nor the "
                f"sentence, so it can never come out on top.{close}")  # fmt: skip
    known = set(graph.tokens)
    for what, toks in (("sentence", sentence), ("probe", (probe,)), ("expect", (expect,))):
        for tok in toks:
            if tok is not None and tok not in known:
                return (
                    what,
                    tok,
                    (
                        f"unknown token {tok!r} in the {what}: every token must appear in the "
                        f"graph.{did_you_mean(tok, graph.tokens)}"
                    ),
                )
    return None


# ---------------------------------------------------------------- loading


def _line_of(text: str, pattern: str, start: int = 1) -> int:
    """The 1-based number of the first line at or after ``start`` matching ``pattern`` (0 if none)."""
    rx = re.compile(pattern)
    for i, line in enumerate(text.splitlines()[start - 1 :], start):
        if rx.search(line):
            return i
    return 0


def _check_keys(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = [k for k in table if k not in known]
    if unknown:
        hints = "".join(f" '{k}':{did_you_mean(k, known)}" for k in unknown)
        raise InputError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(known)}).{hints}"
        )


def _expect_type(value: Any, types: type | tuple[type, ...], what: str, where: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InputError(f"{where}: {what} must be {_type_name(types)}, got {value!r}")
    if not isinstance(value, types):
        raise InputError(f"{where}: {what} must be {_type_name(types)}, got {value!r}")
    return value


def _type_name(types: type | tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    ts = types if isinstance(types, tuple) else (types,)
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in ts))


def _temps(value: Any, where: str) -> dict[str, Any]:
    def one(v: Any, what: str) -> float | tuple[float, ...]:
        if isinstance(v, list):
            return tuple(float(_expect_type(x, (int, float), what, where)) for x in v)
        return float(_expect_type(v, (int, float), what, where))

    if isinstance(value, dict):
        _check_keys(value, BANKS, f"{where} [model] temp")
        return {f"temp_{b}": one(v, f"temp.{b}") for b, v in value.items()}
    t = one(value, "temp")
    return {f"temp_{b}": t for b in BANKS}


def model_locator(text: str, file: str) -> Callable[[str], str]:
    """``key -> "file:line [model]"``, the line of that key of ``text``'s ``[model]`` table
    (the table's own line when the key is not written there)."""
    table = _line_of(text, r"^\s*\[model\]") or 1

    def locate(key: str) -> str:
        return f"{file}:{settings.key_line(text, ('model', key)) or table} [model]"

    return locate


def parse_model(
    model: dict[str, Any], where: str | Callable[[str], str]
) -> tuple[ModelConfig, str, int, int]:
    """A ``[model]`` table as ``(ModelConfig, embedding kind, dim, seed)``, every key checked.
    ``where`` names the table in errors (e.g. ``file:12 [model]``), or is a function of the
    key that does (:func:`model_locator`: each error at its key's line)."""
    at = where if callable(where) else (lambda _key: where)
    _check_keys(model, MODEL_KEYS, at(next((k for k in model if k not in MODEL_KEYS), "")))
    model_settings: dict[str, Any] = {
        key: _expect_type(model[key], (int, float) if kind is float else kind, key, at(key))
        for key, (kind, _) in field_kinds().items()
        if key in model
    }
    if "temp" in model:
        model_settings.update(_temps(model["temp"], at("temp")))
    embedding = _expect_type(model.get("embedding", "onehot"), str, "embedding", at("embedding"))
    if embedding not in ("onehot", "random"):
        raise InputError(
            f'{at("embedding")}: embedding must be "onehot" or "random", got {embedding!r}'
        )
    dim = _expect_type(model.get("dim", 64), int, "dim", at("dim"))
    seed = _expect_type(model.get("seed", 0), int, "seed", at("seed"))
    if not 1 <= dim <= MAX_DIM:
        raise InputError(f"{at('dim')}: dim must be between 1 and {MAX_DIM:,}, got {dim:,}")
    try:
        config = ModelConfig(**model_settings)
    except InputError as e:  # located at the key its first problem names
        first = str(e).removeprefix("bad model settings: ")  # "readout_layer must ...": its key
        key = next((k for k in model if first.startswith(f"{k} ")), "")
        raise InputError(f"{at(key)}: {e}") from None
    return config, embedding, dim, seed


def parse_experiment(text: str, *, file: str = "<string>", base: Path | None = None) -> Experiment:
    """Parse experiment TOML ``text``; ``base`` is the folder ``graph_file`` is relative to."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", str(e))
        where = f"{file}:{at[1]}:{at[2]}" if at else file
        what = str(e)[: at.start()] if at else str(e)
        hint = (
            " (a .graph file is checked with 'assocmem check'; 'run' takes an experiment .toml)"
            if file.endswith(".graph")
            else ""
        )
        raise InputError(f"{where}: not valid TOML: {what}{hint}") from None
    if TRAINING_KEYS & set(data) and not {"graph", "graph_file"} & set(data):
        raise InputError(
            f"{file}: this is a training config (it has {', '.join(sorted(TRAINING_KEYS & set(data)))}"
            f"): train it with 'assocmem train {file}'. 'assocmem run' takes an experiment "
            "file (a graph, [model] and [[case]] tables: docs/graph.md)"
        )
    _check_keys(data, TOP_KEYS, file)

    # the graph: inline or from a file, never both
    if ("graph" in data) == ("graph_file" in data):
        raise InputError(
            f'{file}: give the graph once: either graph = """...""" or graph_file = "x.graph"'
        )
    if "graph" in data:
        src = _expect_type(data["graph"], str, "graph", file)
        at = _line_of(text, r"^\s*graph\s*=")
        opening = text.splitlines()[at - 1] if at else ""
        first = at + 1 if re.search(r'=\s*("""|\'\'\')\s*$', opening) else max(at, 1)
        graph = parse_graph(src, file=file, first_line=first)
    else:
        rel = _expect_type(data["graph_file"], str, "graph_file", file)
        graph = load_graph((base or Path(".")) / rel)

    vocabulary = _expect_type(data.get("vocabulary", "graph"), str, "vocabulary", file)
    if vocabulary not in VOCABULARIES:
        vl = _line_of(text, r"^\s*vocabulary\s*=")
        raise InputError(
            f"{file}:{vl}: vocabulary must be {' or '.join(map(repr, VOCABULARIES))}, got "
            f"{vocabulary!r}.{did_you_mean(vocabulary, VOCABULARIES)}"
        )

    model = data.get("model", {})
    _expect_type(model, dict, "[model]", file)
    locate = model_locator(text, file)
    config, embedding, dim, seed = parse_model(model, locate)

    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list):
        raise InputError(f"{file}: cases are written [[case]] (an array of tables)")
    cases, line = [], 1
    for i, c in enumerate(raw_cases):
        line = _line_of(text, r"^\s*\[\[case\]\]", line) or line
        cw = f"{file}:{line} (case {i + 1})"
        _expect_type(c, dict, "a case", cw)
        _check_keys(c, CASE_KEYS, cw)
        if "sentence" in c and "text" in c:
            raise InputError(
                f"{cw}: give the sentence once: either sentence = (tokens separated by "
                "spaces) or text = (ordinary text, tokenized)"
            )
        has = {"sentence (or text)": "sentence" in c or "text" in c, "probe": "probe" in c}
        missing = [k for k, ok in has.items() if not ok]
        if missing:
            raise InputError(f"{cw}: missing key(s) {', '.join(missing)}")
        name = str(c.get("name", f"case{i + 1}"))
        if "text" in c:
            sentence = keys(_expect_type(c["text"], str, "text", cw))
        else:
            sentence = tuple(_expect_type(c["sentence"], str, "sentence", cw).split())
        probe = _expect_type(c["probe"], str, "probe", cw).strip().lstrip("*")
        expect = c.get("expect")
        if expect is not None:
            _expect_type(expect, str, "expect", cw)
        if not sentence:
            raise InputError(f"{cw}: the sentence is empty: write its tokens separated by spaces")
        if len(sentence) > MAX_SENTENCE_TOKENS:
            tl = _line_of(text, r"^\s*sentence\s*=", line) or line
            raise InputError(
                f"{file}:{tl} (case {name!r}): the sentence has {len(sentence)} tokens; a case "
                f"holds at most {MAX_SENTENCE_TOKENS} (its trace keeps every layer's n×n "
                "weights). Hint: split it into several cases"
            )
        bad = unknown_token(graph, sentence, probe, expect, vocabulary)
        if bad is not None:
            what, tok, message = bad
            field = "(sentence|text)" if what == "sentence" else what
            tl = _line_of(text, rf"^\s*{field}\s*=.*{re.escape(tok)}", line) or line
            raise InputError(f"{file}:{tl} (case {name!r}): {message}")
        cases.append(Case(name=name, sentence=sentence, probe=probe, expect=expect, line=line))
        line += 1
    exp = Experiment(
        graph=graph,
        config=config,
        embedding=embedding,
        dim=dim,
        seed=seed,
        cases=tuple(cases),
        file=file,
        vocabulary=vocabulary,
    )
    longest = max((len(c.tokens) for c in cases), default=0)
    check_size(locate(""), *exp.sizes, config.depth, longest)
    return exp


def load_experiment(path: str | Path) -> Experiment:
    """Read an experiment TOML file."""
    path = Path(path)
    text = read_text(path, "experiment file", max_bytes=MAX_FILE_BYTES)
    return parse_experiment(text, file=str(path), base=path.parent)
