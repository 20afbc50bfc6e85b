"""`nntrain init`: starter configs that train as is, written safely."""

from __future__ import annotations

import pytest
import yaml

from nntrain.config.starters import TASKS


@pytest.mark.parametrize("task", list(TASKS))
def test_every_starter_config_trains_as_is(cli, tmp_path, task):
    res = cli("init", "--task", task, "-o", f"{task}.yaml")
    assert res.code == 0 and res.out == ""
    assert f"nntrain train {task}.yaml" in res.err
    text = (tmp_path / f"{task}.yaml").read_text()
    assert text.startswith("# nntrain starter config for ") and f"nntrain train {task}.yaml" in text
    res = cli("train", f"{task}.yaml", "--set", "training.epochs=1", "--set",
              f"output.name={task}", "-q")
    assert res.code == 0, res.err
    assert (tmp_path / "runs" / task / "model.keras").is_file()


def test_default_file_and_never_overwriting_without_force(cli, tmp_path):
    assert cli("init").code == 0
    path = tmp_path / "nntrain.yaml"
    first = path.read_text()
    assert yaml.safe_load(first)["training"]["loss"] == "binary_crossentropy"
    res = cli("init", "--task", "regression")
    assert res.code == 2 and "exists already; pass --force" in res.err
    assert path.read_text() == first
    assert cli("init", "--task", "regression", "--force").code == 0
    assert yaml.safe_load(path.read_text())["training"]["loss"] == "mse"
    assert [p.name for p in tmp_path.iterdir()] == ["nntrain.yaml"], "no temporary files left"


def test_stdout_and_bad_task(cli, tmp_path):
    res = cli("init", "--task", "multiclass", "-o", "-")
    assert res.code == 0 and res.err == ""
    assert yaml.safe_load(res.out)["model"]["layers"][-1]["activation"] == "softmax"
    assert list(tmp_path.iterdir()) == []
    res = cli("init", "--task", "clustering")
    assert res.code == 2 and "clustering" in res.err
    res = cli("init", "-o", "no/such/dir.yaml")
    assert res.code == 2 and "no such directory" in res.err
