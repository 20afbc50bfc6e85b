"""The package's shape: the using side loads no training code, no module imports itself in a
circle, and only the CLI boundary catches every exception."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nntrain import registry
from nntrain.errors import ConfigError, DataError
from nntrain.targets import Targets

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nntrain"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every nntrain module -> the nntrain modules it imports, at the top or inside functions."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from nntrain import registry` names a module
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_predict_and_eval_load_no_training_module():
    code = ("import sys\nimport nntrain.use.predict, nntrain.use.evaluate, nntrain.use.export\n"
            "import nntrain.use.explain\n"
            "print([m for m in sys.modules if m.startswith('nntrain.training')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []


def test_no_module_of_use_imports_training():
    graph = _imports()
    for name, deps in graph.items():
        if name.startswith("nntrain.use"):
            assert not [d for d in deps if d.startswith("nntrain.training")], name


def test_no_import_circle():
    graph = _imports()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):]
                                                                + [name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_only_the_cli_boundary_catches_every_exception():
    found = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
             for line in p.read_text().splitlines() if "except Exception" in line]
    assert found == ["nntrain/cli/app.py"]


def test_every_task_entry_names_a_registered_loss():
    assert set(registry.LOSS_TASKS) <= set(registry.LOSSES.values())
    assert registry.loss_task("kl_divergence") == "onehot"
    assert registry.loss_task("huber") == "regression"


def test_unknown_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown loss 'mse2' \(did you mean 'mse'\?\)"):
        registry.resolve("loss", "mse2", registry.LOSSES)


def test_targets_encode_and_decode_numeric_labels(tmp_path):
    (tmp_path / "labels.json").write_text("[-1, 1]")
    targets = Targets.read(tmp_path, "hinge", from_logits=False, n_outputs=1)
    assert (targets.task, targets.classes, targets.probabilistic) == ("binary", ["-1", "1"],
                                                                      False)
    assert targets.encode(np.array([1.0, -1.0, 1.0])).tolist() == [1.0, 0.0, 1.0]
    predicted, scores = targets.decode(np.array([[0.7], [-0.2]], dtype=np.float32))
    assert predicted.tolist() == [1, 0]
    assert scores[0].tolist() == pytest.approx([-0.7, 0.7])
    with pytest.raises(DataError, match=r"unknown label 3 \(1 row\); the model knows -1, 1"):
        targets.encode(np.array([3.0]), name="new.csv")
