"""Where a spec's values come from: its YAML file (with line numbers) and ``--set section.key=value``.

    >>> tree = read_tree(Path("spec.yaml"), sections=("output_dir", "encode"))     # doctest: +SKIP
    >>> apply_override(tree, "encode.pooling=cls", Path.cwd(), ("output_dir", "encode"))  # doctest: +SKIP
    >>> tree["encode"].keys["pooling"]                                             # doctest: +SKIP
    Value(value='cls', where='--set encode.pooling', base=PosixPath('/home/me'))

Nothing here knows what a key means (schema.py does); this only keeps, for every value, where it was
given, so an error can point at the line or the ``--set`` to change, and the directory a relative
path in it is relative to. Keys given twice are refused rather than the last one silently winning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ..errors import EmbedpipeError, first_line


@dataclass
class Value:
    value: Any
    where: str          # "spec.yaml:12" or "--set encode.pooling"
    base: Path          # what a relative path in this value is relative to


class Entry(NamedTuple):
    """One top-level key of a spec: its value, and its keys when it is a mapping (a section)."""
    value: Value
    keys: dict[str, Value] | None


Tree = dict[str, Entry]


def read_tree(path: Path, sections: Sequence[str]) -> Tree:
    """{top-level key: Entry} of a spec file; ``sections`` (the keys a spec takes) only word the errors."""
    text = _spec_text(path)
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks every character already: inside the try
        root = loader.get_single_node()
        if root is None:
            raise EmbedpipeError(f"{path}: the spec is empty")
        if not isinstance(root, yaml.MappingNode):
            raise EmbedpipeError(f"{path}:{root.start_mark.line + 1}: a pipeline spec is a mapping of sections "
                                 f"({', '.join(sections)})")
        tree: Tree = {}
        for key_node, value_node in root.value:
            key, where = _key(path, key_node, tree)
            keys = None
            if isinstance(value_node, yaml.MappingNode):
                keys = {}
                for k_node, v_node in value_node.value:
                    k, w = _key(path, k_node, keys, prefix=f"{key}.")
                    keys[k] = Value(loader.construct_object(v_node, deep=True), w, path.parent)
            tree[key] = Entry(Value(loader.construct_object(value_node, deep=True), where, path.parent), keys)
        return tree
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        if isinstance(e, yaml.reader.ReaderError):  # a control character: its message spans lines
            code = ord(e.character) if isinstance(e.character, str) else int(e.character)
            raise EmbedpipeError(f"{path}: not valid YAML (control character U+{code:04X} at position {e.position}; "
                                 "is it a text file?)") from None
        raise EmbedpipeError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or first_line(e)})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _spec_text(path: Path) -> str:
    """The spec's text: UTF-8 (a BOM allowed) or UTF-16 with a BOM; a binary file (NUL bytes, not UTF-8)
    is one line."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EmbedpipeError(f"cannot read pipeline spec {path}: {e.strerror or e}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its BOM (Windows editors): text too
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\0" in data:
        raise EmbedpipeError(f"pipeline spec {path} holds NUL bytes: a binary file, not YAML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise EmbedpipeError(f"pipeline spec {path} is not UTF-8 text (byte {e.start}: {data[e.start]:#04x}); "
                             "a spec is a YAML text file") from None


def _key(path: Path, node: yaml.Node, seen: dict, prefix: str = "") -> tuple[str, str]:
    where = f"{path}:{node.start_mark.line + 1}"
    if not isinstance(node, yaml.ScalarNode):
        raise EmbedpipeError(f"{where}: keys must be plain names")
    if node.value in seen:
        raise EmbedpipeError(f"{where}: {prefix}{node.value} is given twice")
    return node.value, where


def apply_override(tree: Tree, text: str, cwd: Path, sections: Sequence[str]) -> None:
    """``section.key=value`` (value parsed as YAML: 3, true, null, [10, 100], text) into the tree;
    a relative path given this way is relative to ``cwd``, where the command was typed."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    where = f"--set {name}"
    if not sep or not name:
        raise EmbedpipeError(f"--set {text!r}: expected section.key=value, e.g. encode.pooling=cls")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. "a: b: c"): the text as it was typed
    parts = name.split(".")
    if parts[0] not in sections:
        raise EmbedpipeError(f"{where}: unknown section {parts[0]!r}; the spec has: {', '.join(sections)}")
    if parts == ["output_dir"]:
        tree["output_dir"] = Entry(Value(value, where, cwd), None)
        return
    if len(parts) != 2 or parts[0] == "output_dir":
        raise EmbedpipeError(f"--set {text!r}: expected section.key=value, e.g. encode.pooling=cls")
    section, keys = tree.get(parts[0], (None, None))
    if section is not None and keys is None and section.value is not None:
        raise EmbedpipeError(f"{section.where}: {parts[0]} must be a mapping of keys")
    keys = keys if keys is not None else {}
    keys[parts[1]] = Value(value, where, cwd)
    tree[parts[0]] = Entry(section or Value({}, where, cwd), keys)
