"""YAML input files read safely: UTF-8 only, no duplicate keys, bounded alias expansion and depth.

Every sweep file, scenario file and ``published.yaml`` is read through
:func:`load_file` (``-s`` values through :func:`loads`).  Beyond PyYAML's safe
loader (plain data, no objects):

* text that is not UTF-8 is an error, not a traceback;
* a key given twice in one mapping is an error naming it and both lines (YAML
  1.2 requires unique keys; PyYAML silently keeps the last);
* the document, with every alias expanded, may hold at most
  :data:`MAX_NODES` nodes and nest at most :data:`MAX_DEPTH` levels, so a
  "billion laughs" alias bomb of a few hundred bytes is refused before it is
  built; a recursive alias is refused too;
* the result is plain JSON-like data: string keys, and dates turned into their
  ISO text (the schema then says what it wants).

Failures raise :class:`YamlError`, one line that names the source.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import yaml

MAX_NODES = 100_000  # scalars + collections after expanding aliases (the largest conf file: ~300)
MAX_DEPTH = 64  # nesting levels (the schema's deepest key is 4 levels down)
MAX_BYTES = 4 * 1024 * 1024  # a config file larger than this is a mistake


class YamlError(ValueError):
    """Unreadable or unacceptable YAML; ``str()`` is one line naming the source."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[type, Any], yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    "a mapping key must be a plain value, not a list or mapping",
                    key_node.start_mark,
                ) from None
            if (type(key), key) in seen:
                first = seen[(type(key), key)].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first}); give each key once",
                    key_node.start_mark,
                )
            seen[(type(key), key)] = key_node
        return super().construct_mapping(node, deep=deep)


def _check_size(root: yaml.Node) -> None:
    """Count nodes with aliases expanded (shared nodes memoised); refuse bombs, cycles, depth."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # iterative post-order walk: (node, depth, children expanded?)
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if depth > MAX_DEPTH:
            raise YamlError(f"nested more than {MAX_DEPTH} levels deep")
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if expanded:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_NODES:
                raise YamlError(
                    f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?); "
                    "write the values out or use fewer aliases"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlError("a recursive alias (an anchor used inside itself)")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)


def _plain(value: Any) -> Any:
    """String keys; dates as ISO text; sets as lists; bytes refused."""
    if isinstance(value, dict):
        return {
            ("null" if k is None else str(k).lower() if isinstance(k, bool) else str(k)): _plain(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        raise YamlError("binary (!!binary) values are not allowed")
    return value


def _mark(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def loads(text: str, source: str = "YAML") -> Any:
    """Parse one YAML document (see the module docstring); raise :class:`YamlError`."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_size(node)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
        return _plain(data)
    except YamlError as err:
        raise YamlError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err)
        raise YamlError(f"{source}: not valid YAML ({_mark(err)}{' '.join(str(problem).split())})") from None
    except RecursionError:
        raise YamlError(f"{source}: nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as err:  # e.g. an impossible timestamp
        raise YamlError(f"{source}: not valid YAML ({' '.join(str(err).split())})") from None


def load_file(path: Path | str) -> Any:
    """Read and parse a YAML file; raise :class:`YamlError` (unreadable, not UTF-8, bad YAML)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise YamlError(f"{path}: cannot read ({err.strerror or err})") from None
    if len(raw) > MAX_BYTES:
        raise YamlError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MiB; not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise YamlError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    return loads(text, str(path))
