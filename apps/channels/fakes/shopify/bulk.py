"""Bulk query operations as Shopify runs them: the query's result flattened into JSONL lines.

Shopify's rules (``bulkOperationRunQuery``): the query must select at least one connection; every node of
a connection becomes one line of its own (its nested connections removed from it), and each node of a
nested connection is a line of its own too, with ``__parentId``: the id of the connection node it belongs
to (the nearest one above it, even when an object without a connection sits in between, such as a
variant's ``inventoryItem``). Parents come before their children. Connections take no ``first``: a bulk
query reads everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)

MAX_CONNECTIONS = 5  # Shopify: "a bulk query can contain at most five connections"
MAX_DEPTH = 2  # "... and at most two levels of nested connections"


def is_connection(kind: Any) -> bool:
    return isinstance(kind, GraphQLObjectType) and kind.name.endswith("Connection") and "pageInfo" in kind.fields


class Flattener:
    """Walks one executed bulk query and its data, yielding the JSONL lines (dicts) in order."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
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

    def lines(self, data: dict[str, Any]) -> Iterator[dict[str, Any]]:
        root = self.schema.query_type
        assert root is not None
        pending: list[dict[str, Any]] = []
        self._object(self.operation.selection_set, root, data, None, pending)
        yield from pending

    # --- the walk -------------------------------------------------------------------------

    def _object(
        self,
        selection: SelectionSetNode | None,
        parent: Any,
        value: dict[str, Any],
        owner: str | None,
        out: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """``value`` without its connections; the connections' nodes go to ``out`` as lines of their own."""
        kept: dict[str, Any] = {}
        for node in self._fields(selection, parent):
            key = node.alias.value if node.alias else node.name.value
            if key not in value or key in kept:
                continue
            definition = parent.fields.get(node.name.value) if hasattr(parent, "fields") else None
            field_value = value[key]
            if definition is None or field_value is None:
                kept[key] = field_value
                continue
            named = get_named_type(definition.type)
            if is_connection(named):
                self._connection(node, named, field_value, owner, out)
                continue
            if isinstance(named, GraphQLObjectType):
                inner = definition.type.of_type if isinstance(definition.type, GraphQLNonNull) else definition.type
                if isinstance(inner, GraphQLList):
                    kept[key] = [self._object(node.selection_set, named, v, owner, out) for v in field_value if v]
                else:
                    kept[key] = self._object(node.selection_set, named, field_value, owner, out)
                continue
            kept[key] = field_value
        return kept

    def _connection(
        self, node: FieldNode, connection: Any, value: dict[str, Any], owner: str | None, out: list[dict[str, Any]]
    ) -> None:
        found = self._node_selection(node, connection)
        if found is None:
            return
        selection, node_type, via_edges, key = found
        members = [(e or {}).get(key) for e in value.get("edges") or []] if via_edges else value.get(key) or []
        for member in members:
            if not member:
                continue
            line: dict[str, Any] = {}
            out.append(line)  # the parent's line before its children's
            line.update(self._object(selection, node_type, member, member.get("id") or owner, out))
            if owner is not None:
                line["__parentId"] = owner

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
