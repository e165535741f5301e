"""Safe YAML loading that remembers where every value came from.

PyYAML composes the text into nodes (which carry their line and column); this
module then builds plain Python values from those nodes itself, so that it can
refuse what a manifest must not contain: duplicate keys, tags beyond YAML's
plain types, alias expansion that explodes ("billion laughs"), and nesting
deep enough to exhaust the stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hifly_batch.manifest.diagnostics import (
    Collector,
    Diagnostic,
    FieldPath,
    Location,
    ManifestInvalid,
    format_path,
)

MAX_DEPTH = 64
MAX_ALIAS_EXPANSION = 100_000

_T = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_T}{n}" for n in ("null", "bool", "int", "float", "str", "timestamp")}
_MERGE_TAG = f"{_T}merge"
_VALUE_TAG = f"{_T}value"
_TEXT_TAGS = _SCALAR_TAGS | {_MERGE_TAG, _VALUE_TAG}  # the tags a plain scalar resolves to
_SEQ_TAG = f"{_T}seq"
_MAP_TAG = f"{_T}map"

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class YamlDocument:
    """Plain values of one YAML file, with the position of every value and key."""

    file: str
    data: Any
    marks: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)
    block_scalars: set[FieldPath] = field(default_factory=set)
    # Faults found while building values (a duplicate key, a refused tag), and the
    # items or settings whose values they left unusable (cut as the schema's are).
    faults: list[Diagnostic] = field(default_factory=list)
    refused: set[FieldPath] = field(default_factory=set)
    # The text of each plain scalar YAML read as another type (``10:30`` as 630), so a
    # type error can say what was written.
    written: dict[FieldPath, str] = field(default_factory=dict)

    def locate(self, path: FieldPath, *, key: bool = False) -> Location:
        """Where ``path`` is; the nearest enclosing value when it is absent."""
        if key and path in self.key_marks:
            return Location(self.file, *self.key_marks[path])
        for end in range(len(path), -1, -1):
            mark = self.marks.get(path[:end])
            if mark is not None:
                return Location(self.file, *mark)
        return Location(self.file, 1, 1)


def load_yaml(text: str, file: str) -> YamlDocument:
    """Parse ``text`` (the contents of ``file``); raise :class:`ManifestInvalid` on faults."""
    doc = read_yaml(text, file)
    if doc.faults:
        raise ManifestInvalid(doc.faults)
    return doc


def read_yaml(text: str, file: str) -> YamlDocument:
    """Parse ``text`` (the contents of ``file``); raise :class:`ManifestInvalid` when it
    is no YAML at all. Faults of its values (a duplicate key, a refused tag) are kept in
    the document's ``faults``, so that the manifest's other faults are found too."""
    _check_depth(text, file)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise ManifestInvalid([_syntax_diagnostic(exc, file)]) from None
    except yaml.reader.ReaderError as exc:
        raise ManifestInvalid([_reader_diagnostic(exc, text, file)]) from None
    except yaml.YAMLError as exc:
        raise ManifestInvalid([Diagnostic(Location(file), "", f"YAML error: {exc}")]) from None
    if root is None:
        raise ManifestInvalid([Diagnostic(Location(file), "", "the file is empty")])
    _check_expansion(root, file)
    builder = _Builder(file)
    data = builder.build(root, ())
    return YamlDocument(
        file,
        data,
        builder.marks,
        builder.key_marks,
        builder.block_scalars,
        list(builder.errors.diagnostics),
        builder.refused,
        builder.written,
    )


def is_spoken_data(path: FieldPath) -> bool:
    """Whether ``path`` lies in ``vars`` or in ``data.*.rows``, whose scalars reach the
    templates as the text written (SPEC §3): ``00123``, ``NO``, ``10:30``, ``~`` stay
    that, as CSV cells do; YAML's implicit types never apply there."""
    return (path[:1] == ("vars",) and len(path) > 1) or (
        len(path) > 3 and path[0] == "data" and path[2] == "rows"
    )


def is_json_data(path: FieldPath) -> bool:
    """Whether ``path`` lies in an item's ``api_params``, which are JSON values passed
    through to the API: read by YAML 1.2's core schema, so ``yes`` and ``on`` stay text
    and ``012`` is 12, never YAML 1.1's booleans, octals or sexagesimals."""
    return len(path) > 3 and path[2] == "api_params"


# YAML 1.2's core schema (yaml.org/spec/1.2.2 §10.3.2), for plain scalars.
_CORE_NULL = re.compile(r"null|Null|NULL|~|")
_CORE_BOOL = {"true": True, "True": True, "TRUE": True,
              "false": False, "False": False, "FALSE": False}  # fmt: skip
_CORE_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_CORE_FLOAT = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)


def _core_scalar(text: str) -> Any:
    if _CORE_NULL.fullmatch(text):
        return None
    if text in _CORE_BOOL:
        return _CORE_BOOL[text]
    if _CORE_INT.fullmatch(text):
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text)
    if _CORE_FLOAT.fullmatch(text):
        return float(text.replace(".", "", 1) if text.lstrip("+-")[1:2].isalpha() else text)
    return text


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_T) :] if tag.startswith(_T) else tag


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _syntax_diagnostic(exc: yaml.MarkedYAMLError, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
    parts = [p for p in (exc.context, exc.problem) if p]
    return Diagnostic(where, "", "YAML syntax error: " + ", ".join(parts))


def _reader_diagnostic(exc: yaml.reader.ReaderError, text: str, file: str) -> Diagnostic:
    """A character YAML refuses in the file (a control character), at its line and
    column."""
    before = text[: exc.position]
    line, column = before.count("\n") + 1, exc.position - before.rfind("\n")
    message = (
        f"YAML error: a control character U+{exc.character:04X} is not allowed in a YAML "
        "file; remove it"
        if isinstance(exc.character, int)
        else f"YAML error: {exc.reason}"
    )
    return Diagnostic(Location(file, line, column), "", message)


def _check_depth(text: str, file: str) -> None:
    """Refuse deep nesting from the event stream, before any recursive composing."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    assert mark is not None  # the parser marks every event
                    where = Location(file, mark.line + 1, mark.column + 1)
                    msg = f"nested more than {MAX_DEPTH} levels deep"
                    raise ManifestInvalid([Diagnostic(where, "", msg)])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        raise ManifestInvalid([_syntax_diagnostic(exc, file)]) from None
    except yaml.reader.ReaderError as exc:
        raise ManifestInvalid([_reader_diagnostic(exc, text, file)]) from None
    except yaml.YAMLError as exc:
        raise ManifestInvalid([Diagnostic(Location(file), "", f"YAML error: {exc}")]) from None


def _check_expansion(root: Node, file: str) -> None:
    """Refuse recursive aliases and documents whose aliases expand too far or too deep."""
    sizes: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def measure(node: Node) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:
            msg = "an alias refers to a node that contains it (recursive alias)"
            raise ManifestInvalid([Diagnostic(Location(file, *_mark(node)), "", msg)])
        active.add(id(node))
        size, depth = 1, 1
        for child in _children(node):
            child_size, child_depth = measure(child)
            size += child_size
            depth = max(depth, child_depth + 1)
        active.discard(id(node))
        sizes[id(node)] = (size, depth)
        return size, depth

    total, depth = measure(root)
    if total - len(sizes) > MAX_ALIAS_EXPANSION or depth > MAX_DEPTH:
        msg = (
            f"aliases expand this document beyond {MAX_ALIAS_EXPANSION} extra values "
            f"or {MAX_DEPTH} levels; refused"
        )
        raise ManifestInvalid([Diagnostic(Location(file, *_mark(root)), "", msg)])


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


class _Builder:
    """Builds plain values from nodes, recording marks and collecting faults."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors = Collector()
        self.marks: dict[FieldPath, tuple[int, int]] = {}
        self.key_marks: dict[FieldPath, tuple[int, int]] = {}
        self.block_scalars: set[FieldPath] = set()
        self.refused: set[FieldPath] = set()
        self.written: dict[FieldPath, str] = {}
        self._constructor = SafeConstructor()

    def _error(self, node: Node, path: FieldPath, message: str, *, refuse: bool = True) -> None:
        self.errors.add(Location(self.file, *_mark(node)), format_path(path), message)
        if refuse:
            self.refused.add(path[:2])

    def _tag_error(self, node: Node, path: FieldPath, tag: str) -> None:
        self._error(node, path, f"tag {_tag_name(tag)} is not allowed (only plain YAML types)")

    def build(self, node: Node, path: FieldPath) -> Any:
        self.marks[path] = _mark(node)
        if isinstance(node, ScalarNode):
            if node.style in ("|", ">"):
                self.block_scalars.add(path)
            return self._scalar(node, path)
        if node.tag not in (_SEQ_TAG, _MAP_TAG):
            self._tag_error(node, path, node.tag)
            return None
        if isinstance(node, SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        return self._mapping(node, path)

    def _scalar(self, node: ScalarNode, path: FieldPath) -> Any:
        tag = node.tag
        if tag in _TEXT_TAGS and not node.style and is_json_data(path):
            return _core_scalar(node.value)
        if tag in _TEXT_TAGS and (is_spoken_data(path) or tag in (_VALUE_TAG, _MERGE_TAG)):
            return node.value  # (``=`` and ``<<`` as values are text)
        if tag not in _SCALAR_TAGS:
            self._tag_error(node, path, tag)
            return None
        if tag.endswith(("str", "timestamp")):
            return node.value
        method = getattr(self._constructor, "construct_yaml_" + tag[len(_T) :])
        try:
            value = method(node)
        except (ValueError, yaml.YAMLError) as exc:
            self._error(node, path, f"not a valid {tag[len(_T) :]}: {exc}")
            return None
        if not node.style and value is not None:
            self.written[path] = node.value
        return value

    def _mapping(self, node: MappingNode, path: FieldPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        pairs = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._merge(result, value_node, path)
            else:
                pairs.append((key_node, value_node))
        # Merged keys come first so that keys written in place overwrite them
        # (values and recorded positions alike).
        written: set[str] = set()
        for key_node, value_node in pairs:
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in written:
                first = self.key_marks[(*path, key)][0]
                message = f"duplicate key {key!r} (first at line {first})"
                self._error(key_node, (*path, key), message, refuse=False)  # the first holds
                continue
            written.add(key)
            self.key_marks[(*path, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*path, key))
            if not isinstance(value_node, ScalarNode):
                # A block collection starts on the line after its key: faults of
                # the whole entry are shown at the key, where the reader looks.
                self.marks[(*path, key)] = _mark(key_node)
        return result

    def _key(self, node: Node, path: FieldPath) -> str | None:
        if not isinstance(node, ScalarNode):
            self._error(node, path, "a mapping key must be a plain scalar")
            return None
        if node.tag not in _SCALAR_TAGS:
            self._tag_error(node, path, node.tag)
            return None
        return str(node.value)

    def _merge(self, result: dict[str, Any], node: Node, path: FieldPath) -> None:
        """``<<: *anchor`` (or a list of them): keys written in place win."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self._error(source, path, "'<<' must merge a mapping or a list of mappings")
                continue
            merged = self._mapping(source, path)
            for key, value in merged.items():
                result.setdefault(key, value)
