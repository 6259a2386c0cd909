"""The strict YAML loaders and the bounds that keep a wrong or hostile endpoints file from exhausting the machine.

compose() gives the file's node tree (for line numbers) and the data built from it. Both loaders refuse duplicate
keys, nesting deeper than MAX_DEPTH and more than MAX_NODES nodes (aliases counted as what they expand to), and
join JSON-style surrogate pairs; FastStrictLoader does it over libyaml, StrictLoader over PyYAML's reference parser.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import yaml
from yaml._yaml import CParser  # libyaml's parser (yaml.cyaml imports it from here too)

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "SURROGATE", "FastStrictLoader", "Refused", "StrictLoader", "compose"]

# Bounds that keep a wrong or hostile file from exhausting the machine. A real endpoints file is a few KB,
# a few hundred to a few thousand YAML nodes, and nested about 10 levels (a json_schema in `expect` a few more).
MAX_FILE_BYTES = 10 * 1024 * 1024  # refused before parsing
MAX_DEPTH = 64  # nesting levels, checked while composing: well below where anything recursive would overflow
MAX_NODES = 100_000  # YAML nodes with every alias counted each time it is used: what later walks will visit

SURROGATE = re.compile("[\ud800-\udfff]")  # one half of a UTF-16 pair: joined when paired, refused alone
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep (MAX_DEPTH)"
RECURSIVE = "an alias refers to a node that contains it (a recursive structure)"
STR_TAG, SEQ_TAG, MAP_TAG = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that the loader will not build: too deep, too many nodes, a self-referencing alias."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


# The mixin below overrides methods of PyYAML's composer and constructor; the type checker reads it as one of them.
if TYPE_CHECKING:
    _Loader = yaml.SafeLoader
else:
    _Loader = object


class _StrictConstructor(_Loader):
    """A constructor that refuses duplicate keys instead of silently keeping the last one, and a key that cannot be
    one, says which value Python cannot hold, and joins JSON-style surrogate pairs."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:  # an integer of 5,000 digits, a date such as 2024-02-30
            raise Refused(f"cannot read this value: {str(exc).split(';')[0]}", node.start_mark) from None
        except (IndexError, KeyError, AttributeError):  # PyYAML's constructors trust the text: `!!int ""`, `!!bool x`
            tag = str(node.tag).rpartition(":")[2]
            raise Refused(f"cannot read this value: its tag says {tag}, and it is not one", node.start_mark) from None

    def construct_scalar(self, node: yaml.ScalarNode | yaml.MappingNode) -> str:
        return _join_surrogates(super().construct_scalar(node))

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, None] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():  # `!!map text`: PyYAML refuses
            _add_key(seen, self.construct_object(key_node, deep=deep), key_node)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


class StrictLoader(_StrictConstructor, yaml.SafeLoader):
    """PyYAML's own Python parser: the one whose errors and whose reading of every file are the reference. It bounds
    nesting and alias expansion while composing, before anything recursive runs."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self._depth = 0
        self._expanded = 0  # nodes so far, every alias counted as the whole node it stands for
        self._sizes: dict[yaml.Node, int] = {}

    def read(self) -> tuple[yaml.Node | None, Any]:
        root = self.get_single_node()
        return root, self.construct_document(root) if root is not None else None

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if (
                node is None or node not in self._sizes
            ):  # its anchor is still open: the alias is inside the node it names
                raise Refused(RECURSIVE, mark)
            self._expanded = _counted(self._expanded, self._sizes[node], mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise Refused(TOO_DEEP, mark)
        before = self._expanded
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._expanded = _counted(self._expanded, 1, mark)
        if node is not None:
            self._sizes[node] = self._expanded - before
        return node


class FastStrictLoader(_StrictConstructor, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """StrictLoader's reading over libyaml's parser, seven times faster on a large file: one pass over its events
    composes the node tree and builds the data together, with the same bounds, refusals and values (a value of a tag
    other than text, list or mapping is built by PyYAML's constructor). libyaml refuses some text PyYAML reads (a
    \\ud83d escape, very deep nesting): any error is read again by StrictLoader, so that what is accepted and what
    each error says stay PyYAML's."""

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    def read(self) -> tuple[yaml.Node | None, Any]:
        self.get_event()  # type: ignore[no-untyped-call]  # the stream's start
        if self.check_event(yaml.StreamEndEvent):
            return None, None
        self.get_event()  # type: ignore[no-untyped-call]  # the document's start
        root, data = self._document()
        self.get_event()  # type: ignore[no-untyped-call]  # the document's end
        if not self.check_event(yaml.StreamEndEvent):
            raise yaml.composer.ComposerError("expected a single document in the stream")
        return root, data

    def _document(self) -> tuple[yaml.Node, Any]:
        """The document's root node and its data. A loop over the events, not a recursion: each collection waits on
        `open_` until its end event."""
        get_event, resolve = self.get_event, self.resolve
        open_: list[_Open] = []
        anchors: dict[str, yaml.Node] = {}
        named: dict[yaml.Node, tuple[int, Any]] = {}  # each anchored node, once complete: its size and its data
        expanded = 0  # nodes so far, every alias counted as the whole node it stands for
        while True:
            event = get_event()  # type: ignore[no-untyped-call]
            kind = type(event)
            node: yaml.Node
            if kind is yaml.AliasEvent:
                if event.anchor not in anchors:
                    raise yaml.composer.ComposerError(f"found undefined alias {event.anchor!r}")
                node = anchors[event.anchor]
                if node not in named:  # its anchor is still open: the alias is inside the node it names
                    raise Refused(RECURSIVE, event.start_mark)
                size, value = named[node]
                expanded = _counted(expanded, size, event.start_mark)
            elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
                done = open_.pop()
                node, value = done.node, done.data
                node.end_mark = event.end_mark
                if done.constructed:
                    value = self.construct_object(node, deep=True)
                expanded = _counted(expanded, 1, event.start_mark)
                if done.anchor is not None:
                    named[node] = (expanded - done.before, value)
            else:
                if len(open_) >= MAX_DEPTH:
                    raise Refused(TOO_DEEP, event.start_mark)
                if event.anchor in anchors:
                    raise yaml.composer.ComposerError(f"found duplicate anchor {event.anchor!r}")
                tag = event.tag
                if kind is yaml.ScalarEvent:
                    if tag is None or tag == "!":
                        tag = resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
                    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
                    # deep: a scalar tagged as a collection (`!!set text`) is refused now, as PyYAML refuses it
                    value = _join_surrogates(event.value) if tag == STR_TAG else self.construct_object(node, deep=True)
                    expanded = _counted(expanded, 1, event.start_mark)
                    if event.anchor is not None:
                        anchors[event.anchor] = node
                        named[node] = (1, value)
                else:
                    is_mapping = kind is yaml.MappingStartEvent
                    node_class = yaml.MappingNode if is_mapping else yaml.SequenceNode
                    if tag is None or tag == "!":
                        tag = resolve(node_class, None, event.implicit)  # type: ignore[no-untyped-call]
                    node = node_class(tag, [], event.start_mark, None, flow_style=event.flow_style)
                    if event.anchor is not None:
                        anchors[event.anchor] = node
                    # A collection of another tag (!!set, !!omap, one of its own) is the constructor's to build.
                    constructed = tag != (MAP_TAG if is_mapping else SEQ_TAG)
                    open_.append(_Open(node, {} if is_mapping else [], expanded, event.anchor, constructed))
                    continue
            if not open_:
                return node, value
            open_[-1].add(node, value)


class _Open:
    """A sequence or mapping whose end event has not come yet: its node, its data so far (a mapping's key waits
    for its value)."""

    __slots__ = ("anchor", "before", "constructed", "data", "key", "node")

    def __init__(self, node: yaml.Node, data: Any, before: int, anchor: str | None, constructed: bool) -> None:
        self.node, self.data, self.before, self.anchor, self.constructed = node, data, before, anchor, constructed
        self.key: tuple[yaml.Node, Any] | None = None

    def add(self, node: yaml.Node, value: Any) -> None:
        if isinstance(self.node, yaml.SequenceNode):
            self.node.value.append(node)
            self.data.append(value)
        elif self.key is None:
            self.key = node, value
        else:
            key_node, key = self.key
            self.key = None
            self.node.value.append((key_node, node))
            if not self.constructed:
                _add_key(self.data, key, key_node)
                self.data[key] = value


def _add_key(mapping: dict[Any, Any], key: Any, key_node: yaml.Node) -> None:
    """Refuse a key that is there already or cannot be a key (a list, a mapping); else add it, without a value."""
    try:
        duplicate = key in mapping
    except TypeError:  # unhashable
        raise yaml.constructor.ConstructorError(None, None, "found unhashable key", key_node.start_mark) from None
    if duplicate:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
    mapping[key] = None


def _counted(expanded: int, nodes: int, mark: yaml.Mark) -> int:
    expanded += nodes
    if expanded > MAX_NODES:
        raise Refused(f"more than {MAX_NODES} YAML nodes, aliases counted as what they expand to (MAX_NODES)", mark)
    return expanded


def compose(loader_class: type[StrictLoader | FastStrictLoader], text: str) -> tuple[yaml.Node | None, Any]:
    """The file's node tree (for line numbers) and the data built from it."""
    loader = loader_class(text)
    try:
        return loader.read()
    finally:
        loader.dispose()


def _join_surrogates(text: str) -> str:
    """JSON-style escapes ("\\ud83e\\uddea", as json.dumps writes an emoji) reach Python as two lone surrogates:
    join each valid pair into the character it encodes; a lone one stays (and is refused later, with its place)."""
    if not SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
