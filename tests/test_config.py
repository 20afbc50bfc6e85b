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
    try:
        load_text(text, "run.yaml", overrides)
    except ConfigError as exc:  # every problem, not the first one's message: no pytest.raises
        return [f"{locate(p, exc.locator)}: {p.message}" for p in exc.problems]
    pytest.fail("the config was accepted")


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


# --- rules the schema owns: reported by validation, all at once, each at its key ------------

STREAMED = """\
data:
  source: csv
  path: '-'
  target: y
  stream: true
  test_path: test.csv
  split: {test: 0.2, stratify: true}
model:
  layers:
    - {type: dense, units: 0, activation: relu}
    - {type: dropout, rate: 1, activation: off}
training:
  loss: mse
  epochs: 0
"""


def test_data_and_layer_rules_come_with_the_other_errors_of_the_file():
    # Each used to be raised alone, when the data was read or by a second checker.
    assert problems(STREAMED) == [
        "run.yaml:7:17: data.split.test: the test rows come from data.test_path, so split.test "
        "must be 0 (it would take test rows from the main file too); remove it",
        "run.yaml:10:28: model.layers[0].units: expected a positive integer, got 0",
        "run.yaml:11:29: model.layers[1].rate: expected a fraction in [0, 1), got 1",
        "run.yaml:11:44: model.layers[1].activation: expected a name (text), got the boolean "
        "false (YAML reads an unquoted off as a boolean; write 'off' in quotes)",
        "run.yaml:14:11: training.epochs: expected a positive integer, got 0",
    ]
    streamed = STREAMED.replace("  test_path: test.csv\n", "")
    assert problems(streamed)[:2] == [
        "run.yaml:5:11: data.stream: streaming reads the file again every epoch, and standard "
        "input can be read only once; save the data to a file and name it with --data FILE, or "
        "set stream: false",
        "run.yaml:6:32: data.split.stratify: streamed rows cannot be stratified: each row's "
        "split is decided on its own (by a hash of its position); remove stratify, or set "
        "data.stream: false"]


def test_a_bad_layer_type_and_a_bad_argument_of_one_layer_are_both_reported():
    text = GOOD.replace("type: dense, units: 8", "type: dens, units: -8")
    assert problems(text) == [
        "run.yaml:4:14: model.layers[0].type: unknown layer type 'dens' (did you mean 'dense'?)",
        "run.yaml:4:27: model.layers[0].units: expected a positive integer, got -8"]


def test_options_that_set_a_key_are_typed_and_errors_name_the_option():
    from nntrain.config.overrides import option_overrides

    options = option_overrides(strategy="mirroed", backend="jaxx", worker_index=1)
    assert problems(GOOD, options) == [
        "--strategy mirroed: distribution.strategy: expected 'none', 'mirrored' or "
        "'multi_worker', got the text 'mirroed'",
        "--worker-index 1: distribution.worker_index: worker_index needs the workers list "
        "beside it (or neither, to read TF_CONFIG)",
        "--backend jaxx: training.backend: expected 'tensorflow' or 'jax', got the text 'jaxx'"]
    loaded = load_text(GOOD, "run.yaml", option_overrides(
        strategy="multi_worker", workers="a:1,b:2", worker_index=1, backend="jax"))
    assert loaded.config.distribution.workers == ["a:1", "b:2"]
    assert loaded.config.distribution.worker_index == 1
    assert loaded.config.training.backend == "jax"
    assert list(loaded.overrides.values()) == [
        "--strategy multi_worker", "--workers a:1,b:2", "--worker-index 1", "--backend jax"]


def test_data_option_needs_a_source_that_names_its_target():
    from nntrain.config.overrides import option_overrides

    # Reported at the config's data.source, together with the file's other problems.
    assert problems(GOOD.replace("epochs: 3", "epochs: 0"), option_overrides(data="x.csv")) == [
        "run.yaml:1:16: data.source: --data needs a config whose data.source is csv, npz or "
        "images (it names the target), got the text 'generate'",
        "run.yaml:8:11: training.epochs: expected a positive integer, got 0"]
