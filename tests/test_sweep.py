"""assocmem.sweep and ``assocmem sweep``: margins, temperature tolerance, robustness, the grid."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch

from assocmem.cli import main
from assocmem.errors import InputError
from assocmem.experiment import load_experiment, parse_experiment, run_case
from assocmem.sweep import (
    LADDER,
    PERTURB_FACTORS,
    margins,
    perturbed,
    robustness,
    settings_of,
    sweep,
    tolerance,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOY = """
# the seed's pair, transliterated: one-hot reads do not depend on the tokens' names
graph = \"\"\"
SHE = MASHA + KASHA
TASTY = KASHA
HUNGRY = MASHA
MASHA = EATS
EATS = KASHA
\"\"\"
[model]
layers = 2
readout_layer = 3
readout = "delta"
qk_norm = true
temp = 0.2

[[case]]
name = "tasty"
sentence = "MASHA EATS KASHA SHE TASTY"
probe = "SHE"
expect = "KASHA"

[[case]]
name = "hungry"
sentence = "MASHA EATS KASHA SHE HUNGRY"
probe = "SHE"
expect = "MASHA"
"""


@pytest.fixture(autouse=True)
def one_thread():
    """Hundreds of tiny models: a second thread only adds overhead (and contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY, encoding="utf-8")
    return path


def test_margins_are_what_run_case_gives(toy):
    exp = load_experiment(toy)
    got = margins(exp)
    model = exp.build()
    for case in exp.cases:
        r = run_case(model, case)
        expected = r.logits[case.expect] - max(v for t, v in r.logits.items() if t != case.expect)
        assert got[case.name] == pytest.approx(expected, abs=1e-12)


def test_random_embeddings_take_the_worst_seed(toy):
    exp = load_experiment(toy).with_model(embedding="random", dim=8)
    per_seed = [margins(exp, {"seed": s}) for s in (0, 1, 2)]
    worst = margins(exp, {}, seeds=(0, 1, 2))
    for name in worst:
        assert worst[name] == min(m[name] for m in per_seed)


def test_tolerance_ends_pass_and_the_next_rung_flips(toy):
    exp = load_experiment(toy)
    s = settings_of(exp)

    def passes(t):
        return min(margins(exp, t).values()) >= 0.1

    tol = tolerance(passes, s)
    assert set(tol) == {"assoc", "context", "mlp", "all"}
    lo, hi = tol["all"]
    assert lo <= 1 <= hi
    scale = {b: s[f"temp_{b}"] for b in ("assoc", "context", "mlp")}
    for f in (lo, hi):
        assert passes({**s, **{f"temp_{b}": t * f for b, t in scale.items()}})
    for f, nxt in ((hi, hi * LADDER[0]), (lo, lo / LADDER[0])):
        if LADDER[-1] ** -1 < nxt < LADDER[-1]:  # inside the scan: the next rung must flip
            assert not passes({**s, **{f"temp_{b}": t * nxt for b, t in scale.items()}}), f


def test_robustness_counts_the_perturbations_that_pass(toy):
    exp = load_experiment(toy)
    s = settings_of(exp)
    seen = []

    def passes(t):
        seen.append(t["temp_context"])
        return t["temp_context"] > s["temp_context"]  # passes only when scaled up

    share = robustness(passes, s, n=40, seed=3)
    assert share == sum(t > s["temp_context"] for t in seen) / 40
    assert 0 < share < 1
    p = perturbed(s, random.Random(0))
    assert set(p) == set(s)
    for b in ("assoc", "context", "mlp"):
        assert any(p[f"temp_{b}"] == pytest.approx(s[f"temp_{b}"] * f) for f in PERTURB_FACTORS)


def test_sweep_reports_the_grid(toy):
    exp = load_experiment(toy)
    report = sweep(
        exp, temps=(0.1, 0.2, 0.5), norms=("none", "layer"), readouts=("residual",), top=1
    )
    assert len(report.configs) == 3**3 * 2
    worst = [o.worst for o in report.configs]
    assert worst == sorted(worst, reverse=True)
    assert len(report.passing) == sum(w >= report.min_margin for w in worst)
    assert sum(report.counts()["norm"].values()) == len(report.passing)
    data = report.to_json()
    assert data["n"] == len(report.configs) and data["passing"] == len(report.passing)
    assert set(data["base"]) >= {"settings", "margins", "worst", "passed", "robust"}


def test_a_file_without_decisions_is_refused(toy):
    exp = parse_experiment(TOY.replace('expect = "KASHA"\n', "").replace('expect = "MASHA"\n', ""))
    with pytest.raises(InputError, match="no case has 'expect'"):
        sweep(exp, temps=(0.2,))


def test_masha_is_robust_as_seed_md_says():
    # the margins docs/seed.md quotes (read from its table, so the doc cannot drift from the
    # command), and 100 % of 20 random ±25 % perturbations hold
    doc = (EXAMPLES.parent / "docs" / "seed.md").read_text(encoding="utf-8")
    quoted = re.search(r"margins (\d\.\d{3}) \(tasty → КАШУ\) and (\d\.\d{3}) \(hungry", doc)
    assert quoted, "docs/seed.md no longer quotes the seed's margins in its table"
    exp = load_experiment(EXAMPLES / "masha.toml")
    report = sweep(exp, temps=(0.2,), norms=("none",), readouts=("delta",), top=0)
    want = {"tasty": float(quoted[1]), "hungry": float(quoted[2])}
    assert report.base.margins == pytest.approx(want, abs=5e-4)
    assert report.base.robust == 1.0
    assert report.base.tolerance is not None


def test_cli_sweep_writes_json_and_refuses_bad_lists(toy, tmp_path, capsys):
    out = tmp_path / "s.json"
    code = main(
        [
            "sweep",
            str(toy),
            "--temps",
            "0.1,0.2",
            "--norm",
            "none",
            "--top",
            "1",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "configurations pass every case" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["n"] == 2**3 * 2 and data["file"] == str(toy)
    assert main(["sweep", str(toy), "--temps", "0.1,x"]) == 2
    assert main(["sweep", str(toy), "--norm", "nope"]) == 2
    assert main(["sweep", str(toy), "--temps", "0,0.1"]) == 2
    assert "expected a comma-separated list" in capsys.readouterr().err
    for bad, message in (
        ("qk_nrm=true", "Did you mean qk_norm"),
        ("qk_norm=maybe", "expected true or false"),
        ("readout_layer=0", "readout_layer must be"),
        ("context_source=x", "unknown value(s) ['x']"),
    ):
        assert main(["sweep", str(toy), "--vary", bad]) == 2
        assert message in capsys.readouterr().err, bad


def test_cli_sweep_varies_other_settings(toy, tmp_path, capsys):
    out = tmp_path / "s.json"
    args = ["sweep", str(toy), "--temps", "0.2", "--norm", "none", "--readout", "delta"]
    code = main([*args, "--vary", "qk_norm=true,false", "--vary", "readout_layer=2,3",
                 "--top", "1", "--json", str(out)])  # fmt: skip
    assert code == 0 and "× qk_norm × readout_layer" in capsys.readouterr().out
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["n"] == 4
    assert {(c["settings"]["qk_norm"], c["settings"]["readout_layer"]) for c in data["configs"]} == {
        (True, 2), (True, 3), (False, 2), (False, 3),
    }  # fmt: skip
    assert sum(data["counts"]["qk_norm"].values()) == data["passing"]


@pytest.mark.parametrize(
    "option, value, message",
    [("--temps", "0.2,inf", "finite and > 0"), ("--min-margin", "nan", "--min-margin must be"),
     ("--top", "-1", "--top")],
)  # fmt: skip
def test_cli_sweep_refuses_non_finite_and_negative_options(toy, capsys, option, value, message):
    assert main(["sweep", str(toy), option, value]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err and not captured.out
