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


class Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that the loader will not build: too deep, too many nodes, a self-referencing alias."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


# The mixin below overrides methods of PyYAML's composer and constructor; the type checker reads it as one of them.
if TYPE_CHECKING:
    _Loader = yaml.SafeLoader
else:
    _Loader = object


class _Strict(_Loader):
    """A loader that refuses duplicate keys instead of silently keeping the last one, bounds nesting and alias
    expansion while composing (before anything recursive runs), and joins JSON-style surrogate pairs."""

    def __init__(self) -> None:
        self._depth = 0
        self._expanded = 0  # nodes so far, every alias counted as the whole node it stands for
        self._sizes: dict[yaml.Node, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if (
                node is None or node not in self._sizes
            ):  # its anchor is still open: the alias is inside the node it names
                raise Refused("an alias refers to a node that contains it (a recursive structure)", mark)
            self._count(self._sizes[node], mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise Refused(f"nested more than {MAX_DEPTH} levels deep (MAX_DEPTH)", mark)
        before = self._expanded
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, mark)
        if node is not None:
            self._sizes[node] = self._expanded - before
        return node

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise Refused(f"more than {MAX_NODES} YAML nodes, aliases counted as what they expand to (MAX_NODES)", mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:  # an integer of 5,000 digits, a date such as 2024-02-30
            raise Refused(f"cannot read this value: {str(exc).split(';')[0]}", node.start_mark) from None

    def construct_scalar(self, node: yaml.ScalarNode | yaml.MappingNode) -> str:
        return _join_surrogates(super().construct_scalar(node))

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


class StrictLoader(_Strict, yaml.SafeLoader):
    """PyYAML's own Python parser: the one whose errors and whose reading of every file are the reference."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        _Strict.__init__(self)


class FastStrictLoader(
    _Strict, yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver
):
    """The same composing and checks over libyaml's parser, three times faster on a large file. libyaml refuses
    some text PyYAML reads (a \\ud83d escape, very deep nesting): any error is read again by StrictLoader, so
    that what is accepted and what each error says stay PyYAML's."""

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        _Strict.__init__(self)


def compose(loader_class: type[StrictLoader | FastStrictLoader], text: str) -> tuple[yaml.Node | None, Any]:
    """The file's node tree (for line numbers) and the data built from it."""
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


def _join_surrogates(text: str) -> str:
    """JSON-style escapes ("\\ud83e\\uddea", as json.dumps writes an emoji) reach Python as two lone surrogates:
    join each valid pair into the character it encodes; a lone one stays (and is refused later, with its place)."""
    if not SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
