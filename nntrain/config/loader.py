"""Read a YAML config into plain data plus a map from key paths to file positions.

PyYAML's safe loader is the base; on top of it this module makes YAML behave the way a config
author expects and refuses hostile input quickly:

- ``1e-3`` is a float (plain PyYAML reads it as a string);
- duplicate keys are errors naming both lines;
- only the plain YAML types are allowed: no ``!!python/...`` or other custom tags;
- size, nesting depth and alias expansion are bounded, so a billion-laughs file is refused before
  it is expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nntrain.errors import ConfigError, KeyPath
from nntrain.filecheck import not_regular

MAX_FILE_BYTES = 1 << 20  # a config is a page of YAML; a megabyte is already absurd
MAX_DEPTH = 64
# Values in the document, aliases expanded. Real configs hold a few hundred; PyYAML composes only
# tens of thousands a second, so this also bounds the time a file under the size limit can take.
MAX_NODES = 10_000

_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")
}


class _Loader(yaml.SafeLoader):
    """SafeLoader whose floats follow YAML 1.2 (1e-3 and 1E5 are numbers), and which stops
    composing at MAX_DEPTH or MAX_NODES, with the position, rather than at Python's recursion
    limit or after seconds of parsing."""

    def __init__(self, text: str, name: str):
        super().__init__(text)
        self.name = name
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        self.nodes += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _error(self.name, f"nesting deeper than {MAX_DEPTH} levels; a config "
                             "never needs this", self.peek_event().start_mark)
            if self.nodes > MAX_NODES:
                raise _error(self.name, f"more than {MAX_NODES} values; a config never needs "
                             "this many", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Source:
    """Where a config came from: file name, the data, and positions of every key and value."""

    name: str
    data: Any
    values: dict[KeyPath, Position]
    keys: dict[KeyPath, Position]
    texts: dict[KeyPath, str]  # the raw text of scalars, to explain YAML's surprises

    def position(self, path: KeyPath, *, key: bool = False) -> Position | None:
        """The closest known position for a key path, walking up to the parent if needed.

        With key, a key's own position rather than its value's; for a missing key, that of
        the closest parent key (the section that lacks it).
        """
        path = tuple(path)
        while True:
            if key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]


def _mark(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _error(name: str, message: str, mark: Any | None = None,
           path: KeyPath = ()) -> ConfigError:
    if mark is None:
        return ConfigError.in_file(name, message, path=path)
    return ConfigError.in_file(name, message, mark.line + 1, column=mark.column + 1, path=path)


def _reader_error(name: str, text: str, exc: yaml.reader.ReaderError) -> ConfigError:
    """PyYAML refuses control characters before parsing; say where, as a line and column."""
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - text.rfind("\n", 0, exc.position)
    message = (f"character U+{exc.character:04X} is not allowed in YAML; is this a config "
               "file?")
    return ConfigError.in_file(name, message, line, column=column)


def _check_size(node: yaml.Node, name: str) -> None:
    """Refuse deep nesting and alias bombs by counting nodes with aliases expanded."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _error(name, f"nesting deeper than {MAX_DEPTH} levels; a config never needs "
                         "this", n.start_mark)
        if id(n) in sizes:
            return sizes[id(n)]
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(c, depth + 1) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
        if total > MAX_NODES:
            raise _error(name, f"the document expands to more than {MAX_NODES} values "
                         "(aliases included); refusing it", n.start_mark)
        sizes[id(n)] = total
        return total

    size(node, 0)


def parse(text: str, name: str) -> Source:
    """Parse YAML text; every error is a ConfigError with the file position."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise _error(name, f"file is larger than {MAX_FILE_BYTES // 1024} KiB; "
                     "is this really a config?")
    try:
        loader = _Loader(text, name)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(name, text, exc) from None
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise _error(name, "nesting too deep; a config never needs this") from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or "invalid YAML"
            if "'\\t'" in problem:  # PyYAML's words for a tab are "found character '\t' ..."
                problem = "found a tab character; YAML indentation must use spaces"
            context = exc.context_mark
            if exc.context and context and mark and context.line != mark.line:
                # The cause is often where the construct began: an unclosed bracket or quote.
                problem += f" ({exc.context} started on line {context.line + 1})"
            raise _error(name, f"YAML syntax error: {problem}", mark) from None
        except yaml.YAMLError as exc:
            raise _error(name, f"YAML syntax error: {exc}") from None
        if root is None:
            raise _error(name, "the file is empty; a config is a mapping with at least "
                         "'data', 'model' and 'training'")
        _check_size(root, name)
        source = Source(name, None, {}, {}, {})
        source.data = _build(loader, root, (), source)
        return source
    finally:
        loader.dispose()


def _build(loader: _Loader, node: yaml.Node, path: KeyPath, source: Source) -> Any:
    if node.tag not in _PLAIN_TAGS:
        raise _error(source.name, f"tag {node.tag!r} is not allowed: configs hold plain "
                     "values only", node.start_mark, path)
    source.values[path] = _mark(node)
    if isinstance(node, yaml.ScalarNode):
        source.texts[path] = node.value
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise _error(source.name, f"invalid value: {exc}", node.start_mark, path) from None
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, child, path + (i,), source) for i, child in enumerate(node.value)]
    try:
        loader.flatten_mapping(node)  # handles "<<: *defaults" merge keys
    except yaml.MarkedYAMLError as exc:  # "<<: 5": a merge of something not a mapping
        raise _error(source.name, f"invalid merge key: {exc.problem}",
                     exc.problem_mark or node.start_mark, path) from None
    out: dict[Any, Any] = {}
    seen: dict[Any, yaml.Node] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise _error(source.name, "mapping keys must be plain names", key_node.start_mark,
                         path)
        if key_node.tag not in _PLAIN_TAGS:
            raise _error(source.name, f"tag {key_node.tag!r} is not allowed: configs hold plain "
                         "values only", key_node.start_mark, path)
        key = loader.construct_object(key_node)
        if not isinstance(key, str):
            key = key_node.value  # a key like "yes" or "1" is still the name the author wrote
        if key in seen:
            first = seen[key].start_mark.line + 1
            raise _error(source.name, f"duplicate key '{key}' (first defined on line {first})",
                         key_node.start_mark, path + (key,))
        seen[key] = key_node
        source.keys[path + (key,)] = _mark(key_node)
        out[key] = _build(loader, value_node, path + (key,), source)
    return out


def load_file(path: str | Path) -> Source:
    """Read and parse a config file; a missing or unreadable file is a ConfigError."""
    p = Path(path)
    name = str(path)
    try:
        if p.is_dir():
            raise _error(name, "is a directory, not a config file")
        if (why := not_regular(p, "a config file")) is not None:
            raise _error(name, why)
        st = p.stat()
        if st.st_size > MAX_FILE_BYTES:
            raise _error(name, f"file is {st.st_size / 2**20:.1f} MiB; config files are limited "
                         f"to {MAX_FILE_BYTES // 1024} KiB")
        with open(p, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)  # what stat says is not always what is read
    except FileNotFoundError:
        raise _error(name, "no such config file") from None
    except OSError as exc:
        raise _error(name, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); is this a config file?"
        raise ConfigError.in_file(name, message, line, column=column) from None
    return parse(text, name)
