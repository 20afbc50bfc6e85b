"""`nntrain runs`: the table of past runs, sorting by a metric, JSON for scripts."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import TINY


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Two finished runs (different seeds), one interrupted (kept in its staging directory
    to be resumed) and one killed before its first epoch ended."""
    from nntrain.cli.app import main

    root = tmp_path_factory.mktemp("listing")
    config = root / "tiny.yaml"
    config.write_text(TINY)
    for name, seed in (("first", "1"), ("second", "2")):
        code = main(["train", str(config), "-q", "--set", f"output.dir={root / 'runs'}",
                     "--set", f"output.name={name}", "--set", f"training.seed={seed}"])
        assert code == 0
    staging = root / "runs" / ".killed.partial"
    staging.mkdir()
    shutil.copy(root / "runs" / "first" / "config.yaml", staging)
    stopped = root / "runs" / ".stopped.partial"
    shutil.copytree(root / "runs" / "first", stopped)
    manifest = json.loads((stopped / "manifest.json").read_text())
    manifest.update(status="interrupted", epochs_completed=1, started="2000-01-01T00:00:00+00:00")
    (stopped / "manifest.json").write_text(json.dumps(manifest))
    (stopped / "metrics.json").unlink()
    (root / "runs" / "notes").mkdir()  # not a run: ignored
    return root / "runs"


def metric(run_dir, split, name):
    return json.loads((run_dir / "metrics.json").read_text())[split][name]


def test_table_on_stdout(cli, runs_dir):
    res = cli("runs", runs_dir)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split() == ["run", "started", "status", "epochs", "on", "loss", "metric"]
    assert [line.split()[0] for line in lines[1:]] == ["stopped", "first", "second"]
    assert lines[1].split()[3:5] == ["interrupted", "1/2"]
    first = lines[2].split()
    assert first[3:5] == ["finished", "2"] and first[5] == "test"
    assert float(first[6]) == pytest.approx(metric(runs_dir / "first", "test", "loss"),
                                            abs=1e-4)
    assert first[7] == "accuracy"
    assert ".killed.partial" not in res.out and "notes" not in res.out


def test_sort_by_a_metric_best_first(cli, runs_dir):
    acc = {n: metric(runs_dir / n, "test", "accuracy") for n in ("first", "second")}
    loss = {n: metric(runs_dir / n, "test", "loss") for n in ("first", "second")}
    doc = json.loads(cli("runs", runs_dir, "--sort", "test.accuracy", "--json").out)
    assert [r["name"] for r in doc] == [*sorted(acc, key=acc.get, reverse=True), "stopped"]
    doc = json.loads(cli("runs", runs_dir, "--sort", "test.loss", "--json").out)
    assert [r["name"] for r in doc] == [*sorted(loss, key=loss.get), "stopped"]
    res = cli("runs", runs_dir, "--sort", "test.accuracy")
    assert res.out.splitlines()[0].split()[-1] == "test.accuracy"


def test_unknown_sort_key(cli, runs_dir):
    res = cli("runs", runs_dir, "--sort", "test.acuracy")
    assert res.code == 2 and "did you mean 'test.accuracy'?" in res.err


def test_only_metrics_of_a_split_sort(cli, runs_dir, tmp_path):
    """metrics.json's early-stopping record (and a k-fold run's folds and std) are no metrics
    to sort by: neither offered nor taken, with or without a split."""
    runs = tmp_path / "runs"
    shutil.copytree(runs_dir / "first", runs / "first")
    doc = json.loads((runs / "first" / "metrics.json").read_text())
    doc["early_stopping"] = {"monitor": "val_loss", "stopped_epoch": None, "epochs_run": 2,
                             "patience": 3, "best_epoch": 2, "best": 0.5, "restored_epoch": 2}
    (runs / "first" / "metrics.json").write_text(json.dumps(doc))
    for key in ("early_stopping.best", "patience"):
        res = cli("runs", runs, "--sort", key)
        assert res.code == 2 and f"no run has a metric '{key}'" in res.err, res.err
        choices = res.err.split("choose one of: ")[1].strip().split(", ")
        assert choices[:4] == ["name", "started", "status", "epochs"]
        assert "test.accuracy" in choices[4:]
        assert all(c.split(".")[0] in ("train", "validation", "test") for c in choices[4:])
    assert cli("runs", runs, "--sort", "validation.loss").code == 0


def test_json_and_incomplete_runs(cli, runs_dir):
    res = cli("runs", runs_dir, "--json", "--all")
    assert res.code == 0 and res.err == ""
    doc = json.loads(res.out)
    by_name = {r["name"]: r for r in doc}
    assert set(by_name) == {"first", "second", "stopped", ".killed.partial"}
    assert by_name[".killed.partial"]["status"] == "incomplete"
    assert by_name["stopped"]["path"].endswith(".stopped.partial")
    first = by_name["first"]
    assert first["status"] == "finished" and first["epochs"] == 2 == first["max_epochs"]
    assert first["metrics"]["test"]["accuracy"] == metric(runs_dir / "first", "test", "accuracy")


def test_missing_and_empty_directories(cli, tmp_path):
    res = cli("runs")
    assert res.code == 2 and res.err == "runs: no such runs directory\n"
    (tmp_path / "runs").mkdir()
    res = cli("runs")
    assert res.code == 0 and res.out == "" and "no runs" in res.err
    assert json.loads(cli("runs", "--json").out) == []
