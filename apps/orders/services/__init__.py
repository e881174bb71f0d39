"""Every write of the orders app, one function per use case."""

from apps.orders.services.allocation import LineRequest
from apps.orders.services.events import EventReceived, event_apply
from apps.orders.services.holds import hold_release_expired
from apps.orders.services.intake import (
    PlatformOrderApplied,
    platform_order_apply,
    platform_orders_poll,
    platform_webhook_receive,
)
from apps.orders.services.lifecycle import (
    OrderState,
    order_cancel,
    order_confirm,
    order_fulfil,
    order_hold_release,
    order_line_exchange,
    order_lines_change,
    order_return,
    order_supplier_refused,
)
from apps.orders.services.reserve import OrderPlaced, order_import, order_reserve
from apps.orders.services.sweep import platform_orders_sweep

__all__ = [
    "EventReceived",
    "LineRequest",
    "OrderPlaced",
    "OrderState",
    "PlatformOrderApplied",
    "event_apply",
    "hold_release_expired",
    "order_cancel",
    "order_confirm",
    "order_fulfil",
    "order_hold_release",
    "order_import",
    "order_line_exchange",
    "order_lines_change",
    "order_reserve",
    "order_return",
    "order_supplier_refused",
    "platform_order_apply",
    "platform_orders_poll",
    "platform_orders_sweep",
    "platform_webhook_receive",
]
