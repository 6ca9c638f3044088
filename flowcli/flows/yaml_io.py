"""Reading flow text (YAML, which includes JSON) and writing flows back as YAML.

Parse errors come back as ``FlowValidationError`` with 1-based ``source:line:column``.
YAML aliases (``*name``) repeat a value without repeating its text, so a few hundred bytes
can stand for gigabytes ("billion laughs"); a flow is bounded *after* alias expansion, as
if every alias were written out, before any of it is built.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent

from flowcli.errors import FlowValidationError

__all__ = ["dump_flow_yaml", "parse_flow_text"]

# A real flow has a few hundred nodes and a few kilobytes of text.
MAX_FLOW_NODES = 100_000  # YAML nodes (mappings, lists, values), aliases expanded
MAX_FLOW_TEXT = 4 * 1024 * 1024  # characters of text, aliases expanded: no more than a file
MAX_ALIASED_TEXT = 4_096  # characters of a text value that an alias may repeat


def _expanded_size(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it past MAX_FLOW_NODES or MAX_FLOW_TEXT.

    Each distinct node is measured once (memoised), so this costs the size of the file,
    not of the expansion. A node that contains itself (``&a [*a]``) is refused too.
    """
    measured: dict[int, tuple[int, int]] = {}
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _child_nodes(node)
        if children_done:
            nodes = 1 + sum(measured[id(child)][0] for child in children)
            text = sum(measured[id(child)][1] for child in children)
            if isinstance(node, yaml.ScalarNode):
                text = len(node.value)
            if nodes > MAX_FLOW_NODES or text > MAX_FLOW_TEXT:
                what = (
                    f"{MAX_FLOW_NODES:,} values"
                    if nodes > MAX_FLOW_NODES
                    else f"{MAX_FLOW_TEXT // (1024 * 1024)} MiB of text"
                )
                raise ComposerError(
                    None,
                    None,
                    f"with its aliases (*name) written out, this value holds more than "
                    f"{what}; a flow is expected to be small",
                    node.start_mark,
                )
            measured[key] = (nodes, text)
            in_progress.discard(key)
            continue
        if key in measured:
            continue
        if key in in_progress:
            raise ComposerError(
                None, None, "an alias refers to a value that contains it", node.start_mark
            )
        in_progress.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in measured)


def _child_nodes(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class _FlowLoader(yaml.SafeLoader):
    """SafeLoader that bounds a flow after alias expansion and refuses duplicate keys.

    Nodes are counted as the composer builds them (an alias counts as one more), an alias
    may not repeat a long text, and the whole document is measured with its aliases
    expanded before anything is constructed. Duplicate keys are refused because YAML would
    silently keep the last one, and a step that says ``task_type`` twice is a mistake
    worth a line number.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._composed = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._composed += 1
        if self._composed > MAX_FLOW_NODES:
            mark = self.peek_event().start_mark
            raise ComposerError(
                None,
                None,
                f"more than {MAX_FLOW_NODES:,} values; a flow is expected to be small",
                mark,
            )
        if self.check_event(AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if isinstance(target, yaml.ScalarNode) and len(target.value) > MAX_ALIASED_TEXT:
                raise ComposerError(
                    None,
                    None,
                    f"alias *{event.anchor} repeats a text of {len(target.value):,} characters; "
                    f"aliases may repeat texts of up to {MAX_ALIASED_TEXT:,} (write it out)",
                    event.start_mark,
                )
        return super().compose_node(parent, index)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                # Merge keys (<<) legitimately repeat; only plain scalar keys are compared.
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = self.construct_object(key_node, deep=False)
                if key in seen:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {_short(key)}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _short(value: Any, limit: int = 40) -> str:
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "…"
    return repr(value)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _line_col(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


def _describe_yaml_error(exc: yaml.YAMLError, text: str, source: str) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        context_mark = exc.context_mark
        if exc.problem and exc.context:
            where = ""
            if context_mark is not None and context_mark is not mark:
                where = f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
            problem = f"{problem} ({exc.context}{where})"
        if mark is not None:
            return _one_line(f"{source}:{mark.line + 1}:{mark.column + 1}: {problem}")
        return _one_line(f"{source}: {problem}")
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _line_col(text, exc.position)
        char = exc.character
        code = ord(char) if isinstance(char, str) else char
        return f"{source}:{line}:{column}: unacceptable character #x{code:04x}: {exc.reason}"
    return _one_line(f"{source}: invalid YAML: {exc}")


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_flow_text(text: str, source: str = "flow") -> dict[str, Any]:
    """Parse YAML or JSON text into the raw flow mapping (not yet validated)."""
    try:
        data = yaml.load(text, Loader=_FlowLoader)  # a SafeLoader subclass: no object tags
    except yaml.YAMLError as exc:
        # JSON indented with tabs is valid JSON but not YAML; give JSON its chance.
        try:
            data = json.loads(text, object_pairs_hook=_json_pairs)
        except (ValueError, RecursionError):
            raise FlowValidationError([_describe_yaml_error(exc, text, source)], source) from None
    except RecursionError:
        raise FlowValidationError(
            [f"{source}: the document is nested too deeply"], source
        ) from None
    except ValueError as exc:
        # PyYAML lets int() errors through, e.g. an integer past Python's digit limit.
        raise FlowValidationError([_one_line(f"{source}: invalid value: {exc}")], source) from None
    if not isinstance(data, dict):
        got = "an empty document" if data is None else type(data).__name__
        raise FlowValidationError([f"{source}: the flow must be a mapping, got {got}"], source)
    return data


class _FlowDumper(yaml.SafeDumper):
    """Block style with list items indented under their key, and no anchors/aliases:
    an exported flow should read like a hand-written one."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML writes NEL (U+0085) raw in plain, single-quoted and block scalars, where a
    # reader folds it into a space or newline; double quotes escape it as \N.
    if any(char in value for char in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    # Multi-line prompts and templates read best as literal blocks; PyYAML falls back
    # to a quoted style by itself when a block cannot hold the text exactly.
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_str(value)


_FlowDumper.add_representer(str, _represent_str)


def dump_flow_yaml(data: dict[str, Any]) -> str:
    """Readable block-style YAML; key order kept; parses back to the same data."""
    return yaml.dump(
        data,
        Dumper=_FlowDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
