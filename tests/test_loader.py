"""YAML loading: positions, YAML's surprises, and hostile files refused fast."""

from __future__ import annotations

import pytest

from nntrain.config.loader import MAX_FILE_BYTES, load_file, parse
from nntrain.errors import ConfigError

from helpers import deadline


def only_problem(exc: pytest.ExceptionInfo) -> tuple[int | None, int | None, str]:
    (p,) = exc.value.problems
    return p.line, p.column, p.message


def test_positions_of_keys_and_values():
    src = parse("training:\n  epochs: 5\n  lr: [1, 2]\n", "run.yaml")
    assert src.values[("training", "epochs")].line == 2
    assert src.values[("training", "epochs")].column == 11
    assert src.keys[("training", "lr")].line == 3
    assert src.values[("training", "lr", 1)].column == 11


@pytest.mark.parametrize("text, value", [("1e-3", 0.001), ("2E5", 200000.0), ("1.5e-2", 0.015),
                                         ("-3e2", -300.0), ("10", 10), ("'1e-3'", "1e-3")])
def test_scientific_notation_is_a_float(text, value):
    got = parse(f"x: {text}\n", "f.yaml").data["x"]
    assert got == value and type(got) is type(value)


def test_duplicate_keys_name_both_lines():
    with pytest.raises(ConfigError, match=r"duplicate key 'epochs' \(first defined on line 2\)") as e:
        parse("training:\n  epochs: 1\n  batch_size: 2\n  epochs: 3\n", "f.yaml")
    assert only_problem(e)[:2] == (4, 3)


def test_syntax_error_has_line_and_column():
    with pytest.raises(ConfigError, match="YAML syntax error") as e:
        parse("a: [1, 2\nb: 3\n", "f.yaml")
    line, col, _ = only_problem(e)
    assert line == 2 and col is not None


@pytest.mark.parametrize("text", ["x: !!python/object/apply:os.system ['echo hi']\n",
                                  "x: !!python/name:os.system\n", "x: !custom 3\n",
                                  "x: !!binary aGVsbG8=\n"])
def test_custom_tags_are_refused(text):
    with pytest.raises(ConfigError, match="is not allowed: configs hold plain values only"):
        parse(text, "f.yaml")


def test_alias_bomb_is_refused_quickly():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    # 10 s: a bomb expanded would take minutes and gigabytes; a hang fails by the deadline.
    with deadline(10, "parsing the alias bomb"), \
            pytest.raises(ConfigError, match="expands to more than"):
        parse("\n".join(lines) + "\n", "bomb.yaml")


@pytest.mark.parametrize("depth", [100, 5000])
def test_absurd_nesting_is_refused(depth):
    with pytest.raises(ConfigError, match="nesting"):
        parse("x: " + "[" * depth + "]" * depth + "\n", "deep.yaml")


def test_huge_file_is_refused_without_reading(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ConfigError, match="limited to"):
        load_file(path)


@pytest.mark.parametrize("text, message", [("", "the file is empty"),
                                           ("# only a comment\n", "the file is empty")])
def test_empty_file(tmp_path, text, message):
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_file(path)


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_file(tmp_path / "nope.yaml")
    path = tmp_path / "b.yaml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_file(path)


def test_bom_and_crlf_are_fine(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_bytes("\ufefftraining:\r\n  epochs: 3\r\n".encode("utf-8"))
    assert load_file(path).data == {"training": {"epochs": 3}}


def test_merge_keys_work():
    src = parse("base: &b {units: 4}\nlayer:\n  <<: *b\n  type: dense\n", "f.yaml")
    assert src.data["layer"] == {"units": 4, "type": "dense"}
