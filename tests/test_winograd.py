"""The Winograd runner: items, configuration, statistics, baselines and the JSON it writes."""

from __future__ import annotations

import json
import math

import pytest

from assocmem.cli import main
from assocmem.errors import InputError
from assocmem.memories.vectors import WordVectors
from assocmem.winograd import (
    analyse,
    binomial_p,
    default_config_path,
    fits,
    head,
    load_config,
    load_items,
    nearest_choice,
    parse_config,
    pronoun_slot,
    run_item,
    substituted,
    vector_choice,
    wilson,
)

pytest.importorskip("pymorphy3", reason="Russian lemmas need pymorphy3")


def _row(tokens: str, pronoun: int, cands: list[tuple[int, int]], correct: int) -> dict:
    toks = tokens.split()
    sentence = " ".join(toks)
    return {
        "sentence": sentence,
        "tokens": toks,
        "pronoun": {"text": toks[pronoun], "span": [pronoun, pronoun + 1]},
        "candidates": [
            {"text": " ".join(toks[a:b]), "span": [a, b], "correct": k == correct}
            for k, (a, b) in enumerate(cands)
        ],
    }


# three hand-made items: the answers are the 2nd, the 1st, the 1st candidate
ROWS = [
    _row("Маша ест кашу потому что она вкусная", 5, [(0, 1), (2, 3)], 1),
    _row("Маша ест кашу потому что она голодная", 5, [(0, 1), (2, 3)], 0),
    _row("Кубок не помещается в чемодан потому что он большой", 7, [(0, 1), (4, 5)], 0),
]
TOY_CONFIG = """\
agreement = true

[builder]
kind = "none"

[lm]
memlm = "{tmp}/no_memlm"
gpt = "{tmp}/no_gpt"

[model]
layers = 2
qk_norm = true
temp = 0.2
readout_layer = 3
readout = "delta"
min_score = 0.0
"""


@pytest.fixture
def items_file(tmp_path):
    path = tmp_path / "three.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", "utf-8")
    return path


@pytest.fixture
def toy_config(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY_CONFIG.format(tmp=tmp_path), encoding="utf-8")
    return path


def test_wilson_and_binomial_against_known_values():
    lo, hi = wilson(8, 10)  # the textbook example (Newcombe 1998): 0.4902 – 0.9433
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert binomial_p(7, 10) == pytest.approx(176 / 1024)  # (120 + 45 + 10 + 1) / 2^10
    assert binomial_p(0, 10) == 1.0 and binomial_p(10, 10) == pytest.approx(1 / 1024)
    assert binomial_p(60, 99) == pytest.approx(
        sum(math.comb(99, i) for i in range(60, 100)) / 2**99
    )


def test_json_has_exactly_the_promised_keys_and_consistent_statistics(
    items_file, toy_config, tmp_path, capsys
):
    out = tmp_path / "out.json"
    rc = main(["winograd", str(items_file), "--config", str(toy_config), "--json", str(out)])
    assert rc == 0
    d = json.loads(out.read_text(encoding="utf-8"))
    assert set(d) == {"n", "correct", "accuracy", "ci95", "p_value", "baselines", "items"}
    assert d["n"] == 3 and d["accuracy"] == d["correct"] / 3
    assert d["ci95"] == pytest.approx(list(wilson(d["correct"], 3)))
    assert d["p_value"] == pytest.approx(binomial_p(d["correct"], 3))
    assert d["baselines"]["first"] == pytest.approx(2 / 3)  # answers: 2nd, 1st, 1st
    assert d["baselines"]["nearest"] == pytest.approx(1 / 3)  # КАШУ, КАШУ, ЧЕМОДАН
    assert d["baselines"]["lm_memlm"] is None and d["baselines"]["lm_gpt"] is None
    assert "pushkin_bpe_gpt.toml" in capsys.readouterr().err  # how to train what is missing
    for it, row in zip(d["items"], ROWS, strict=True):
        assert set(it) == {"sentence", "candidates", "chosen", "correct", "margin"}
        assert it["candidates"] == [c["text"] for c in row["candidates"]]
        answer = next(c["text"] for c in row["candidates"] if c["correct"])
        assert it["correct"] == (it["chosen"] == answer) and it["margin"] >= 0
    assert sum(it["correct"] for it in d["items"]) == d["correct"]


def test_the_probe_decision_follows_the_memory(items_file, toy_config):
    class Toy:  # ВКУСНЫЙ calls up КАША, ГОЛОДНЫЙ calls up МАША: the seed's graph
        def scores(self, words):
            import torch

            pairs = {("ВКУСНЫЙ", "КАША"), ("ГОЛОДНЫЙ", "МАША")}
            return torch.tensor([[float((a, b) in pairs) for b in words] for a in words])

    cfg = load_config(toy_config)
    from dataclasses import replace

    cfg = replace(cfg, builder=replace(cfg.builder, kind="vectors", targets="all", threshold=0.5))
    items = load_items(items_file)
    tasty, hungry = (run_item(it, cfg, Toy()) for it in items[:2])
    assert "ВКУСНЫЙ = КАША" in str(tasty.graph) and str(tasty.graph).startswith("ОНА = МАША + КАША")
    assert tasty.heads == ("МАША", "КАША") and tasty.chosen == 1 and tasty.correct
    assert hungry.chosen == 0 and hungry.correct


def test_heads_agreement_and_the_pronoun_slot(items_file):
    items = load_items(items_file)
    assert [head(items[2], k).lemma for k in (0, 1)] == ["КУБОК", "ЧЕМОДАН"]
    ona, on, ego = analyse("она"), analyse("он"), analyse("его,")
    assert fits(ona, analyse("Маша")) and fits(ona, analyse("каша"))
    assert not fits(on, analyse("каша")) and fits(on, analyse("кубок"))
    assert fits(ego, analyse("объявление")) and not fits(on, analyse("объявление"))
    assert not fits(analyse("они"), analyse("кубок")) and fits(analyse("они"), analyse("Сэм"), True)
    assert fits(analyse("мы"), analyse("кубок"))  # first person: not checked
    assert analyse("вазу", noun=True).lemma == "ВАЗА" and analyse(",") is None
    assert str(pronoun_slot(items[2], True)) == "ОН = КУБОК + ЧЕМОДАН"
    row = _row("Ваза стоит на столе потому что она красивая", 6, [(0, 1), (3, 4)], 0)
    path = items_file.parent / "vase.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False), encoding="utf-8")
    (vase,) = load_items(path)
    assert str(pronoun_slot(vase, True)) == "ОНА = ВАЗА"  # СТОЛ is masculine
    assert str(pronoun_slot(vase, False)) == "ОНА = ВАЗА + СТОЛ"


def test_baselines_nearest_vectors_and_the_substituted_sentence(items_file):
    items = load_items(items_file)
    assert [nearest_choice(it) for it in items] == [1, 1, 1]
    vectors = WordVectors.from_dict({"маша": [1, 0], "каша": [0, 1], "вкусный": [0.1, 1],
                                     "голодный": [1, 0.1]})  # fmt: skip
    assert vector_choice(items[0], vectors) == 1 and vector_choice(items[1], vectors) == 0
    prefix, suffix = substituted(items[2], 1, inflect=True)
    assert prefix == "Кубок не помещается в чемодан потому что чемодан" and suffix == " большой"
    assert substituted(items[0], 0, inflect=True)[0].endswith(
        "что Маша"
    )  # a name keeps its capital


def test_lm_scoring_with_a_tiny_gpt(items_file, toy_config, tmp_path):
    from assocmem.lm.train import DataConfig, RunConfig, TrainConfig, load_model, train
    from assocmem.winograd import LMConfig, lm_choice, sequence_logprob

    text = tmp_path / "t.txt"
    text.write_text("".join(r["sentence"] + ",\n" for r in ROWS) * 50, encoding="utf-8")
    cfg = RunConfig(
        out_dir=str(tmp_path / "gpt"),
        data=DataConfig(path=str(text), tokenizer="char"),
        model={"kind": "gpt", "n_layer": 1, "n_head": 1, "n_embd": 16, "block_size": 8},
        train=TrainConfig(batch_size=4, max_iters=2, eval_interval=0, eval_iters=1, threads=1),
    )
    train(cfg, progress=False, log=lambda *_: None)
    model, tok, _ = load_model(tmp_path / "gpt")
    import torch

    ids = tok.encode("Маша ест")  # 8 tokens: one window, the exact sum
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0][0], -1)  # (7, V)
    exact = float(lp[torch.arange(2, 7), torch.tensor(ids[3:])].sum())
    assert sequence_logprob(model, ids, 3) == pytest.approx(exact, abs=1e-5)
    long = tok.encode("Маша ест кашу, потому что")  # longer than the context: windows slide
    assert math.isfinite(sequence_logprob(model, long, 1))
    choice, margin = lm_choice(load_items(items_file)[1], model, tok, LMConfig())
    assert choice in (0, 1) and margin >= 0
    conf = toy_config.read_text(encoding="utf-8").replace(f"{tmp_path}/no_gpt", f"{tmp_path}/gpt")
    toy_config.write_text(conf, encoding="utf-8")
    out = tmp_path / "o.json"
    assert main(["winograd", str(items_file), "--config", str(toy_config), "--json", str(out)]) == 0
    assert isinstance(json.loads(out.read_text(encoding="utf-8"))["baselines"]["lm_gpt"], float)


def test_the_default_configuration_is_shipped_and_valid():
    from assocmem.experiment import OPEN_MIN_SCORE

    cfg = load_config()
    assert default_config_path().is_file() and cfg.builder.kind in ("vectors", "cooccur", "none")
    assert parse_config("").model.min_score == OPEN_MIN_SCORE  # the open vocabulary's null read
    assert parse_config("[model]\nmin_score = 0\n").model.min_score == 0


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[builder]\nkind = 'magic'\n", r":2: \[builder\] kind: must be one of"),
        ("[builder]\n\ntop_k = 'two'\n", r":3: \[builder\] top_k: must be an integer"),
        ("[builder]\nthreshold = -1\n", r":2: \[builder\] threshold: must be >= 0"),
        ("[builder]\nthreshold = nan\n", r":2: \[builder\] threshold: must be a finite number"),
        ("[builder]\nwindow = 0\n", r":2: \[builder\] window: must be >= 1"),
        ("[builder]\ntop_k = 100000000000\n", r":2: \[builder\] top_k: must be >= 1 and <= 1000"),
        ("[lm]\nscorin = 'full'\n", r":2: \[lm\] scorin: unknown setting.*scoring"),
        ("[model]\ntemp = 0\n", r"\[model\]: .*temp"),
        ("agreement = 1\n", r":1: agreement: must be true or false"),
        ("bogus = 1\n", r":1: bogus: unknown setting"),
    ],
)
def test_config_errors_name_file_line_and_key(text, where):
    with pytest.raises(InputError, match=where):
        parse_config(text, "c.toml")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"x.jsonl:2: not valid JSON"),
        ('{"sentence": "a"}', r"x.jsonl:2: missing key 'tokens'"),
        (
            json.dumps({**ROWS[0], "pronoun": {"text": "она", "span": [5, 99]}}),
            r"x.jsonl:2: pronoun: key 'span' must be a token span",
        ),  # fmt: skip
        (json.dumps({**ROWS[0], "candidates": ROWS[0]["candidates"][:1]}), r"two candidates"),
    ],
)
def test_bad_items_are_located(tmp_path, line, message, capsys):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(ROWS[0], ensure_ascii=False) + "\n" + line + "\n", "utf-8")
    with pytest.raises(InputError, match=message):
        load_items(path)
    assert main(["winograd", str(path)]) == 2  # the CLI: a message, exit 2, no traceback
    assert "Traceback" not in capsys.readouterr().err


def test_html_report_of_one_item(items_file, toy_config, tmp_path):
    out = tmp_path / "r.html"
    rc = main(["winograd", str(items_file), "--config", str(toy_config), "--html", str(out),
               "--item", "3"])  # fmt: skip
    assert rc == 0
    html = out.read_text(encoding="utf-8")
    assert "decision" in html and "ОН = КУБОК + ЧЕМОДАН" in html and "layer" in html
    assert main(["winograd", str(items_file), "--config", str(toy_config), "--html",
                 str(out), "--item", "9"]) == 2  # fmt: skip
    assert main(["winograd", str(items_file), "--html", str(tmp_path / "r.txt")]) == 2


def test_one_items_memory_as_a_graph_file_that_checks(items_file, toy_config, tmp_path):
    out = tmp_path / "item.graph"
    rc = main(["winograd", str(items_file), "--config", str(toy_config), "--graph", str(out),
               "--item", "3"])  # fmt: skip
    assert rc == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# the memory of") and "ОН = КУБОК + ЧЕМОДАН" in text
    assert main(["check", str(out)]) == 0  # a person can check (and edit) it
    assert main(["winograd", str(items_file), "--graph", str(tmp_path / "x.txt")]) == 2


def test_missing_config_file_is_an_input_error(items_file, tmp_path):
    assert main(["winograd", str(items_file), "--config", str(tmp_path / "none.toml")]) == 2
    with pytest.raises(InputError, match="no such winograd config"):
        load_config(tmp_path / "none.toml")


@pytest.mark.parametrize(
    "extra",
    [
        ["--item", "99", "--html", "r.html"],
        ["--json", "."],
        ["--json", "f.txt/x.json"],
        ["--graph", "folder.graph"],
    ],  # fmt: skip
)
def test_bad_outputs_and_items_are_refused_before_the_run(
    items_file, toy_config, tmp_path, monkeypatch, extra
):
    import assocmem.winograd

    def no_run(*a, **k):
        raise AssertionError("the benchmark ran before its outputs were checked")

    monkeypatch.setattr(assocmem.winograd, "evaluate", no_run)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_text("a file, not a folder")
    (tmp_path / "folder.graph").mkdir()
    assert main(["winograd", str(items_file), "--config", str(toy_config), *extra]) == 2
