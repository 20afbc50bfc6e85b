"""Pictures: `source: images` class folders, the shapes generator, a CNN that learns them, and
predict, eval and export on pictures. Tiny: 16-pixel pictures, a few epochs."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nntrain.cli.app import main

# 150 pictures: 50 per class, of which 10 test pictures (split.test 0.2, stratified).
PICTURES = 150
SIZE = 16
CNN = """
data:
  source: images
  path: shapes
  color_mode: grayscale
  split: {test: 0.2}
model:
  layers:
    - {type: rescaling, scale: 0.00392156862745098}
    - {type: random_flip, mode: horizontal}
    - {type: conv2d, filters: 8, kernel_size: 3, activation: relu, padding: same}
    - {type: max_pooling2d}
    - {type: conv2d, filters: 16, kernel_size: 3, activation: relu, padding: same}
    - {type: global_max_pooling2d}
    - {type: dense, units: 3, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
  optimizer: {name: adam, learning_rate: 0.01}
  metrics: [accuracy]
  epochs: 12
  batch_size: 16
output: {name: shapes}
"""


def shapes(folder: Path, n: int = PICTURES, size: int = SIZE, seed: int = 0) -> Path:
    from nntrain.data.shapes import write_shapes

    return write_shapes(folder, n, size, 0.05, seed)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One trained run on a shapes folder, shared by the tests that use a trained model."""
    root = tmp_path_factory.mktemp("pictures")
    shapes(root / "shapes")
    (root / "cnn.yaml").write_text(textwrap.dedent(CNN))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["train", "cnn.yaml", "-q"]) == 0
    return root / "runs" / "shapes"


def write_config(tmp_path: Path, **data: object) -> Path:
    """The CNN config with data keys replaced."""
    import yaml

    config = yaml.safe_load(CNN)
    config["data"].update(data)
    config["training"]["epochs"] = 1
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# --- the shapes generator ----------------------------------------------------------------

def test_generate_shapes_writes_a_folder_per_class(cli, tmp_path):
    from PIL import Image

    res = cli("generate-data", "shapes", "-n", "30", "--image-size", "20", "-o", "pics")
    assert res.code == 0, res.err
    assert res.out == ""
    assert "wrote 30 pictures" in res.err
    folders = sorted(p.name for p in (tmp_path / "pics").iterdir())
    assert folders == ["circle", "square", "triangle"]
    for name in folders:
        files = list((tmp_path / "pics" / name).glob("*.png"))
        assert len(files) == 10
        assert Image.open(files[0]).size == (20, 20)
    # The same seed gives the same pixels; an existing folder needs --force.
    again = cli("generate-data", "shapes", "-n", "30", "--image-size", "20", "-o", "pics")
    assert again.code == 2 and "exists already" in again.err
    assert cli("generate-data", "shapes", "-n", "30", "--image-size", "20", "-o", "pics",
               "--force").code == 0


# --- training ----------------------------------------------------------------------------

def test_cnn_learns_the_shapes(run):
    metrics = json.loads((run / "metrics.json").read_text())
    # Counted in pictures, not compared as a float: 21 of 30 is 0.69999... in float32. A model
    # that guesses (1 in 3) gets 19 or more of the 30 test pictures right with probability
    # 0.07%; this tiny CNN gets 21 (JAX) to ~27 (TensorFlow) in 12 epochs on 120 pictures.
    right = round(metrics["test"]["accuracy"] * 30)
    assert right >= 19, metrics
    assert json.loads((run / "labels.json").read_text()) == ["circle", "square", "triangle"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data"]["rows"] == {"train": 120, "validation": 0, "test": 30}
    assert manifest["data"]["fingerprint"].startswith("sha256:")
    assert (run / "test_pictures.png").stat().st_size > 1000


def test_the_split_is_stratified_and_seeded(tmp_path):
    from nntrain.config import load_config
    from nntrain.data.dataset import load_dataset

    shapes(tmp_path / "shapes", n=60)
    config = load_config(write_config(tmp_path)).config
    a = load_dataset(config.data, 7, tmp_path, stratify_default=True)
    b = load_dataset(config.data, 7, tmp_path, stratify_default=True)
    assert a.x_test.files == b.x_test.files
    assert np.bincount(a.x_test.labels).tolist() == [4, 4, 4]  # 20 per class, 0.2 of each
    assert a.labels == ["circle", "square", "triangle"]
    assert a.x_train.shape == (48, SIZE, SIZE, 1)


def test_the_saved_model_classifies_raw_pixels_in_plain_keras(run, cli):
    import keras
    from PIL import Image

    files = sorted((run.parent.parent / "shapes").glob("*/*.png"))[::7]
    model = keras.models.load_model(run / "model.keras")
    raw = np.stack([np.asarray(Image.open(f).convert("L"), np.float32)[..., None]
                    for f in files])  # 0-255: the rescaling is inside the model
    expected = model.predict(raw, verbose=0)
    assert "RandomFlip" in [type(layer).__name__ for layer in model.layers]
    # The augmentation is off outside training: the same pictures give the same outputs.
    np.testing.assert_allclose(model.predict(raw, verbose=0), expected)
    res = cli("predict", run, "--data", run.parent.parent / "shapes")
    assert res.code == 0, res.err
    by_path = {Path(r["path"]).name + Path(r["path"]).parent.name: r for r in rows_of(res.out)}
    for f, p in zip(files, expected):
        row = by_path[f.name + f.parent.name]
        # Pillow's grayscale and TensorFlow's differ by rounding: compare loosely.
        np.testing.assert_allclose([float(row[f"p_{c}"]) for c in ("circle", "square",
                                                                    "triangle")], p, atol=0.05)


# --- predict, eval, export ---------------------------------------------------------------

def test_predict_on_a_folder_writes_one_row_per_picture(run, cli, tmp_path):
    folder = shapes(tmp_path / "new", n=12, seed=5)
    (folder / "circle" / "notes.txt").write_text("not a picture")
    res = cli("predict", run, "--data", folder)
    assert res.code == 0, res.err
    rows = rows_of(res.out)
    assert len(rows) == 12
    assert list(rows[0]) == ["path", "label", "p_circle", "p_square", "p_triangle"]
    assert rows[0]["path"] == str(folder / "circle" / "0000.png")
    assert all(r["label"] in ("circle", "square", "triangle") for r in rows)
    assert all(abs(sum(float(r[k]) for k in list(r)[2:]) - 1) < 1e-4 for r in rows)
    assert "skipped 1 file that is not a picture" in res.err and "notes.txt" in res.err

    one = cli("predict", run, "--data", folder / "square" / "0001.png", "--format", "jsonl")
    assert one.code == 0, one.err
    (record,) = [json.loads(line) for line in one.out.splitlines()]
    assert record["path"] == str(folder / "square" / "0001.png")
    same = next(r for r in rows if r["path"] == record["path"])
    assert record["label"] == same["label"]
    assert record["p_square"] == pytest.approx(float(same["p_square"]), rel=1e-6)


def test_eval_on_a_folder_of_class_folders(run, cli, tmp_path):
    folder = shapes(tmp_path / "more", n=30, seed=9)
    res = cli("eval", run, "--data", folder, "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["rows"] == 30
    assert doc["classes"] == ["circle", "square", "triangle"]
    assert sum(map(sum, doc["confusion_matrix"])) == 30
    # The run's own test pictures, recreated from the folder and the seed.
    own = cli("eval", run, "--json", "-q")
    assert own.code == 0, own.err
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert json.loads(own.out)["accuracy"] == pytest.approx(metrics["accuracy"])


def test_eval_names_a_class_folder_the_model_does_not_know(run, cli, tmp_path):
    folder = shapes(tmp_path / "more", n=6)
    (folder / "circle").rename(folder / "oval")
    res = cli("eval", run, "--data", folder)
    assert res.code == 2
    assert res.err.count("\n") == 1
    assert "oval: 'oval' is not a class of the model; it knows circle, square, triangle" in res.err


def test_tflite_export_passes_its_check(run, cli):
    res = cli("export", run, "--format", "tflite")
    assert res.code == 0, res.err
    assert Path(res.out.strip()) == run / "export" / "model.tflite"
    assert (run / "export" / "model.tflite").stat().st_size > 0
    assert "checked on 150 rows: max abs difference from Keras" in res.err


def test_export_checks_on_a_folder_of_pictures(run, cli, tmp_path):
    folder = shapes(tmp_path / "other", n=9, seed=3)
    res = cli("export", run, "--format", "tflite", "--data", folder, "-o", tmp_path / "m.tflite")
    assert res.code == 0, res.err
    assert (tmp_path / "m.tflite").stat().st_size > 0
    assert "checked on 9 rows" in res.err


# --- bad input: one line naming the file, exit 2, nothing written ------------------------

def test_a_truncated_picture_is_named_and_nothing_is_written(cli, tmp_path):
    folder = shapes(tmp_path / "shapes", n=12)
    bad = folder / "square" / "0004.png"
    bad.write_bytes(bad.read_bytes()[:60])
    write_config(tmp_path)
    res = cli("train", "c.yaml")
    assert res.code == 2
    assert res.err.count("\n") == 1
    assert res.err.startswith(f"shapes/square/0004.png: cannot decode the picture:")
    assert not (tmp_path / "runs").exists()


def test_a_file_that_only_looks_like_a_picture_is_an_error(cli, tmp_path):
    shapes(tmp_path / "shapes", n=12)
    (tmp_path / "shapes" / "circle" / "fake.jpg").write_text("hello")
    write_config(tmp_path)
    res = cli("validate", "c.yaml")
    assert res.code == 2
    assert res.err == ("shapes/circle/fake.jpg: not a picture: the contents are not PNG, JPEG, "
                       "BMP or GIF\n")


def test_a_folder_without_class_folders(cli, tmp_path):
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "a.png").write_bytes(b"")
    write_config(tmp_path)
    res = cli("validate", "c.yaml")
    assert res.code == 2
    assert res.err.startswith("shapes: has no class sub-folders (it holds 1 pictures directly)")


def test_a_class_without_pictures(cli, tmp_path):
    shapes(tmp_path / "shapes", n=12)
    (tmp_path / "shapes" / "hexagon").mkdir()
    (tmp_path / "shapes" / "hexagon" / "todo.txt").write_text("draw some")
    write_config(tmp_path)
    res = cli("validate", "c.yaml")
    assert res.code == 2
    assert res.err.startswith("shapes/hexagon: the class folder has no pictures")


def test_mixed_sizes_need_image_size(cli, tmp_path):
    shapes(tmp_path / "shapes", n=12, size=SIZE)
    shapes(tmp_path / "big", n=3, size=24)
    (tmp_path / "big" / "square" / "0001.png").rename(tmp_path / "shapes" / "square" / "big.png")
    write_config(tmp_path)
    res = cli("validate", "c.yaml")
    assert res.code == 2
    assert res.err == ("shapes/square/big.png: is 24x24 (height x width) but "
                       "shapes/circle/0000.png is 16x16; every picture must have the same size, "
                       "or set data.image_size: [HEIGHT, WIDTH] to resize them all\n")

    from nntrain.config import load_config
    from nntrain.data.dataset import load_dataset

    config = load_config(write_config(tmp_path, image_size=[12, 12])).config
    ds = load_dataset(config.data, 0, tmp_path, stratify_default=True)
    assert ds.x_train.shape[1:] == (12, 12, 1)
    assert "resized 13 of 13 pictures to 12x12 (data.image_size)" in ds.notes
    x, _ = next(ds.inputs("train", 4)["x"].as_numpy_iterator())
    assert x.shape == (4, 12, 12, 1) and 0 <= x.min() and x.max() <= 255


def test_pictures_need_a_classification_loss(cli, tmp_path):
    shapes(tmp_path / "shapes", n=12)
    config = write_config(tmp_path)
    res = cli("validate", config, "--set", "training.loss=mse")
    assert res.code == 2
    assert "training.loss: pictures are labelled by their class folder" in res.err


def test_a_finished_run_on_pictures_trains_longer_with_resume(run, cli):
    # Last in this file: it adds an epoch to the shared run.
    import keras

    # As in a fresh `nntrain train --resume` process: the checkpoint matches variables by
    # path, and random_flip's seed generator is named by a per-process counter.
    keras.backend.clear_session()
    res = cli("train", "--resume", run, "--set", "training.epochs=13", "-q")
    assert res.code == 0, res.err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["epochs_completed"] == 13
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 13


def test_a_run_on_pictures_stopped_mid_epoch_resumes(tmp_path, monkeypatch):
    import signal

    import keras

    from nntrain.config import load_config
    from nntrain.errors import Interrupted
    from nntrain.training.loop import StopRequest
    from nntrain.training.train import train

    monkeypatch.chdir(tmp_path)
    keras.backend.clear_session()  # both processes fresh, as `train` and `train --resume` are
    # 96 training and 24 test pictures: whole batches of 8, one compiled shape per step.
    shapes(tmp_path / "shapes", n=120)
    loaded = load_config(write_config(tmp_path), ["training.epochs=2", "training.batch_size=8",
                                                  "training.steps_per_execution=1",
                                                  "output.plots=false"])
    stop = StopRequest()

    def on_batch(batch, per_epoch, logs):
        if batch == 2:  # of the first epoch: the stop ends it
            stop.request(signal.SIGINT)

    with pytest.raises(Interrupted, match=r"interrupted after epoch 0 \(step [1-4]\)"):
        train(loaded, stop=stop, on_batch=on_batch)
    run = tmp_path / "runs" / "shapes"
    keras.backend.clear_session()  # as in the fresh process `nntrain train --resume` is
    _, result, _ = train(load_config(run / "config.yaml"), resume=run)
    assert result.epochs_run == 2
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
