"""JAX's persistent compilation cache, as nntrain sets it up on the JAX backend: a second run is
served from it with the same numbers, what a killed write leaves behind is cleaned up
silently, the off switch writes nothing, and a cache that cannot be created never fails a run.
Every run is a process of its own, so the cache settings of this test process never change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

CACHE_TROUBLE = "persistent compilation cache"  # JAX's warnings about its cache say this


def train_jax(tmp_path: Path, config: Path, **env: str) -> tuple[dict, str]:
    """`nntrain train CONFIG --backend jax --json` in a process of its own, with XDG_CACHE_HOME
    and the other ``env`` given and JAX_COMPILATION_CACHE_DIR unset (the suite may set it);
    (the run's metrics, stderr)."""
    environ = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    environ.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", **env)
    proc = subprocess.run([sys.executable, "-m", "nntrain", "train", str(config), "--backend",
                           "jax", "--force", "--json", "--set", "output.plots=false"],
                          cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["metrics"], proc.stderr


def entries(cache: Path) -> set[str]:
    return {p.name for p in cache.glob("*-cache")} if cache.exists() else set()


def test_a_second_run_is_served_from_the_cache_and_a_killed_write_is_cleaned_up(tmp_path, tiny):
    cache = tmp_path / "xdg" / "nntrain" / "jax"
    first, _ = train_jax(tmp_path, tiny, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    compiled = entries(cache)
    assert len(compiled) >= 5  # the train, test and predict steps and their helpers

    # JAX_LOG_COMPILES makes JAX say on stderr which programs the cache served.
    second, err = train_jax(tmp_path, tiny, XDG_CACHE_HOME=str(tmp_path / "xdg"),
                            JAX_LOG_COMPILES="1")
    assert second == first
    assert "Persistent compilation cache hit for 'jit_train_step'" in err
    assert entries(cache) == compiled  # nothing compiled anew

    # A process killed while JAX wrote an entry leaves it cut short and without its stamp.
    victim = cache / sorted(compiled)[0]
    victim.write_bytes(victim.read_bytes()[:100])
    victim.with_name(victim.name.replace("-cache", "-atime")).unlink()
    third, err = train_jax(tmp_path, tiny, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert third == first
    assert CACHE_TROUBLE not in err.lower()
    assert len(victim.read_bytes()) > 100  # compiled again and written whole


def test_the_off_switch_leaves_the_cache_empty(tmp_path, tiny):
    metrics, _ = train_jax(tmp_path, tiny, XDG_CACHE_HOME=str(tmp_path / "xdg"),
                           NNTRAIN_COMPILE_CACHE="off")
    assert metrics["test"]["loss"] > 0
    assert not (tmp_path / "xdg" / "nntrain").exists()


def test_a_cache_that_cannot_be_created_does_not_fail_the_run(tmp_path, tiny):
    # A file where the cache's parent directory should be: no directory can be made under it
    # (whoever runs the test, root included).
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    metrics, err = train_jax(tmp_path, tiny, XDG_CACHE_HOME=str(blocker))
    assert metrics["test"]["loss"] > 0
    assert CACHE_TROUBLE not in err.lower()
    assert blocker.read_text() == ""
