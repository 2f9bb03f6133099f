"""Errors that name the key and the line: ``FILE:LINE: key.path: what is wrong``."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Literal

import msgspec
import yaml

from .model import Config

KeyPath = tuple[str | int, ...]       # ("backends", 0, "port")
Lines = dict[KeyPath, int]            # where each key path sits in the file


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the key."""


class DuplicateKey(Exception):
    def __init__(self, line: int, key: Any):
        super().__init__(line, key)
        self.line, self.key = line, key


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKey(key_node.start_mark.line + 1, key)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def line_index(node: yaml.Node | None, path: KeyPath = (), index: Lines | None = None) -> Lines:
    """Map every key path in the YAML tree to its 1-based line number."""
    index = {} if index is None else index
    if node is None:
        return index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            index[path + (key,)] = key_node.start_mark.line + 1
            line_index(value_node, path + (key,), index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            line_index(item, path + (i,), index)
    return index


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")


def _split_path(text: str) -> KeyPath:
    """``.backends[0].port`` -> ("backends", 0, "port")"""
    parts: list[str | int] = []
    for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", text):
        parts.append(key if key else int(index))
    return tuple(parts)


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _bare(kind: Any) -> Any:
    """A type without Annotated[...] and without "| None"."""
    while True:
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
        elif typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        else:
            return kind


def _choices(path: KeyPath) -> list[str]:
    """The allowed words of the Literal field at ``path`` (for enum errors)."""
    kind: Any = Config
    for part in path:
        kind = _bare(kind)
        if isinstance(part, int):
            kind = typing.get_args(kind)[0]          # list[Backend] -> Backend
        else:
            kind = {f.name: f.type for f in msgspec.structs.fields(kind)}[part]
    options = (kind,) if typing.get_origin(kind) is Literal else typing.get_args(kind)
    return [str(word) for option in options if typing.get_origin(option) is Literal
            for word in typing.get_args(option)]


def explain(exc: msgspec.ValidationError, lines: Lines, source: str,
            prefix: KeyPath = ()) -> ConfigError:
    """``prefix``: where the value that failed sits in the file (msgspec writes
    a mapping's keys as ``[...]``, so groups are checked one by one)."""
    match = _AT.match(str(exc))
    assert match is not None        # the pattern matches any text
    what, path = match.group("what"), prefix + _split_path(match.group("path") or "")
    if unknown := _UNKNOWN.match(what):
        path += (unknown.group("key"),)
        what = "unknown key"
    if what.startswith("Invalid enum value"):
        what = f"expected one of {', '.join(_choices(path))}; got {what.split(' value ', 1)[1]}"
    what = what.replace("Expected", "expected")
    return error(lines, source, path, what)


def error(lines: Lines, source: str, path: KeyPath, what: str) -> ConfigError:
    """The message for ``path``, at its line, or its nearest parent's when the
    key itself is not written (a default, or a value a group inherits)."""
    line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
    where = f"{source}:{line}" if line else source
    return ConfigError(f"{where}: {_dotted(path)}: {what}")
