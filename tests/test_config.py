"""Config validation: every problem with its place, unknown keys with suggestions, overrides."""

from __future__ import annotations

import pytest

from nntrain.config import load_text, locate
from nntrain.errors import ConfigError

GOOD = """\
data: {source: generate, generator: moons, samples: 100}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
training:
  loss: binary_crossentropy
  epochs: 3
"""


def problems(text: str, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_text(text, "run.yaml", overrides)
    return [f"{locate(p)}: {p.message}" for p in exc.value.problems]


def test_good_config_fills_defaults():
    cfg = load_text(GOOD, "run.yaml").config
    assert cfg.training.batch_size == 32
    assert cfg.training.optimizer.name == "adam"
    assert cfg.data.split.test == 0.2
    assert cfg.output.dir == "runs"
    assert cfg.model.layers[0].args == {"units": 8, "activation": "relu"}


def test_the_issue_example_points_at_line_and_column():
    text = GOOD.replace("units: 8", "units: -4")
    assert problems(text) == ["run.yaml:4:28: model.layers[0].units: expected a positive "
                              "integer, got -4"]


def test_all_problems_of_a_file_in_one_pass_in_file_order():
    text = GOOD.replace("epochs: 3", "epoch: 3\n  batch_size: 2.5").replace(
        "type: dense, units: 1", "type: dens, units: 1")
    got = problems(text)
    assert got == [
        "run.yaml:5:14: model.layers[1].type: unknown layer type 'dens' (did you mean 'dense'?)",
        "run.yaml:8:3: training.epoch: unknown key 'epoch' (did you mean 'epochs'?)",
        "run.yaml:9:15: training.batch_size: expected an integer, got 2.5",
    ]


@pytest.mark.parametrize("old, new, expected", [
    ("epochs: 3", "epochs: true", "training.epochs: expected an integer, got the boolean true"),
    ("epochs: 3", "epochs: 0", "training.epochs: expected a positive integer, got 0"),
    ("epochs: 3", "epochs: '3'", "training.epochs: expected an integer, got the text '3'"),
    ("loss: binary_crossentropy", "loss: binary_crossentopy",
     "training.loss: unknown loss 'binary_crossentopy' (did you mean 'binary_crossentropy'?)"),
    ("loss: binary_crossentropy", "loss: yes",
     "training.loss: expected a name (text), got the boolean true (YAML reads an unquoted "
     "yes as a boolean; write 'yes' in quotes)"),
    ("activation: relu}", "activation: rellu}",
     "model.layers[0].activation: unknown activation 'rellu' (did you mean 'relu'?)"),
    ("samples: 100", "samples: 100, split: {test: 1.5}",
     "data.split.test: expected a fraction in [0, 1), got 1.5"),
    ("source: generate", "source: cvs", "data.source: unknown source 'cvs' (did you mean "
                                        "'csv'?)"),
    ("generator: moons", "generator: moon", "data.generator: unknown generator 'moon' (did you "
                                            "mean 'moons'?)"),
    ("epochs: 3", "epochs: 3\n  optimizer: {name: adam, learning_rate: -1}",
     "training.optimizer.learning_rate: expected a positive number, got -1"),
])
def test_messages(old, new, expected):
    got = problems(GOOD.replace(old, new))
    assert len(got) == 1
    assert got[0].split(": ", 1)[1] == expected


def test_missing_sections_are_named():
    got = problems("data: {source: generate}\n")
    assert "run.yaml:1:1: model: required key 'model' is missing" in got
    assert "run.yaml:1:1: training: required key 'training' is missing" in got


def test_overrides_apply_and_errors_name_the_override():
    cfg = load_text(GOOD + "  optimizer: sgd\n", "run.yaml", [
        "training.epochs=50", "model.layers[0].units=64",
        "training.optimizer.learning_rate=1e-3"]).config
    assert cfg.training.optimizer.name == "sgd"
    assert cfg.training.epochs == 50
    assert cfg.model.layers[0].args["units"] == 64
    assert cfg.training.optimizer.args["learning_rate"] == 0.001
    assert problems(GOOD, ["training.epochs=0"]) == [
        "--set training.epochs=0: training.epochs: expected a positive integer, got 0"]
    assert problems(GOOD, ["training.epoch=5"]) == [
        "--set training.epoch=5: training.epoch: unknown key 'epoch' (did you mean 'epochs'?)"]


@pytest.mark.parametrize("expr, message", [
    ("training.epochs", "expected KEY=VALUE"),
    ("model.layers[7].units=3", "model.layers has 2 item(s); there is no [7]"),
    ("training..epochs=3", "is not a key path"),
])
def test_bad_override_syntax(expr, message):
    got = problems(GOOD, [expr])
    assert len(got) == 1 and message in got[0] and got[0].startswith(f"--set {expr}")


def test_semantic_split_check():
    got = problems(GOOD.replace("samples: 100", "samples: 100, split: {test: 0.5, validation: "
                                                "0.5}"))
    assert got == ["run.yaml:1:65: data.split: validation + test must leave rows for training "
                   "(sum < 1), got 1.0"]
