"""ModelConfig and the bank names: one definition that the model, trace and experiment files share."""

import subprocess
import sys
from dataclasses import fields

import pytest

from assocmem.config import BANKS, JOINT_BANKS, ModelConfig, field_kinds
from assocmem.errors import InputError
from assocmem.experiment import MODEL_KEYS, parse_experiment

GRAPH = 'graph = """\nA = B\nB = A\n"""\n'
# a non-default value for every kind of field a settings file gives
OTHER = {int: 3, bool: True, float: 0.25}


def test_every_config_field_is_an_experiment_key():
    """A field added to ModelConfig is a [model] key without restating it (temps come as one ``temp``)."""
    names = {f.name for f in fields(ModelConfig)}
    assert {k for k in MODEL_KEYS if k in names} == {n for n in names if not n.startswith("temp_")}
    for name, (kind, choices) in field_kinds().items():
        default = getattr(ModelConfig(), name)
        value = next(c for c in choices if c != default) if choices else OTHER[kind]
        toml = f"{value!r}".replace("'", '"') if kind is str else str(value).lower()
        exp = parse_experiment(f"{GRAPH}[model]\n{name} = {toml}\n")
        assert getattr(exp.config, name) == value, name


def test_choices_come_from_the_literal_types():
    for name, (_, choices) in field_kinds().items():
        if choices:
            with pytest.raises(InputError, match=rf"{name} must be one of .*{choices[0]!r}"):
                ModelConfig(**{name: "bogus"})


def test_banks():
    assert ModelConfig().banks == BANKS and ModelConfig(joint=True).banks == JOINT_BANKS


def test_trace_imports_without_the_model():
    """No model <-> trace circle: the trace needs only the config."""
    code = "import sys, assocmem.trace; assert 'assocmem.model' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
