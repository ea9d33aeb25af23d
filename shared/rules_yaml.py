"""Reading a rules file's YAML strictly and within bounds, remembering where every value stands.

PyYAML alone accepts two ``on:`` keys in one rule (the last silently wins), names the text ``<unicode string>`` in
its errors, and expands a "billion laughs" alias bomb or a document nested ten thousand deep until memory or the
stack runs out. This reader composes the YAML into nodes (cheap: an alias is one shared node) and builds the plain
data itself, so it can refuse, with the file, line and column:

- a duplicate key anywhere (``on:`` twice in one rule, a tag set twice);
- a document over ``MAX_BYTES``, nested deeper than ``MAX_DEPTH``, or whose aliases expand past ``MAX_NODES``;
- tags other than YAML's plain scalars, sequences and mappings (``!!python/object``, ``!!set``);
- ``.nan`` and ``.inf``: a threshold no number is above (or every number is) is a typo, never a rule.

Booleans are YAML 1.2's (``true``/``false`` only): YAML 1.1 would read the key ``on:`` as the boolean True. Merge
keys (``<<: *defaults``) work; keys given beside a merge win over the merged ones, as YAML says.

The limits are far above any real rules file (the shipped one is 7 KB, depth 8, 400 nodes) and low enough that any
file gets its answer in well under a second; they are constants, not settings, because no deployment needs others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000

_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"
_SCALARS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")}

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """1-based, as editors and compilers count."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


class YamlProblem(Exception):
    """The text cannot be read as a rules document; ``position`` says where, when known."""

    def __init__(self, message: str, position: Position | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Document:
    """The plain data of a rules file plus the position of each value (and of each mapping key) by path."""

    data: Any
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> Position | None:
        """Where ``path`` stands, or its deepest ancestor that exists. ``key`` prefers the key over the value.

        Path parts may split a key holding dots (``set.mlreactor.stage`` from an error message): they are joined
        back longest first, as template lookups do.
        """
        found = self._resolve(path)
        while found:
            where = (self.keys.get(found) if key else None) or self.values.get(found)
            if where is not None:
                return where
            found = found[:-1]
        return self.values.get(())

    def _resolve(self, path: Path) -> Path:
        current: Any = self.data
        resolved: Path = ()
        i = 0
        while i < len(path):
            if isinstance(current, list) and isinstance(path[i], int) and 0 <= int(path[i]) < len(current):
                current, resolved, i = current[int(path[i])], (*resolved, path[i]), i + 1
                continue
            if not isinstance(current, Mapping):
                break
            for j in range(len(path), i, -1):
                name = ".".join(str(p) for p in path[i:j])
                if name in current:
                    current, resolved, i = current[name], (*resolved, name), j
                    break
            else:
                break
        return resolved


class _Loader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses depth past ``MAX_DEPTH`` before it recurses any further."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels", _position(self.peek_event().start_mark))  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load(text: str) -> Document:
    """Parse rules YAML text; raise ``YamlProblem`` (with a position where there is one) for anything refused."""
    if len(text) > MAX_BYTES:
        raise YamlProblem(f"the file has more than {MAX_BYTES} characters, the most a rules file may have")
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character: refused before parsing starts
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise YamlProblem(f"not valid YAML: the character #x{exc.character:04x} is not allowed",
                          Position(line, column)) from None
    try:
        node = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        raise YamlProblem(f"not valid YAML: the character #x{exc.character:04x} is not allowed") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlProblem(f"not valid YAML: {problem}", _position(mark) if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    builder = _Builder(loader)
    data = builder.build(node, (), 0) if node is not None else None
    return Document(data, builder.values, builder.keys)


class _Builder:
    """Nodes → plain data, counting every node visited (an alias is visited each time it is used)."""

    def __init__(self, loader: _Loader) -> None:
        self.loader = loader
        self.values: dict[Path, Position] = {}
        self.keys: dict[Path, Position] = {}
        self.count = 0

    def build(self, node: Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlProblem(
                f"the document expands to more than {MAX_NODES} values (aliases repeat what they point to)",
                _position(node.start_mark),
            )
        if depth > MAX_DEPTH:  # an alias can nest a node inside itself
            raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels (through an alias)", _position(node.start_mark))
        self.values.setdefault(path, _position(node.start_mark))
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                raise YamlProblem(f"the tag {node.tag!r} is not allowed here", _position(node.start_mark))
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _MAP:
                raise YamlProblem(f"the tag {node.tag!r} is not allowed here", _position(node.start_mark))
            return self._mapping(node, path, depth)
        raise YamlProblem(f"unexpected YAML node {type(node).__name__}", _position(node.start_mark))

    def _scalar(self, node: ScalarNode) -> Any:
        if node.tag not in _SCALARS:
            raise YamlProblem(f"the tag {node.tag!r} is not allowed in a rules file", _position(node.start_mark))
        text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        try:
            value = self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, yaml.YAMLError) as exc:  # e.g. an integer of 10,000 digits
            raise YamlProblem(f"{text!r} is not a valid value: {exc}", _position(node.start_mark)) from None
        if isinstance(value, float) and not math.isfinite(value):  # .nan > x is never true: a threshold never met
            raise YamlProblem(f"{text!r} is not a finite number", _position(node.start_mark))
        return value

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[Any, Any]:
        own: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.update(self._merge(value_node, path, depth))
                continue
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem("a mapping key must be a plain value, not a list or mapping",
                                  _position(key_node.start_mark))
            key = self._scalar(key_node)
            if key in own:
                first = self.keys[(*path, str(key))]
                raise YamlProblem(f"duplicate key {key!r} (first given at line {first.line})",
                                  _position(key_node.start_mark))
            self.keys[(*path, str(key))] = _position(key_node.start_mark)
            own[key] = self.build(value_node, (*path, str(key)), depth + 1)
        return {**merged, **own}

    def _merge(self, node: Node, path: Path, depth: int) -> dict[Any, Any]:
        """``<<: *a`` or ``<<: [*a, *b]`` (earlier mappings win over later ones)."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        out: dict[Any, Any] = {}
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                raise YamlProblem("a merge key (<<) takes a mapping or a list of mappings",
                                  _position(source.start_mark))
            out.update(self.build(source, path, depth + 1))
        return out


def _position(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)
