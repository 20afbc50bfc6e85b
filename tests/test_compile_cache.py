"""JAX's persistent compilation cache, as nntrain sets it up on the JAX backend: a second run is
served from it with the same numbers, what a killed write leaves behind is cleaned up
silently, the off switch writes nothing, and a cache that cannot be created never fails a run.
Every run is in a process other than this test's, so the cache settings of this test process
never change; JAX decides whether a process uses its cache once, at the first compile, so the
runs that share a process are told apart by what nntrain writes, not by JAX's decision."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

CACHE_TROUBLE = "persistent compilation cache"  # JAX's warnings about its cache say this


def environment(**env: str) -> dict[str, str]:
    """This environment with ``env``, this tree's nntrain first on the path, and
    JAX_COMPILATION_CACHE_DIR unset (the suite may set it)."""
    environ = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    environ.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", **env)
    return environ


TRAIN = ["train", "--backend", "jax", "--force", "--json", "--set", "output.plots=false"]


def train_jax(tmp_path: Path, config: Path, **env: str) -> tuple[dict, str]:
    """`nntrain train CONFIG --backend jax --json` in a process of its own, with XDG_CACHE_HOME
    and the other ``env`` given; (the run's metrics, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "nntrain", *TRAIN, str(config)],
                          cwd=tmp_path, env=environment(**env), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["metrics"], proc.stderr


# `nntrain train` once for each environment of a list, in one process, with those variables
# set before the run (nntrain reads XDG_CACHE_HOME and NNTRAIN_COMPILE_CACHE per run); after
# each run, "exit CODE" on stderr.
RUNS = """
import json, os, sys
from nntrain.cli.app import main
config, envs = json.loads(sys.argv[1])
for env in envs:
    os.environ.update(env)
    code = main([*%r, config])
    print(f"exit {code}", file=sys.stderr, flush=True)
""" % (TRAIN,)


def train_jax_in_one_process(tmp_path: Path, config: Path,
                             *envs: dict[str, str]) -> list[tuple[dict, str]]:
    """train_jax for each of ``envs``, one after the other in one process; (metrics, stderr)
    of each run."""
    proc = subprocess.run([sys.executable, "-c", RUNS, json.dumps([str(config), envs])],
                          cwd=tmp_path, env=environment(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    parts = re.split(r"^exit (\d+)\n", proc.stderr, flags=re.M)
    errs, codes = parts[0:-1:2], parts[1::2]
    assert codes == ["0"] * len(envs), proc.stderr
    return [(json.loads(out)["metrics"], err)
            for out, err in zip(proc.stdout.splitlines(), errs, strict=True)]


def entries(cache: Path) -> set[str]:
    return {p.name for p in cache.glob("*-cache")} if cache.exists() else set()


# The lines JAX_LOG_COMPILES adds about the cache: which programs it served, missed, wrote.
JAX_LOG = re.compile(r"persistent compilation cache (hit|miss) for|to persistent compilation "
                     r"cache with key")


def test_a_second_run_is_served_from_the_cache_and_a_killed_write_is_cleaned_up(tmp_path, tiny):
    cache = tmp_path / "xdg" / "nntrain" / "jax"
    first, _ = train_jax(tmp_path, tiny, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    compiled = entries(cache)
    assert len(compiled) >= 5  # the train, test and predict steps and their helpers

    # A process killed while JAX wrote an entry leaves it cut short and without its stamp
    # (one that is not a train step's, whose hit is looked for below).
    victim = cache / sorted(name for name in compiled if "train_step" not in name)[0]
    victim.write_bytes(victim.read_bytes()[:100])
    victim.with_name(victim.name.replace("-cache", "-atime")).unlink()

    # JAX_LOG_COMPILES makes JAX say on stderr which programs the cache served.
    second, err = train_jax(tmp_path, tiny, XDG_CACHE_HOME=str(tmp_path / "xdg"),
                            JAX_LOG_COMPILES="1")
    assert second == first
    assert "Persistent compilation cache hit for 'jit_train_step'" in err
    assert entries(cache) == compiled  # no program new to the cache
    assert len(victim.read_bytes()) > 100  # compiled again and written whole
    # Silently: nothing about the cache on stderr but the lines JAX_LOG_COMPILES asks for.
    trouble = [line for line in err.lower().splitlines()
               if CACHE_TROUBLE in line and not JAX_LOG.search(line)]
    assert trouble == []


def test_a_cache_that_cannot_be_created_does_not_fail_the_run_and_off_leaves_it_empty(
        tmp_path, tiny):
    # A file where the cache's parent directory should be: no directory can be made under it
    # (whoever runs the test, root included). That run comes first in the process, while JAX
    # has not decided yet whether to use its cache; the second run, with the off switch, is
    # shown by the directory nntrain would otherwise make.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    (unusable, err), (off, _) = train_jax_in_one_process(
        tmp_path, tiny, {"XDG_CACHE_HOME": str(blocker)},
        {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "NNTRAIN_COMPILE_CACHE": "off"})
    assert unusable["test"]["loss"] > 0
    assert CACHE_TROUBLE not in err.lower()
    assert blocker.read_text() == ""
    assert off["test"]["loss"] > 0
    assert not (tmp_path / "xdg" / "nntrain").exists()
