"""What a person sees while training: plain lines in logs, a live display on terminals,
NO_COLOR, --quiet, --verbose, and --jsonl for programs that follow a run."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import ROOT, TINY
from nntrain.cli import progress


@pytest.fixture(autouse=True)
def no_terminal_overrides(monkeypatch):
    """Rich treats these as 'this is a terminal'; the tests decide that themselves."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


# No test here looks at a picture: the runs draw none (a process of its own would start a
# matplotlib helper process for them).
NO_PLOTS = TINY + "  plots: false\n"


@pytest.fixture
def tiny(write):
    return write("tiny.yaml", NO_PLOTS)


def epoch_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("epoch ")]


def test_log_output_is_one_plain_line_per_epoch(cli, tiny):
    res = cli("train", tiny)
    assert res.code == 0, res.err
    assert res.out == "runs/tiny\n"
    lines = epoch_lines(res.err)
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("loss" in line and "val_accuracy" in line and line.endswith("s)")
               for line in lines)
    assert "\x1b" not in res.err and "\r" not in res.err
    # It starts with the model summary and ends with the final metrics and the run directory.
    assert res.err.index("parameters") < res.err.index("epoch 1/2")
    assert "total" in res.err and "dense" in res.err
    assert res.err.index("final metrics") > res.err.index("epoch 2/2")
    assert res.err.rstrip().endswith("run directory: runs/tiny")


def test_quiet_prints_nothing_on_stderr(cli, tiny):
    res = cli("train", tiny, "--quiet")
    assert res.code == 0 and res.err == "" and res.out == "runs/tiny\n"


def test_verbose_adds_the_details(cli, tiny):
    res = cli("train", tiny, "--verbose", "--set", "training.epochs=1")
    assert res.code == 0, res.err
    assert f"config: {tiny.resolve()} --set training.epochs=1" in res.err
    assert "fingerprint sha256:" in res.err and "features x0, x1" in res.err
    assert "(steps_per_execution 32)" in res.err
    assert "distribution: strategy none, 1 replica(s)" in res.err
    [line] = epoch_lines(res.err)
    assert "learning_rate 0.0100" in line and "rows/s)" in line
    assert "resolved config: runs/tiny/config.yaml" in res.err


def test_contradicting_options_are_usage_errors(cli, tiny):
    res = cli("train", tiny, "--quiet", "--verbose")
    assert res.code == 2 and "--quiet and --verbose" in res.err
    res = cli("train", tiny, "--json", "--jsonl")
    assert res.code == 2 and "choose one" in res.err


def test_jsonl_is_one_line_per_epoch_then_the_end(cli, tiny):
    res = cli("train", tiny, "--jsonl", "--quiet")
    assert res.code == 0 and res.err == ""
    events = [json.loads(line) for line in res.out.splitlines()]
    assert [e["event"] for e in events] == ["epoch", "epoch", "end"]
    first = events[0]
    assert first["epoch"] == 1 and first["epochs"] == 2 and first["seconds"] > 0
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(first)
    end = events[-1]
    assert end["run_dir"] == "runs/tiny" and end["epochs"] == 2
    assert set(end["metrics"]) == {"train", "validation", "test"}


def test_jsonl_lines_arrive_while_training_runs(write, tmp_path):
    """Through a pipe, as another program would read them: each line is flushed."""
    # 20 epochs of a few milliseconds: the run is still going when the first line is read.
    config = write("stream.yaml", NO_PLOTS.replace("epochs: 2", "epochs: 20"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nntrain", "train", str(config), "--jsonl", "-q"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    first = json.loads(proc.stdout.readline())
    still_running = proc.poll() is None  # 19 more epochs, evaluation and saving to go
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert first["event"] == "epoch" and first["epoch"] == 1
    assert still_running
    assert [json.loads(line)["event"] for line in rest.splitlines()] == ["epoch"] * 19 + ["end"]


def test_a_reader_that_leaves_stops_training_resumably_as_sigpipe_would(write, tmp_path):
    """`nntrain train --jsonl | head -1`: the run stops at the next epoch, keeps its
    checkpoint (status interrupted) and exits 141, the status of a process ended by SIGPIPE."""
    config = write("pipe.yaml", NO_PLOTS.replace("epochs: 2", "epochs: 500"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nntrain", "train", str(config), "--jsonl", "-q"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert json.loads(proc.stdout.readline())["epoch"] == 1
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    err = proc.stderr.read()
    assert "interrupted after epoch" in err and "nntrain train --resume runs/tiny" in err, err
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and 1 <= manifest["epochs_completed"] < 500


def test_data_into_head_ends_quietly_like_a_unix_tool(tmp_path):
    gen = subprocess.Popen([sys.executable, "-m", "nntrain", "generate-data", "moons",
                            "-n", "200000"], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert gen.stdout.readline() == b"x0,x1,y\n"
    gen.stdout.close()
    assert gen.wait(timeout=60) == -signal.SIGPIPE  # what `yes | head -1` does to `yes`
    assert gen.stderr.read() == b""


# --- the display on its own --------------------------------------------------------------

def fake_prepared(rows: int = 100, batch_size: int = 10) -> SimpleNamespace:
    training = SimpleNamespace(epochs=2, batch_size=batch_size, steps_per_execution=2)
    ds = SimpleNamespace(x_train=np.zeros((rows, 2)), x_val=np.zeros((10, 2)),
                         x_test=np.zeros((20, 2)), source="generate:moons", n_features=2)
    model = SimpleNamespace(count_params=lambda: 17, optimizer=None)
    return SimpleNamespace(config=SimpleNamespace(training=training), dataset=ds, model=model,
                           steps_per_execution=2,
                           distribution={"strategy": "none", "replicas": 1})


def drive(display: progress.TrainingDisplay) -> None:
    """What nntrain.training.train does with the callbacks during two epochs of ten batches."""
    with display:
        display.begin(fake_prepared(), "SUMMARY")
        for epoch in (1, 2):
            for done in (2, 4, 6, 8, 10):
                if display.on_batch is not None:
                    display.on_batch(done, 10, {"accuracy": 0.75, "loss": 0.5})
            display.epoch(epoch, 2, {"loss": 0.5, "accuracy": 0.75, "val_loss": 0.25,
                                     "val_accuracy": 0.875}, 0.25)
        display.end(["final table", "run directory: runs/x"])


def test_a_terminal_gets_the_live_display():
    buf = io.StringIO()
    display = progress.TrainingDisplay(progress.make_console(buf, force_terminal=True))
    assert display.live and display.on_batch is not None
    drive(display)
    out = buf.getvalue()
    assert "\x1b[" in out and "━" in out  # the bar, drawn with cursor movements
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "epoch 1/2  loss 0.5000" in text and "val_loss 0.2500" in text
    assert "batch 10/10" in text or "batch  0/10" in text
    assert text.rstrip().endswith("run directory: runs/x")


def test_no_color_means_no_escape_codes_even_on_a_terminal(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    buf = io.StringIO()
    display = progress.TrainingDisplay(progress.make_console(buf, force_terminal=True))
    assert not display.live and display.on_batch is None
    drive(display)
    out = buf.getvalue()
    assert "\x1b" not in out and "\r" not in out
    assert len(epoch_lines(out)) == 2


def test_not_a_terminal_gets_no_batch_callback_and_plain_lines():
    buf = io.StringIO()
    display = progress.TrainingDisplay(progress.make_console(buf))
    assert display.on_batch is None  # nothing at all runs per batch
    drive(display)
    out = buf.getvalue()
    assert out.splitlines()[:2] == ["SUMMARY", "data: generate:moons, 100 train / 10 "
                                    "validation / 20 test rows, 2 features; model: 17 "
                                    "parameters"]
    assert epoch_lines(out) == [
        "epoch 1/2  loss 0.5000  accuracy 0.7500  val_loss 0.2500  val_accuracy 0.8750  (0.25s)",
        "epoch 2/2  loss 0.5000  accuracy 0.7500  val_loss 0.2500  val_accuracy 0.8750  (0.25s)"]


def test_quiet_display_prints_nothing():
    buf = io.StringIO()
    display = progress.TrainingDisplay(progress.make_console(buf, force_terminal=True),
                                       progress.QUIET)
    assert display.on_batch is None
    drive(display)
    assert buf.getvalue() == ""


def test_numbers_keep_their_digits():
    assert progress.fmt(0.5) == "0.5000"
    assert progress.fmt(1e-5) == "1e-05"
    assert progress.fmt(123456.0) == "1.235e+05"
    assert progress.fmt(float("nan")) == "nan"


def test_jsonl_events_are_valid_json_when_training_diverges():
    event = progress.epoch_event(3, 10, {"loss": float("nan"), "val_loss": float("inf")}, 0.5)
    assert json.loads(json.dumps(event, allow_nan=False)) == {
        "event": "epoch", "epoch": 3, "epochs": 10, "loss": None, "val_loss": None,
        "seconds": 0.5, "time": event["time"]}
