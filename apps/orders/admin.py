"""The merchant's view of orders: lines and the stock they hold, flagged orders, marketplace events."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from apps.core.admin import DefaultChoiceFilter, ReadOnlyAdmin
from apps.core.errors import DomainError
from apps.orders.models import (
    Order,
    OrderEvent,
    OrderLine,
    PlatformOrderRejection,
    PlatformOrderTombstone,
    Reservation,
    WebhookDelivery,
)
from apps.orders.services import order_cancel, order_hold_release
from apps.orders.services.intake import Result, platform_order_rejections_retry


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    fields = ("channel_sku", "product", "quantity", "fulfilled_quantity", "returned_quantity", "unallocated_quantity")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class ReservationInline(admin.TabularInline):
    model = Reservation
    extra = 0
    can_delete = False
    fields = ("line", "item", "location", "per_unit", "quantity", "fulfilled", "released", "returned", "open_now")
    readonly_fields = fields

    @admin.display(description="open")
    def open_now(self, obj: Reservation) -> int:
        return obj.open_quantity

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Reservation]:
        return super().get_queryset(request).select_related("line", "item", "location")


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = ("sequence", "type", "status", "detail", "received_at", "applied_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    """Orders change only through their life cycle (the actions here, the API); the system flags them."""

    list_display = ("id", "external_id", "channel", "mode", "status", "expires_at", "flagged", "created_at")
    list_filter = ("status", "channel", "flagged", "mode")
    # "web W1" finds the order W1 of channel web: every word must match one of these.
    search_fields = ("external_id", "channel__code", "channel__name", "lines__channel_sku")
    list_select_related = ("channel",)
    date_hierarchy = "created_at"
    readonly_fields = (
        "channel",
        "external_id",
        "mode",
        "status",
        "expires_at",
        "created_at",
        "updated_at",
        "stock_held",
    )
    # The flag says stock did not cover the order; incidents are settled by it, so only the system sets it.
    fields = (*readonly_fields, "flagged", "flag_reason")
    inlines = [OrderLineInline, OrderEventInline]
    actions = ["release_hold", "cancel"]

    @admin.display(description="Reservations (stock held per item and location)")
    def stock_held(self, obj: Order) -> str:
        rows = Reservation.objects.filter(line__order=obj).select_related("line", "item", "location").order_by("id")
        return format_html(
            "<table><tr><th>line</th><th>item</th><th>location</th><th>quantity</th><th>fulfilled</th>"
            "<th>released</th><th>returned</th><th>open</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        r.line.channel_sku,
                        r.item.sku,
                        r.location.code,
                        r.quantity,
                        r.fulfilled,
                        r.released,
                        r.returned,
                        r.open_quantity,
                    )
                    for r in rows
                ),
            ),
        )

    @admin.action(description="Release the hold of selected reserved orders")
    def release_hold(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        done = 0
        for order in queryset.filter(status=Order.Status.RESERVED):
            order_hold_release(order_id=order.pk, actor=f"admin:{request.user}")
            done += 1
        self.message_user(request, f"Released {done} hold(s).", messages.SUCCESS)

    @admin.action(description="Cancel selected orders (gives their stock back)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        done, refused = 0, []
        for order in queryset:
            try:
                order_cancel(order_id=order.pk, actor=f"admin:{request.user}")
                done += 1
            except DomainError as err:
                refused.append(f"{order.external_id}: {err.detail}")
        self.message_user(request, f"Cancelled {done} order(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not cancelled: " + "; ".join(refused), messages.WARNING)


@admin.register(OrderLine)
class OrderLineAdmin(ReadOnlyAdmin):
    list_display = ("id", "order", "channel_sku", "product", "quantity", "fulfilled_quantity", "unallocated_quantity")
    search_fields = ("order__external_id", "channel_sku", "product__code")
    list_select_related = ("order", "product")
    inlines = [ReservationInline]
    readonly_fields = (
        "order",
        "listing",
        "channel_sku",
        "product",
        "quantity",
        "fulfilled_quantity",
        "returned_quantity",
        "unallocated_quantity",
    )


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "channel", "external_id", "sequence", "type", "status", "received_at", "applied_at")
    list_filter = ("status", "type", "channel")
    search_fields = ("external_id",)
    list_select_related = ("channel",)
    readonly_fields = (
        "channel",
        "external_id",
        "sequence",
        "type",
        "payload",
        "status",
        "order",
        "detail",
        "received_at",
        "applied_at",
    )


class RejectionStateFilter(DefaultChoiceFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Still refused"), ("resolved", "Applied since"), ("all", "All")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.current() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.current() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(PlatformOrderRejection)
class PlatformOrderRejectionAdmin(ReadOnlyAdmin):
    """A platform's orders Stockroom could not apply, with the reason; fix the cause (list the SKU...), then retry."""

    list_display = (
        "external_id",
        "number",
        "channel",
        "platform_status",
        "reason",
        "seen",
        "last_seen_at",
        "resolved_at",
    )
    list_filter = (RejectionStateFilter, "channel", "source")
    search_fields = ("external_id", "number", "reason")
    list_select_related = ("channel",)
    readonly_fields = (
        "channel", "external_id", "number", "platform_status", "reason", "lines_left_out", "payload", "source", "order",
        "seen",
        "first_seen_at", "last_seen_at", "resolved_at",
    )  # fmt: skip
    actions = ["retry"]

    @admin.display(description="Lines left out")
    def lines_left_out(self, obj: PlatformOrderRejection) -> str:
        """Each line kept for staff (not listed yet, cut below what shipped), with its reason."""
        shown = []
        for line in obj.lines or ():
            if isinstance(line, dict):
                named = line.get("sku") or line.get("external_id") or "(no SKU)"
                shown.append(f"{named} x{line.get('quantity')}: {line.get('reason')}")
        return "\n".join(shown) or "-"

    @admin.action(description="Retry: apply the orders again as the platform last showed them")
    def retry(self, request: HttpRequest, queryset: QuerySet[PlatformOrderRejection]) -> None:
        results = platform_order_rejections_retry(
            rejection_ids=list(queryset.values_list("pk", flat=True)), actor=f"staff:{request.user.get_username()}"
        )
        refused = [r for r in results if r.result == Result.REJECTED]
        self.message_user(request, f"Applied {len(results) - len(refused)} order(s).", messages.SUCCESS)
        for result in refused:
            self.message_user(request, f"Order {result.external_id} still refused: {result.detail}", messages.WARNING)


@admin.register(PlatformOrderTombstone)
class PlatformOrderTombstoneAdmin(ReadOnlyAdmin):
    """Cancels (or deletes) of platform orders Stockroom had not seen: a create arriving later is not imported."""

    list_display = ("created_at", "channel", "external_id", "platform_updated_at", "source")
    list_filter = ("channel", "source")
    search_fields = ("external_id",)
    list_select_related = ("channel",)
    readonly_fields = ("channel", "external_id", "platform_updated_at", "source", "created_at")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "channel", "topic", "delivery_id", "orders")
    list_filter = ("channel", "topic")
    search_fields = ("delivery_id",)
    list_select_related = ("channel",)
