"""The commands as a user drives them: exit codes, stdout for data, stderr for the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import NO_PLOTS, ROOT

NNTRAIN = [sys.executable, "-m", "nntrain"]


def test_help_is_fast_and_never_imports_tensorflow():
    # Every command's help in one fresh process (test_eval's check of the using side's
    # commands lives here too: one process start instead of two).
    code = ("import sys\nfrom nntrain.cli.app import main\nrc = main(['--help'])\n"
            "assert rc == 0, rc\n"
            "for command in ('eval', 'predict', 'export', 'runs'):\n"
            "    assert main([command, '--help']) == 0, command\n"
            "assert 'tensorflow' not in sys.modules\n"
            "assert 'keras' not in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for command in ("train", "validate", "schema", "generate-data", "eval", "predict", "export",
                    "runs"):
        assert command in res.stdout


def test_version(cli):
    res = cli("--version")
    assert res.code == 0 and res.out.startswith("nntrain ")


def test_usage_errors_exit_2(cli):
    res = cli("train")
    assert res.code == 2 and "name a config file" in res.err
    res = cli("train", "x.yaml", "--no-such-flag")
    assert res.code == 2 and "--no-such-flag" in res.err


def test_train_prints_the_run_dir_on_stdout_and_progress_on_stderr(cli, tiny, tmp_path):
    res = cli("train", tiny, *NO_PLOTS)
    assert res.code == 0, res.err
    assert res.out == "runs/tiny\n"
    assert "epoch 1/2" in res.err and "epoch 2/2" in res.err
    assert "final metrics" in res.err and "test" in res.err
    assert (tmp_path / "runs" / "tiny" / "model.keras").is_file()


def test_train_json_and_quiet(cli, tiny):
    res = cli("train", tiny, "--json", "--quiet", *NO_PLOTS)
    assert res.code == 0 and res.err == ""
    doc = json.loads(res.out)
    assert doc["run_dir"] == "runs/tiny" and doc["epochs"] == 2
    assert set(doc["metrics"]["test"]) == {"loss", "accuracy"}


def test_missing_config_file(cli):
    res = cli("train", "nope.yaml")
    assert res.code == 2
    assert res.err.strip() == "nope.yaml: no such config file"


def test_config_error_is_one_line_with_location_and_nothing_written(cli, write, tmp_path):
    cfg = write("bad.yaml", (ROOT / "configs" / "tutorial.yaml").read_text()
                .replace("epochs: 10", "epoch: 10"))
    res = cli("train", cfg)
    assert res.code == 2 and res.out == ""
    line = [n for n, t in enumerate(cfg.read_text().splitlines(), 1) if "epoch: 10" in t][0]
    assert res.err.startswith(f"{cfg}:{line}:3: training.epoch: unknown key 'epoch' (did you "
                              "mean 'epochs'?)")
    assert len(res.err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_data_error_exits_2_with_file_and_line(cli, write, tmp_path):
    # (Text in a cell is no error: it makes a categorical column, see test_tabular.py.)
    write("d.csv", "a,b,y\n1,2,0\n1,1\n")
    cfg = write("c.yaml", """
        data: {source: csv, path: d.csv, target: y}
        model: {layers: [{type: dense, units: 1, activation: sigmoid}]}
        training: {loss: binary_crossentropy}
    """)
    res = cli("train", cfg)
    assert res.code == 2
    assert res.err.strip() == "d.csv:3: expected 3 fields as in the header, found 2"
    assert not (tmp_path / "runs").exists()


def test_debug_shows_the_traceback(cli):
    res = cli("train", "nope.yaml", "--debug")
    assert res.code == 2 and "Traceback" in res.err and "no such config file" in res.err
    assert "Traceback" not in cli("train", "nope.yaml").err


def test_diverged_training_exits_3_and_saves_no_model(cli, write, tmp_path):
    cfg = write("div.yaml", """
        data: {source: generate, generator: regression, samples: 64, noise: 0.0}
        model: {layers: [{type: dense, units: 1}]}
        training:
          loss: mse
          optimizer: {name: sgd, learning_rate: 1.0e+12}
          epochs: 3
    """)
    res = cli("train", cfg)
    assert res.code == 3
    assert "training diverged" in res.err and "lower learning rate" in res.err
    assert not list((tmp_path / "runs").rglob("model.keras"))
    for run in (tmp_path / "runs").iterdir():  # kept for its history, never as a result
        assert json.loads((run / "manifest.json").read_text())["status"] == "diverged"
        assert "nan" in (run / "history.csv").read_text() or "inf" in (run / "history.csv").read_text()


def test_validate_prints_the_summary_and_writes_nothing(cli, tiny, tmp_path):
    res = cli("validate", tiny)
    assert res.code == 0, res.err
    assert res.out == ""
    assert "dense" in res.err and "total" in res.err and "OK" in res.err
    assert not (tmp_path / "runs").exists()


def test_validate_catches_semantic_mismatches(cli, write):
    cfg = write("sm.yaml", """
        data: {source: generate, generator: blobs, classes: 3, samples: 60}
        model: {layers: [{type: dense, units: 1, activation: sigmoid}]}
        training: {loss: sparse_categorical_crossentropy}
    """)
    res = cli("validate", cfg)
    assert res.code == 2
    assert res.err.startswith(f"{cfg}:2:39: model.layers[0].units: 1 output unit cannot tell 3 "
                              "classes apart")


def test_schema_is_json_on_stdout(cli):
    res = cli("schema")
    assert res.code == 0 and res.err == ""
    schema = json.loads(res.out)
    assert set(schema["required"]) == {"data", "model", "training"}
    assert schema["additionalProperties"] is False
    layer = schema["$defs"]["LayerSpec"]["properties"]["type"]
    assert "dense" in layer["enum"]


def test_generate_data_to_stdout_is_deterministic(cli):
    a = cli("generate-data", "moons", "-n", "5", "--seed", "3")
    b = cli("generate-data", "moons", "-n", "5", "--seed", "3")
    assert a.code == 0 and a.out == b.out and a.err == ""
    lines = a.out.splitlines()
    assert lines[0] == "x0,x1,y" and len(lines) == 6
    assert cli("generate-data", "moons", "-n", "5", "--seed", "4").out != a.out


def test_generate_data_to_a_file_refuses_to_overwrite(cli, tmp_path):
    res = cli("generate-data", "blobs", "-n", "20", "-c", "3", "-f", "4", "-o", "b.csv")
    assert res.code == 0 and res.out == ""
    text = (tmp_path / "b.csv").read_text()
    assert text.splitlines()[0] == "x0,x1,x2,x3,y"
    res = cli("generate-data", "blobs", "-n", "10", "-o", "b.csv")
    assert res.code == 2 and "--force" in res.err
    assert (tmp_path / "b.csv").read_text() == text
    assert cli("generate-data", "blobs", "-n", "10", "-o", "b.csv", "--force").code == 0


def test_generate_data_unknown_name_and_list(cli):
    res = cli("generate-data", "moon")
    assert res.code == 2 and "did you mean 'moons'?" in res.err
    res = cli("generate-data", "--list")
    assert res.code == 0 and "spirals" in res.out and "regression" in res.out


def test_pipe_into_head_ends_quietly():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(" ".join(NNTRAIN) + " generate-data moons -n 200000 | head -2",
                         shell=True, capture_output=True, text=True, env=env)
    assert res.stdout.splitlines()[0] == "x0,x1,y"
    assert "Traceback" not in res.stderr and "Error" not in res.stderr


def test_committed_schema_file_is_up_to_date(cli):
    """configs/ point editors at nntrain.schema.json; it must match `nntrain schema`."""
    assert json.loads((ROOT / "nntrain.schema.json").read_text()) == json.loads(cli("schema").out)


def test_every_example_config_validates(cli, tmp_path):
    from nntrain.data.shapes import write_shapes

    # shapes.yaml reads the pictures `generate-data shapes` writes first (see the file).
    pictures = write_shapes(tmp_path / "shapes", 30, 16)
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        sets = ["--set", f"data.path={pictures}"] if config.name == "shapes.yaml" else []
        res = cli("validate", config, *sets)
        assert res.code == 0, f"{config.name}: {res.err}"


def test_data_option_reads_stdin(cli, tmp_path, monkeypatch):
    import io

    rows = "x0,x1,y\n" + "".join(f"{i / 10},{(i % 3) / 3},{i % 2}\n" for i in range(40))
    monkeypatch.setattr("sys.stdin", io.StringIO(rows))
    res = cli("train", ROOT / "configs" / "moons.yaml", "--data", "-", "--set",
              "training.epochs=1", "--set", "output.name=piped", *NO_PLOTS, "-q")
    assert res.code == 0, res.err
    manifest = json.loads((tmp_path / "runs" / "piped" / "manifest.json").read_text())
    assert sum(manifest["data"]["rows"].values()) == 40
    # The resolved config says where its data came from, in the words that were typed.
    header = (tmp_path / "runs" / "piped" / "config.yaml").read_text().splitlines()[0]
    assert header.endswith("moons.yaml with --set training.epochs=1 --set output.name=piped "
                           "--set output.plots=false --data -"), header
    res = cli("train", ROOT / "configs" / "tutorial.yaml", "--data", "x.csv")
    assert res.code == 2 and "data.source is csv" in res.err
    # Located at the key that decides it, as every config error is.
    assert res.err.startswith(f"{ROOT / 'configs' / 'tutorial.yaml'}:10:11: data.source: "
                              "--data needs"), res.err
    assert not (tmp_path / "runs" / "tutorial").exists()


@pytest.mark.parametrize("args, message", [
    (("predict", "RUN", "--data", "x.csv", "-f", "jsnl"),
     "--format: expected one of csv, jsonl, got 'jsnl' (did you mean 'jsonl'?)"),
    (("explain", "RUN", "--method", "shap"),
     "--method: expected one of gradients, permutation, got 'shap'"),
    (("export", "RUN", "-f", "tflit"),
     "--format: expected one of savedmodel, tflite, onnx, got 'tflit' (did you mean 'tflite'?)"),
    (("export", "RUN", "-f", "tflite", "--quantize", "int4"),
     "--quantize: expected one of float16, int8, got 'int4' (did you mean 'int8'?)"),
])
def test_a_value_outside_an_options_choices_is_refused_in_one_line(cli, args, message):
    # Refused by the option's Enum before the run is looked for (there is no RUN here).
    res = cli(*args)
    assert res.code == 2 and res.out == ""
    assert res.err.strip() == f"nntrain {args[0]}: {message} (see 'nntrain {args[0]} --help')"
