"""Bulk query operations as Shopify runs them: the query's result flattened into JSONL lines.

Shopify's rules (``bulkOperationRunQuery``): the query must select at least one connection; every node of
a connection becomes one line of its own (its nested connections removed from it), and each node of a
nested connection is a line of its own too, with ``__parentId``: the id of the connection node it belongs
to (the nearest one above it, even when an object without a connection sits in between, such as a
variant's ``inventoryItem``). Parents come before their children. Connections take no ``first``: a bulk
query reads everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import get_argument_values

MAX_CONNECTIONS = 5  # Shopify: "a bulk query can contain at most five connections"
MAX_DEPTH = 2  # "... and at most two levels of nested connections"


def is_connection(kind: Any) -> bool:
    return isinstance(kind, GraphQLObjectType) and kind.name.endswith("Connection") and "pageInfo" in kind.fields


class Flattener:
    """One bulk query: what Shopify would refuse in it, and its run, straight into JSONL lines (dicts).

    graphql-core has validated the query against the schema before; the run then walks the selection set
    over the same resolvers as the GraphQL endpoint (the arguments of each field coerced once, since a
    bulk query has no variables) and writes each connection node as a line as it goes. graphql-core's own
    executor, followed by a second walk, takes several times as long for a large catalog, so the
    discovery bench would measure the fake rather than the connector."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self._arguments: dict[int, dict[str, Any]] = {}  # literal arguments, once per field of the query
        self._info = SimpleNamespace(context={"bulk": True}, schema=schema)
        self._on_root: Callable[[int], None] | None = None
        self._roots = 0
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))

    def problems(self) -> list[str]:
        """What Shopify would refuse in this query (no connection, too many, too deep)."""
        root = self.schema.query_type
        assert root is not None
        depths = list(self._connections(self.operation.selection_set, root, 0))
        if not depths:
            return ["Bulk queries must contain at least one connection."]
        found = []
        if len(depths) > MAX_CONNECTIONS:
            found.append(f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections.")
        if max(depths) > MAX_DEPTH:
            found.append(f"Bulk queries cannot contain connections with a nesting depth greater than {MAX_DEPTH}.")
        return found

    def _connections(self, selection: SelectionSetNode | None, parent: Any, depth: int) -> Iterator[int]:
        for node in self._fields(selection, parent):
            definition = parent.fields.get(node.name.value)
            if definition is None:
                continue
            named = get_named_type(definition.type)
            if is_connection(named):
                yield depth + 1
                inner = self._node_selection(node, named)
                if inner is not None:
                    yield from self._connections(inner[0], inner[1], depth + 1)
            elif isinstance(named, GraphQLObjectType):
                yield from self._connections(node.selection_set, named, depth)

    def lines(self, root: Any, on_root: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Run the query from ``root`` (the QueryRoot's resolvers) and return its JSONL lines in order;
        ``on_root(n)`` is told how many top-level nodes are done as they are."""
        query_type = self.schema.query_type
        assert query_type is not None
        out: list[dict[str, Any]] = []
        self._on_root, self._roots = on_root, 0
        self._object(self.operation.selection_set, query_type, root, None, out)
        return out

    # --- the walk: resolve and flatten in one pass -------------------------------------------

    def _resolve(self, value: Any, node: FieldNode, definition: Any) -> Any:
        name = node.name.value
        found = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
        if callable(found):
            arguments = self._arguments.get(id(node))
            if arguments is None:
                arguments = self._arguments[id(node)] = get_argument_values(definition, node, None)
            found = found(self._info, **arguments)
        return found

    def _object(
        self,
        selection: SelectionSetNode | None,
        parent: Any,
        value: Any,
        owner: str | None,
        out: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """``value``'s selected fields without its connections; the connections' nodes go to ``out`` as lines
        of their own."""
        kept: dict[str, Any] = {}
        for node in self._fields(selection, parent):
            key = node.alias.value if node.alias else node.name.value
            if key in kept:
                continue
            if node.name.value == "__typename":
                kept[key] = (value.get("__typename") if isinstance(value, dict) else None) or parent.name
                continue
            definition = parent.fields[node.name.value]
            found = self._resolve(value, node, definition)
            named = get_named_type(definition.type)
            if found is None:
                kept[key] = None
            elif is_connection(named):
                self._connection(node, named, found, owner, out)
            elif isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
                inner = definition.type.of_type if isinstance(definition.type, GraphQLNonNull) else definition.type
                if isinstance(inner, GraphQLList):
                    kept[key] = [
                        self._object(node.selection_set, self._concrete(named, v), v, owner, out) for v in found if v
                    ]
                else:
                    kept[key] = self._object(node.selection_set, self._concrete(named, found), found, owner, out)
            else:
                kept[key] = found
        return kept

    def _concrete(self, named: Any, value: Any) -> Any:
        if isinstance(named, GraphQLInterfaceType) and isinstance(value, dict) and "__typename" in value:
            return self.schema.type_map[value["__typename"]]
        return named

    def _connection(
        self, node: FieldNode, connection: Any, value: dict[str, Any], owner: str | None, out: list[dict[str, Any]]
    ) -> None:
        found = self._node_selection(node, connection)
        if found is None:
            return
        selection, node_type, via_edges, _key = found
        members = [edge["node"] for edge in value.get("edges") or []] if via_edges else value.get("nodes") or []
        for member in members:
            if not member:
                continue
            line: dict[str, Any] = {}
            out.append(line)  # the parent's line before its children's
            concrete = self._concrete(node_type, member)
            line.update(self._object(selection, concrete, member, member.get("id") or owner, out))
            if owner is not None:
                line["__parentId"] = owner
            elif self._on_root is not None:
                self._roots += 1
                if self._roots % 1000 == 0:
                    self._on_root(self._roots)

    def _node_selection(self, node: FieldNode, connection: Any) -> Any:
        """(selection set of the nodes, their type, through edges?, the key holding them) of a connection field."""
        edge = get_named_type(connection.fields["edges"].type)
        node_type = get_named_type(edge.fields["node"].type)
        for child in self._fields(node.selection_set, None):
            name = child.name.value
            if name == "nodes":
                return child.selection_set, node_type, False, child.alias.value if child.alias else name
            if name == "edges":
                for sub in self._fields(child.selection_set, None):
                    if sub.name.value == "node":
                        key = sub.alias.value if sub.alias else "node"
                        return sub.selection_set, node_type, True, key
        return None

    def _fields(self, selection: SelectionSetNode | None, parent: Any) -> Iterator[FieldNode]:
        for node in selection.selections if selection else []:
            if isinstance(node, FieldNode):
                yield node
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition.name.value if node.type_condition else None
                if parent is None or condition is None or condition == getattr(parent, "name", None):
                    yield from self._fields(node.selection_set, parent)
            elif isinstance(node, FragmentSpreadNode):
                fragment = self.fragments.get(node.name.value)
                if fragment is not None and (parent is None or fragment.type_condition.name.value == parent.name):
                    yield from self._fields(fragment.selection_set, parent)
