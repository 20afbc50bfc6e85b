"""What a new user met when pasting the README's commands: help texts, the runs listing of a
k-fold run, and stderr on the JAX backend. Each test asserts what the user sees."""

from __future__ import annotations

import json

import pytest

from helpers import env, finish

JAX = {"KERAS_BACKEND": "jax"}


@pytest.mark.parametrize("command, shown", [
    # Rich's markdown took "p_<label>" for a tag and printed "p_."
    ("predict", "p_LABEL (p_cat, p_dog, ...)"),
    # The argument's list of datasets left out shapes, which the command's own summary names.
    ("generate-data", "or shapes, a folder of pictures"),
])
def test_help_says_what_the_command_writes(cli, monkeypatch, command, shown):
    monkeypatch.setenv("COLUMNS", "250")
    res = cli(command, "--help")
    assert res.code == 0
    assert shown in res.out


KFOLD = """
data: {source: generate, generator: blobs, samples: 120, split: {validation: 0, folds: 2}}
model:
  layers:
    - {type: dense, units: 3, activation: softmax}
training: {loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 2}
output: {name: kfold, plots: false}
"""

TABLE = """
data:
  source: csv
  path: shop.csv
  target: bought
  columns: {store: categorical}
model:
  layers:
    - {type: dense, units: 1, activation: sigmoid}
training: {loss: binary_crossentropy, epochs: 1}
output: {name: shop, plots: false}
"""

CNN = """
data: {source: images, path: shapes, color_mode: grayscale, split: {test: 0.2}}
model:
  layers:
    - {type: flatten}
    - {type: dense, units: 3, activation: softmax}
training: {loss: sparse_categorical_crossentropy, epochs: 1}
output: {name: shapes, plots: false}
"""

# Several nntrain commands in one fresh process, one after another, each in its own working
# directory; after each, a line on stdout: its exit code and whether TensorFlow is loaded.
COMMANDS = """
import json, os, sys
from nntrain.cli.app import main
for cwd, args in json.loads(sys.argv[1]):
    os.chdir(cwd)
    code = main(args)
    sys.stdout.flush()
    print("\\n" + json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}),
          flush=True)
"""


def in_one_process(cwd, *commands):
    """Run (directory, [args]) commands in one fresh process on JAX: [(exit code, stdout,
    TensorFlow loaded after it)], and the process's whole stderr."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", COMMANDS,
                             json.dumps([[str(d), list(map(str, a))] for d, a in commands])],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(**JAX))
    code, out, err = finish(proc)
    assert code == 0, err
    done, text = [], ""
    for line in out.splitlines(keepends=True):
        if line.startswith('{"code": '):
            status = json.loads(line)
            done.append((status["code"], text[:-1], status["tensorflow"]))
            text = ""
        else:
            text += line
    return done, err


@pytest.fixture(scope="module")
def quiet(tmp_path_factory):
    """A k-fold run trained, then a picture run's predictions made, in one fresh process on
    JAX (the predictions from a run trained here); and a table run's predictions in another
    (both load TensorFlow: the second would find it loaded)."""
    from nntrain.cli.app import main
    from nntrain.data.shapes import write_shapes

    kfold, root = tmp_path_factory.mktemp("kfold"), tmp_path_factory.mktemp("predict")
    (kfold / "kfold.yaml").write_text(KFOLD.lstrip())
    (root / "shop.csv").write_text("price,color,store,bought\n" + "".join(
        f"{i % 50}.5,{('red', 'blue')[i % 2]},{101 + i % 3},{('yes', 'no')[i % 2]}\n"
        for i in range(60)))
    (root / "shop.yaml").write_text(TABLE.lstrip())
    (root / "new.csv").write_text("price,color,store\n12.5,red,101\n80,purple,999\n")
    write_shapes(root / "shapes", 30, 8, 0.05, 0)
    (root / "cnn.yaml").write_text(CNN.lstrip())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["train", "shop.yaml", "-q"]) == 0
        assert main(["train", "cnn.yaml", "-q"]) == 0
    kfold_and_pictures = in_one_process(
        root, (kfold, ["train", "kfold.yaml", "-q"]),
        (root, ["predict", "runs/shapes", "--data", "shapes/square"]))
    table = in_one_process(root, (root, ["predict", "runs/shop", "--data", "new.csv"]))
    return kfold, kfold_and_pictures, table


def test_a_kfold_run_on_jax_is_quiet_and_listed_with_all_its_epochs(cli, quiet, monkeypatch):
    # keras.utils.set_random_seed imported TensorFlow for every fold, and its start-up lines
    # (CUDA probes) landed on stderr under -q.
    kfold, (commands, err), _ = quiet
    code, out, tensorflow = commands[0]
    assert code == 0 and err == ""
    assert out.strip() == "runs/kfold"
    # Not loaded at all (nntrain.backend.tensorflow_unneeded): that is also what lets the
    # pictures' predict after it, in the same process, show TensorFlow's import is quiet.
    assert not tensorflow
    # Two folds of 2 epochs: 4 epochs trained, of 4 planned (it said "4/2").
    monkeypatch.chdir(kfold)
    listed = json.loads(cli("runs", "--json").out)
    assert [(r["name"], r["epochs"], r["max_epochs"]) for r in listed] == [("kfold", 4, 4)]
    table = cli("runs").out.splitlines()[1].split()
    assert table[:5] == ["kfold", *table[1:3], "finished", "4"]


def test_predict_on_jax_keeps_stderr_clean_for_tables_and_pictures(quiet):
    # Keras builds StringLookup on TensorFlow, and tf.data reads pictures, whatever the backend:
    # TensorFlow was imported unquietly there, and its CUDA probes reached stderr.
    _, kfold_and_pictures, table = quiet
    [(code, out, tensorflow)], err = table
    assert (code, err) == (0, "") and tensorflow
    assert out.splitlines()[0] == "bought,p_no,p_yes" and len(out.splitlines()) == 3

    (_, (code, out, tensorflow)), err = kfold_and_pictures
    assert (code, err) == (0, "") and tensorflow  # loaded by this predict: the k-fold run did not
    assert out.splitlines()[0] == "path,label,p_circle,p_square,p_triangle"
    assert len(out.splitlines()) == 11  # 10 squares


@pytest.mark.parametrize("data, where, message", [
    # Said "pictures: no such folder", without the config's line or the full path, unlike a
    # missing CSV file.
    ("{source: images, path: pictures}", "c.yaml:1:30: data.path",
     "no such folder: {tmp}/pictures"),
    # Said "expected at least 2 item(s), got none" for a list of one.
    ("{source: images, path: pictures, image_size: [32]}", "c.yaml:1:52: data.image_size",
     "expected at least 2 item(s), got 1"),
])
def test_picture_config_mistakes_name_the_line(cli, write, tmp_path, data, where, message):
    write("c.yaml", f"data: {data}\n"
          "model: {layers: [{type: flatten}, {type: dense, units: 2, activation: softmax}]}\n"
          "training: {loss: sparse_categorical_crossentropy}\n")
    res = cli("train", "c.yaml")
    assert res.code == 2 and res.out == ""
    assert res.err == f"{where}: {message.format(tmp=tmp_path.resolve())}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_a_missing_sweep_is_named_as_a_sweep(cli, tmp_path):
    # Said "no such config file", though the argument is a sweep file or a sweep directory.
    res = cli("sweep", "sweeps/moons")
    assert res.code == 2 and res.out == ""
    assert res.err == "sweeps/moons: no such sweep file or sweep directory\n"
