"""The fake's GraphQL side: the slice of the Admin API schema, Shopify's query cost, GraphQL helpers."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    is_leaf_type,
)
from graphql.execution.values import get_argument_values
from graphql.type.definition import GraphQLInterfaceType, GraphQLObjectType

# The slice of the Admin API schema (2026-07) that Stockroom uses, with Shopify's names and types.
SCHEMA_SDL = """
directive @idempotent(key: String!) on FIELD

scalar DateTime
scalar UnsignedInt64
scalar URL

interface Node { id: ID! }

enum CurrencyCode { EUR GBP USD }
type Shop { id: ID! name: String! myshopifyDomain: String! currencyCode: CurrencyCode! url: URL! }

type Location implements Node {
  id: ID!
  legacyResourceId: UnsignedInt64!
  name: String!
  isActive: Boolean!
  fulfillsOnlineOrders: Boolean!
}
type LocationEdge { cursor: String! node: Location! }
type LocationConnection { edges: [LocationEdge!]! nodes: [Location!]! pageInfo: PageInfo! }
enum LocationSortKeys { ID NAME RELEVANCE }

type Count { count: Int! precision: CountPrecision! }
enum CountPrecision { AT_LEAST EXACT }

type InventoryQuantity { id: ID! name: String! quantity: Int! updatedAt: DateTime }

type InventoryLevel implements Node {
  id: ID!
  isActive: Boolean!
  location: Location!
  item: InventoryItem!
  quantities(names: [String!]!): [InventoryQuantity!]!
  updatedAt: DateTime!
}

type InventoryItem implements Node {
  id: ID!
  legacyResourceId: UnsignedInt64!
  sku: String
  tracked: Boolean!
  inventoryLevel(locationId: ID!, includeInactive: Boolean): InventoryLevel
  inventoryLevels(
    first: Int, after: String, last: Int, before: String, reverse: Boolean, query: String, includeInactive: Boolean
  ): InventoryLevelConnection!
  variant: ProductVariant!
}
type InventoryLevelEdge { cursor: String! node: InventoryLevel! }
type InventoryLevelConnection { edges: [InventoryLevelEdge!]! nodes: [InventoryLevel!]! pageInfo: PageInfo! }

type ProductVariant implements Node {
  id: ID!
  legacyResourceId: UnsignedInt64!
  sku: String
  title: String!
  displayName: String!
  product: Product!
  inventoryItem: InventoryItem!
}
type ProductVariantEdge { cursor: String! node: ProductVariant! }
type ProductVariantConnection { edges: [ProductVariantEdge!]! nodes: [ProductVariant!]! pageInfo: PageInfo! }
enum ProductVariantSortKeys { ID SKU TITLE POSITION RELEVANCE }

enum ProductStatus { ACTIVE ARCHIVED DRAFT UNLISTED }
type Product implements Node {
  id: ID!
  legacyResourceId: UnsignedInt64!
  title: String!
  status: ProductStatus!
  variants(
    first: Int, after: String, last: Int, before: String, reverse: Boolean, sortKey: ProductVariantSortKeys
  ): ProductVariantConnection!
}
type ProductEdge { cursor: String! node: Product! }
type ProductConnection { edges: [ProductEdge!]! nodes: [Product!]! pageInfo: PageInfo! }
enum ProductSortKeys { ID TITLE CREATED_AT UPDATED_AT RELEVANCE }

enum BulkOperationStatus { CANCELED CANCELING COMPLETED CREATED EXPIRED FAILED RUNNING }
enum BulkOperationErrorCode { ACCESS_DENIED INTERNAL_SERVER_ERROR TIMEOUT }
enum BulkOperationType { MUTATION QUERY }
type BulkOperation implements Node {
  id: ID!
  status: BulkOperationStatus!
  errorCode: BulkOperationErrorCode
  type: BulkOperationType!
  query: String!
  createdAt: DateTime!
  completedAt: DateTime
  objectCount: UnsignedInt64!
  rootObjectCount: UnsignedInt64!
  fileSize: UnsignedInt64
  url: URL
  partialDataUrl: URL
}
enum BulkOperationUserErrorCode { INVALID LIMIT_REACHED OPERATION_IN_PROGRESS }
type BulkOperationUserError { code: BulkOperationUserErrorCode field: [String!] message: String! }
type BulkOperationRunQueryPayload { bulkOperation: BulkOperation userErrors: [BulkOperationUserError!]! }

enum WebhookSubscriptionTopic { FULFILLMENT_ORDERS_MOVED ORDERS_CANCELLED ORDERS_CREATE ORDERS_UPDATED }
enum WebhookSubscriptionFormat { JSON XML }
enum WebhookSubscriptionSortKeys { CREATED_AT ID }
type WebhookSubscription implements Node {
  id: ID!
  legacyResourceId: UnsignedInt64!
  topic: WebhookSubscriptionTopic!
  uri: String!
  format: WebhookSubscriptionFormat!
  includeFields: [String!]!
  filter: String
  name: String
  createdAt: DateTime!
  updatedAt: DateTime!
}
type WebhookSubscriptionEdge { cursor: String! node: WebhookSubscription! }
type WebhookSubscriptionConnection {
  edges: [WebhookSubscriptionEdge!]!
  nodes: [WebhookSubscription!]!
  pageInfo: PageInfo!
}
input WebhookSubscriptionInput {
  uri: String
  format: WebhookSubscriptionFormat
  includeFields: [String!]
  filter: String
  name: String
}
type UserError { field: [String!] message: String! }
type WebhookSubscriptionCreatePayload { webhookSubscription: WebhookSubscription userErrors: [UserError!]! }

type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }

enum FulfillmentStatus { CANCELLED ERROR FAILURE OPEN PENDING SUCCESS }
type FulfillmentLineItem { id: ID! quantity: Int lineItem: LineItem! }
type FulfillmentLineItemEdge { cursor: String! node: FulfillmentLineItem! }
type FulfillmentLineItemConnection {
  edges: [FulfillmentLineItemEdge!]!
  nodes: [FulfillmentLineItem!]!
  pageInfo: PageInfo!
}
type Fulfillment implements Node {
  id: ID!
  status: FulfillmentStatus!
  createdAt: DateTime!
  fulfillmentLineItems(first: Int, after: String, last: Int, before: String): FulfillmentLineItemConnection!
}

type LineItem {
  id: ID!
  sku: String
  name: String!
  quantity: Int!
  currentQuantity: Int!
  unfulfilledQuantity: Int!
  variant: ProductVariant
}
type LineItemEdge { cursor: String! node: LineItem! }
type LineItemConnection { edges: [LineItemEdge!]! nodes: [LineItem!]! pageInfo: PageInfo! }

enum OrderDisplayFulfillmentStatus {
  FULFILLED IN_PROGRESS ON_HOLD OPEN PARTIALLY_FULFILLED PENDING_FULFILLMENT RESTOCKED SCHEDULED UNFULFILLED
  REQUEST_DECLINED
}
enum OrderDisplayFinancialStatus {
  AUTHORIZED EXPIRED PAID PARTIALLY_PAID PARTIALLY_REFUNDED PENDING REFUNDED VOIDED
}
enum OrderSortKeys { CREATED_AT ID ORDER_NUMBER PROCESSED_AT UPDATED_AT }

type Order implements Node {
  id: ID!
  legacyResourceId: UnsignedInt64!
  name: String!
  createdAt: DateTime!
  updatedAt: DateTime!
  cancelledAt: DateTime
  closed: Boolean!
  displayFulfillmentStatus: OrderDisplayFulfillmentStatus!
  displayFinancialStatus: OrderDisplayFinancialStatus
  lineItems(first: Int, after: String, last: Int, before: String): LineItemConnection!
  fulfillments(first: Int): [Fulfillment!]!
  fulfillmentOrders(
    first: Int, after: String, last: Int, before: String, displayable: Boolean, query: String, reverse: Boolean
  ): FulfillmentOrderConnection!
  sourceName: String
  retailLocation: Location
  physicalLocation: Location @deprecated(reason: "Use `retailLocation` instead.")
}

enum FulfillmentOrderStatus { CANCELLED CLOSED INCOMPLETE IN_PROGRESS ON_HOLD OPEN SCHEDULED }
type FulfillmentOrderAssignedLocation { location: Location name: String! }
type FulfillmentOrderLineItem { id: ID! lineItem: LineItem! totalQuantity: Int! remainingQuantity: Int! }
type FulfillmentOrderLineItemEdge { cursor: String! node: FulfillmentOrderLineItem! }
type FulfillmentOrderLineItemConnection {
  edges: [FulfillmentOrderLineItemEdge!]! nodes: [FulfillmentOrderLineItem!]! pageInfo: PageInfo!
}
type FulfillmentOrder implements Node {
  id: ID!
  status: FulfillmentOrderStatus!
  assignedLocation: FulfillmentOrderAssignedLocation!
  orderId: ID!
  order: Order!
  updatedAt: DateTime!
  lineItems(first: Int, after: String, last: Int, before: String): FulfillmentOrderLineItemConnection!
}
type FulfillmentOrderEdge { cursor: String! node: FulfillmentOrder! }
type FulfillmentOrderConnection { edges: [FulfillmentOrderEdge!]! nodes: [FulfillmentOrder!]! pageInfo: PageInfo! }
input FulfillmentOrderLineItemInput { id: ID! quantity: Int! }
enum FulfillmentOrderMoveFulfillmentOrderMoveUserErrorCode { CANNOT_MOVE_FULFILLMENT_ORDER_WITH_REPORTED_PROGRESS }
type FulfillmentOrderMoveFulfillmentOrderMoveUserError {
  code: FulfillmentOrderMoveFulfillmentOrderMoveUserErrorCode
  field: [String!]
  message: String!
}
type FulfillmentOrderMovePayload {
  movedFulfillmentOrder: FulfillmentOrder
  originalFulfillmentOrder: FulfillmentOrder
  remainingFulfillmentOrder: FulfillmentOrder
  userErrors: [FulfillmentOrderMoveFulfillmentOrderMoveUserError!]!
}
type OrderEdge { cursor: String! node: Order! }
type OrderConnection { edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! }

type AccessScope { handle: String! description: String! }
type AppInstallation { id: ID! accessScopes: [AccessScope!]! }

type QueryRoot {
  shop: Shop!
  currentAppInstallation: AppInstallation!
  location(id: ID): Location
  node(id: ID!): Node
  nodes(ids: [ID!]!): [Node]!
  inventoryItem(id: ID!): InventoryItem
  order(id: ID!): Order
  orders(
    first: Int, after: String, last: Int, before: String, query: String, sortKey: OrderSortKeys, reverse: Boolean
  ): OrderConnection!
  locations(
    first: Int, after: String, last: Int, before: String, query: String, sortKey: LocationSortKeys, reverse: Boolean,
    includeInactive: Boolean, includeLegacy: Boolean
  ): LocationConnection!
  locationsCount(query: String, limit: Int = 10000): Count
  products(
    first: Int, after: String, last: Int, before: String, query: String, sortKey: ProductSortKeys, reverse: Boolean,
    savedSearchId: ID
  ): ProductConnection!
  productVariants(
    first: Int, after: String, last: Int, before: String, query: String, sortKey: ProductVariantSortKeys,
    reverse: Boolean, savedSearchId: ID
  ): ProductVariantConnection!
  productVariantsCount(query: String, limit: Int = 10000): Count
  bulkOperation(id: ID!): BulkOperation
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
  webhookSubscriptions(
    first: Int, after: String, last: Int, before: String, query: String, sortKey: WebhookSubscriptionSortKeys,
    reverse: Boolean, topics: [WebhookSubscriptionTopic!], format: WebhookSubscriptionFormat, uri: String
  ): WebhookSubscriptionConnection!
}

input InventoryQuantityInput {
  inventoryItemId: ID!
  locationId: ID!
  quantity: Int!
  changeFromQuantity: Int
}
input InventorySetQuantitiesInput {
  name: String!
  reason: String!
  referenceDocumentUri: String
  quantities: [InventoryQuantityInput!]!
}
enum InventorySetQuantitiesUserErrorCode {
  CHANGE_FROM_QUANTITY_STALE COMPARE_QUANTITY_REQUIRED COMPARE_QUANTITY_STALE IDEMPOTENCY_CONCURRENT_REQUEST
  IDEMPOTENCY_KEY_PARAMETER_MISMATCH IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED INVALID_INVENTORY_ITEM INVALID_LOCATION
  INVALID_NAME INVALID_QUANTITY_NEGATIVE INVALID_QUANTITY_TOO_HIGH INVALID_QUANTITY_TOO_LOW INVALID_REASON
  INVALID_REFERENCE_DOCUMENT ITEM_NOT_STOCKED_AT_LOCATION NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR
  NON_MUTABLE_INVENTORY_ITEM
}
type InventorySetQuantitiesUserError { code: InventorySetQuantitiesUserErrorCode field: [String!] message: String! }
type InventoryChange {
  name: String!
  delta: Int!
  quantityAfterChange: Int
  item: InventoryItem
  location: Location
}
type InventoryAdjustmentGroup {
  id: ID!
  createdAt: DateTime!
  reason: String!
  referenceDocumentUri: String
  changes(inventoryItemIds: [ID!], locationIds: [ID!], quantityNames: [String!]): [InventoryChange!]!
}
type InventorySetQuantitiesPayload {
  inventoryAdjustmentGroup: InventoryAdjustmentGroup
  userErrors: [InventorySetQuantitiesUserError!]!
}

type Mutation {
  inventorySetQuantities(input: InventorySetQuantitiesInput!): InventorySetQuantitiesPayload
  bulkOperationRunQuery(query: String!, groupObjects: Boolean!): BulkOperationRunQueryPayload
  webhookSubscriptionCreate(
    topic: WebhookSubscriptionTopic!, webhookSubscription: WebhookSubscriptionInput!
  ): WebhookSubscriptionCreatePayload
  fulfillmentOrderMove(
    id: ID!, newLocationId: ID!, fulfillmentOrderLineItems: [FulfillmentOrderLineItemInput!]
  ): FulfillmentOrderMovePayload
}

schema { query: QueryRoot mutation: Mutation }
"""

DEFAULT_SCOPES = (
    "read_inventory",
    "write_inventory",
    "read_locations",
    "read_orders",
    "read_products",
    "read_merchant_managed_fulfillment_orders",
    "write_merchant_managed_fulfillment_orders",
)
SINGLE_QUERY_MAX_COST = 1000  # Shopify refuses a request that asks for more, whatever the bucket holds
MUTATION_COST = 10
MAX_INPUT_ARRAY = 250  # "Input arguments that accept an array have a maximum size of 250"
INVALID_TOKEN_BODY = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
# InventorySetQuantitiesInput.reason: the documented reasons.
REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_created",
        "movement_updated",
        "movement_received",
        "movement_canceled",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)
GID = re.compile(r"^gid://shopify/(?P<type>[A-Za-z]+)/(?P<id>\d+)$")
SEARCH_TERM = re.compile(r"(?P<field>updated_at|created_at):(?P<op>>=|<=|>|<)?(?P<value>'[^']*'|\"[^\"]*\"|\S+)")


class Costing:
    """Shopify's calculated query cost: objects 1, scalars and enums 0, connections 2 + one per requested
    node (times the node's own cost), a mutation 10; with ``data``, the actual cost of what was returned."""

    def __init__(self, schema: GraphQLSchema, variables: Any, fragments: dict[str, FragmentDefinitionNode]):
        self.schema, self.variables, self.fragments = schema, variables, fragments

    def cost(self, selection: SelectionSetNode | None, parent: Any, data: Any, *, mutation: bool = False) -> int:
        if selection is None:
            return 0
        total, fragment_costs = 0, [0]
        for node in selection.selections:
            if isinstance(node, InlineFragmentNode):
                typed = self.schema.type_map.get(node.type_condition.name.value) if node.type_condition else parent
                fragment_costs.append(self.cost(node.selection_set, typed, data))
            elif isinstance(node, FragmentSpreadNode):
                fragment = self.fragments[node.name.value]
                fragment_costs.append(
                    self.cost(
                        fragment.selection_set, self.schema.type_map.get(fragment.type_condition.name.value), data
                    )
                )
            elif isinstance(node, FieldNode):
                total += self._field(node, parent, data, mutation)
        return total + max(fragment_costs)

    def _field(self, node: FieldNode, parent: Any, data: Any, mutation: bool) -> int:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) or node.name.value.startswith("__"):
            return 0
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        key = node.alias.value if node.alias else node.name.value
        value = data.get(key) if isinstance(data, dict) else None
        static = data is None
        args = get_argument_values(definition, node, self.variables)
        if mutation:
            return MUTATION_COST + self.cost(node.selection_set, named, value if not static else None)
        if named.name.endswith("Connection"):
            return 2 + self._connection(node, named, args, value, static)
        inner = definition.type.of_type if isinstance(definition.type, GraphQLNonNull) else definition.type
        if isinstance(inner, GraphQLList):
            if static:  # a list is charged for what it may hold: its ids, its names or ``first``
                count = len(args.get("ids") or args.get("names") or [None])
                if args.get("first") is not None:
                    count = int(args["first"])
                return count * (1 + self.cost(node.selection_set, named, None))
            return sum(
                1 + self.cost(node.selection_set, named, element) for element in value or [] if element is not None
            )
        if static:
            return 1 + self.cost(node.selection_set, named, None)
        return 0 if value is None else 1 + self.cost(node.selection_set, named, value)

    def _connection(self, node: FieldNode, connection_type: Any, args: dict[str, Any], value: Any, static: bool) -> int:
        edge_type = connection_type.fields["edges"].type
        node_type = get_named_type(get_named_type(edge_type).fields["node"].type)
        per_item: list[int] = []
        items: list[Any] = []
        for child in node.selection_set.selections if node.selection_set else []:
            if not isinstance(child, FieldNode):
                continue
            name = child.name.value
            key = child.alias.value if child.alias else name
            if name == "nodes":
                members = [None] if static else list((value or {}).get(key) or [])
                per_item.append(max((1 + self.cost(child.selection_set, node_type, m) for m in members), default=0))
                items = items or members
            elif name == "edges":
                edges = [None] if static else list((value or {}).get(key) or [])
                for sub in child.selection_set.selections if child.selection_set else []:
                    if isinstance(sub, FieldNode) and sub.name.value == "node":
                        sub_key = sub.alias.value if sub.alias else "node"
                        members = [None if static else (e or {}).get(sub_key) for e in edges]
                        per_item.append(
                            max((1 + self.cost(sub.selection_set, node_type, m) for m in members), default=0)
                        )
                items = items or edges
        each = max(per_item, default=0)
        count = int(args.get("first") or args.get("last") or 0) if static else len(items)
        return count * each


def idempotency_key(info: Any) -> str | None:
    definition = info.schema.get_directive("idempotent")
    for directive in info.field_nodes[0].directives or []:
        if directive.name.value == "idempotent":
            key = get_argument_values(definition, directive, info.variable_values).get("key")
            return str(key) if key else None
    return None


def user_error(code: str, path: list[str], message: str) -> dict[str, Any]:
    return {"code": code, "field": path, "message": message}


def graphql_error(err: GraphQLError) -> dict[str, Any]:
    formatted = dict(err.formatted)
    formatted.setdefault("extensions", {"code": "GRAPHQL_VALIDATION_FAILED"} if not err.path else {})
    return formatted


def operation_of(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in operations if o.name and o.name.value == name), None)
    return operations[0] if len(operations) == 1 else None


def make_cursor(value: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def cursor_value(cursor: str | None) -> dict[str, Any]:
    try:
        value = json.loads(base64.b64decode(cursor or ""))
    except ValueError:
        raise GraphQLError("Invalid cursor", extensions={"code": "BAD_REQUEST"}) from None
    if not isinstance(value, dict):
        raise GraphQLError("Invalid cursor", extensions={"code": "BAD_REQUEST"})
    return value


def connection(edges: list[dict[str, Any]], *, has_next: bool, has_previous: bool) -> dict[str, Any]:
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def access_denied(field_name: str, scope: str) -> GraphQLError:
    return GraphQLError(
        f"Access denied for {field_name} field. Required access: `{scope}` access scope.",
        extensions={"code": "ACCESS_DENIED", "documentation": "https://shopify.dev/api/usage/access-scopes"},
    )
