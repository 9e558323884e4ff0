"""The seed experiment end to end (examples/masha.toml), and the model options the seed sweep added."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from assocmem.cli import main
from assocmem.experiment import load_experiment, run_case
from assocmem.model import ModelConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "masha.toml"
MIN_MARGIN = 0.1


def margin(logits: dict[str, float], expect: str) -> float:
    """Expected token's logit minus the best other (negative when it is not top-1)."""
    return logits[expect] - max(v for t, v in logits.items() if t != expect)


def seeds_of(exp) -> range | list[int]:
    return range(5) if exp.embedding == "random" else [exp.seed]


def test_seed_example_via_library():
    exp = load_experiment(EXAMPLE)
    assert {c.expect for c in exp.cases} == {"КАШУ", "МАША"}
    for seed in seeds_of(exp):
        model = exp.build(seed)
        for case in exp.cases:
            r = run_case(model, case)
            assert r.passed, (seed, case.name, r.top[:3])
            assert margin(r.logits, case.expect) >= MIN_MARGIN, (seed, case.name, r.logits)


def test_seed_example_via_cli(capsys):
    exp = load_experiment(EXAMPLE)
    for seed in seeds_of(exp):
        args = ["run", str(EXAMPLE), "--json"] + (
            ["--seed", str(seed)] if exp.embedding == "random" else []
        )
        assert main(args) == 0
        out = json.loads(capsys.readouterr().out)
        cases = out["cases"]
        assert [c["name"] for c in cases] == [c.name for c in exp.cases]
        for c in cases:
            assert c["pass"] is True and c["top"][0] == c["expect"]
            assert margin(c["logits"], c["expect"]) >= MIN_MARGIN, c["logits"]


def test_literal_reading_cannot_tell_the_sentences_apart():
    """All temperatures 0.1, dot-product reads: the probe's output barely depends on the adjective."""
    exp = load_experiment(EXAMPLE).with_model(
        temp_assoc=0.1,
        temp_context=0.1,
        temp_mlp=0.1,
        readout_layer=3,
        readout="residual",
        qk_norm=False,
    )
    model = exp.build()
    a, b = (run_case(model, c).logits for c in exp.cases)
    assert max(abs(a[t] - b[t]) for t in a) < 1e-3


def test_best_dot_product_reading_decides_both_sentences():
    """docs/seed.md's runner-up: dot-product reads need one temperature per layer."""
    exp = load_experiment(EXAMPLE).with_model(
        qk_norm=False, temp_assoc=(0.05, 2.0, 1.0), temp_context=(0.1, 2.0, 2.0),
        temp_mlp=(2.0, 2.0, 2.0), readout_layer=3, readout="delta",
    )  # fmt: skip
    model = exp.build()
    for case in exp.cases:
        r = run_case(model, case)
        assert margin(r.logits, case.expect) >= MIN_MARGIN, (case.name, r.logits)


# ---------------------------------------------------------------- the options themselves


def _model(**cfg):
    exp = load_experiment(EXAMPLE).with_model(embedding="random", dim=16, seed=3, **cfg)
    return exp.build(), exp.cases[1]


def test_qk_norm_scores_by_cosine():
    model, case = _model(qk_norm=True, temp_assoc=0.3, temp_context=0.7, temp_mlp=1.1)
    _, cache = model.run_with_cache(model.ids(case.tokens))
    x = cache["layers.1.context.out"] - cache["layers.1.context.read"]  # the query of that read
    prev = cache["embed"]
    q, k = F.normalize(x, dim=-1), F.normalize(prev, dim=-1)
    n = len(case.tokens)
    scores = (q @ k.T / 0.7).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(-1), -torch.inf)
    want = torch.softmax(scores[1:], -1)  # position 0 reads nothing
    torch.testing.assert_close(cache["layers.1.context.weights"][1:], want, rtol=0, atol=1e-12)
    # the assoc read: cosine against the slots' keys
    x0 = cache["embed"]
    w = torch.softmax(F.normalize(x0, dim=-1) @ F.normalize(model.K, dim=-1).T / 0.3, -1)
    torch.testing.assert_close(cache["layers.1.assoc.weights"], w, rtol=0, atol=1e-12)


def test_qk_norm_joint_matches_separate_temperatures():
    model, case = _model(qk_norm=True, joint=True, temp_assoc=0.3, temp_context=0.7)
    _, cache = model.run_with_cache(model.ids(case.tokens))
    x0 = F.normalize(cache["embed"], dim=-1)
    n, m = len(case.tokens), len(model.K)
    s = torch.cat([x0 @ F.normalize(model.K, dim=-1).T / 0.3, x0 @ x0.T / 0.7], dim=-1)
    mask = torch.cat(
        [torch.ones(n, m, dtype=torch.bool), torch.ones(n, n, dtype=torch.bool).tril(-1)], -1
    )
    want = torch.softmax(s.masked_fill(~mask, -torch.inf), -1)
    torch.testing.assert_close(cache["layers.1.joint.weights"], want, rtol=0, atol=1e-12)


def test_context_source_embed_reads_the_token_vectors_in_every_layer():
    model, case = _model(context_source="embed", readout_layer=3)
    out, cache = model.run_with_cache(model.ids(case.tokens))
    x0 = cache["embed"]
    for layer in (2, 3):
        w = cache[f"layers.{layer}.context.weights"]
        torch.testing.assert_close(
            cache[f"layers.{layer}.context.read"], w @ x0, rtol=0, atol=1e-12
        )
    # and it differs from the default, which reads the layer's input
    default, _ = _model(readout_layer=3)
    assert not torch.allclose(default(model.ids(case.tokens)).logits, out.logits)


def test_bad_new_options_are_refused():
    from assocmem.errors import InputError

    with pytest.raises(InputError, match="context_source"):
        ModelConfig(context_source="input")  # type: ignore[arg-type]
    assert ModelConfig().qk_norm is False and ModelConfig().context_source == "layer"
