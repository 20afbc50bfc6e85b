"""Pictures and TensorBoard logs in the run directory."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from nntrain import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a valid PNG file; fails the test for anything else."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert len(data) > 10_000, f"{path.name} is only {len(data)} bytes"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def pngs(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob("*.png"))


def test_classification_on_two_inputs_draws_curves_and_the_decision_boundary(cli, tiny,
                                                                            tmp_path):
    res = cli("train", tiny, "-q")
    assert res.code == 0, res.err
    run = tmp_path / "runs" / "tiny"
    assert pngs(run) == ["curves.png", "decision_boundary.png"]
    width, height = png_size(run / "curves.png")
    assert width >= 600 and height >= 250
    width, height = png_size(run / "decision_boundary.png")
    assert width >= 500 and height >= 400


def test_regression_draws_predicted_against_actual(cli, write, tmp_path):
    config = write("reg.yaml", """
        data: {source: generate, generator: sine, samples: 200, split: {test: 0.2}}
        model: {layers: [{type: dense, units: 8, activation: tanh}, {type: dense, units: 1}]}
        training: {loss: mse, metrics: [mae], epochs: 2}
        output: {name: reg}
    """)
    assert cli("train", config, "-q").code == 0
    run = tmp_path / "runs" / "reg"
    assert pngs(run) == ["curves.png", "predicted_vs_actual.png"]
    png_size(run / "predicted_vs_actual.png")


def test_more_than_two_inputs_has_no_decision_boundary(cli, write, tmp_path):
    config = write("blobs.yaml", """
        data: {source: generate, generator: blobs, samples: 150, classes: 3, features: 4}
        model: {layers: [{type: dense, units: 3, activation: softmax}]}
        training: {loss: categorical_crossentropy, epochs: 1}
        output: {name: blobs}
    """)
    assert cli("train", config, "-q").code == 0
    assert pngs(tmp_path / "runs" / "blobs") == ["curves.png"]


def test_plots_can_be_switched_off(cli, tiny, tmp_path):
    assert cli("train", tiny, "-q", "--set", "output.plots=false").code == 0
    assert pngs(tmp_path / "runs" / "tiny") == []


def test_curves_of_a_single_epoch_and_many_metrics(tmp_path):
    history = {"epoch": [1], "loss": [0.7], "accuracy": [0.5], "auc": [0.6],
               "precision": [0.4], "val_loss": [0.8], "val_accuracy": [0.45]}
    png_size(plots.plot_curves(history, tmp_path / "c.png"))


def test_confusion_matrix_for_eval(tmp_path):
    path = plots.plot_confusion_matrix([[50, 3, 0], [4, 40, 6], [0, 2, 45]],
                                       ["cat", "dog", "bird"], tmp_path / "cm.png")
    png_size(path)
    with pytest.raises(ValueError, match="square with one label per row"):
        plots.plot_confusion_matrix([[1, 2]], ["a"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


# `nntrain train` in a fresh process, which first checks what Keras's start-up loaded and, at the
# end, that matplotlib still imports: one process for both, as each costs seconds of imports.
FRESH_TRAIN = """
import sys
from nntrain.tf import import_keras
import_keras()
assert 'matplotlib' not in sys.modules, 'matplotlib imported by Keras start-up'
from nntrain.cli.app import main
code = main(sys.argv[1:])
assert 'matplotlib' not in sys.modules, 'the pictures were drawn in this process'
import matplotlib.figure
sys.exit(code)
"""


def test_a_fresh_process_starts_keras_without_matplotlib_and_draws_in_a_helper(tiny,
                                                                             tmp_path):
    """Keras imports matplotlib.pyplot when it can (half a second); nntrain hides it. A fresh
    `nntrain train` process (no matplotlib loaded) draws in its helper process, and gets the
    same pictures."""
    import os

    from conftest import ROOT

    res = subprocess.run([sys.executable, "-c", FRESH_TRAIN, "train", str(tiny), "-q"],
                         cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    run = tmp_path / "runs" / "tiny"
    assert pngs(run) == ["curves.png", "decision_boundary.png"]
    width, height = png_size(run / "decision_boundary.png")
    assert width >= 500 and height >= 400


@pytest.mark.parametrize("command", [
    ["/nonexistent/python"],  # cannot start
    [sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(3)"],  # fails
    [sys.executable, "-c", "import sys; sys.stdin.read()"],  # exits 0 without drawing
])
def test_pictures_are_drawn_here_when_the_helper_cannot(tmp_path, command):
    history = {"loss": [0.9, 0.5], "val_loss": [1.0, 0.6]}
    with plots.Painter.start(True, helper=True, command=command) as painter:
        painter.submit([("curves", (history, tmp_path / "c.png"), {})])
        assert painter.finish() == [tmp_path / "c.png"]
    png_size(tmp_path / "c.png")


def test_tensorboard_logs_epoch_scalars_for_training_and_validation(cli, tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert cli("train", tiny, "-q", "--set", "training.tensorboard=true").code == 0
    logs = tmp_path / "runs" / "tiny" / "tensorboard"
    steps = {}
    for split in ("train", "validation"):
        events = EventAccumulator(str(logs / split))
        events.Reload()
        steps[split] = {tag: [e.step for e in events.Tensors(tag)]
                        for tag in events.Tags()["tensors"]}
    assert steps["train"] == {"epoch_loss": [0, 1], "epoch_accuracy": [0, 1],
                              "epoch_learning_rate": [0, 1]}
    assert steps["validation"] == {"epoch_loss": [0, 1], "epoch_accuracy": [0, 1]}


def test_tensorboard_is_off_by_default(cli, tiny, tmp_path):
    assert cli("train", tiny, "-q").code == 0
    assert not (tmp_path / "runs" / "tiny" / "tensorboard").exists()
