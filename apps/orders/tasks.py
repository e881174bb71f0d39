"""Thin Celery tasks: ids in, a service call, retries declared."""

from __future__ import annotations

from celery import shared_task

from apps.orders.services.holds import hold_release_expired


@shared_task(name="orders.holds_release_expired", acks_late=True, soft_time_limit=50, time_limit=55, ignore_result=True)
def holds_release_expired() -> int:
    """Every minute (beat): give the stock of lapsed holds back."""
    return hold_release_expired()


@shared_task(
    name="orders.platform_orders_poll_all", acks_late=True, soft_time_limit=50, time_limit=55, ignore_result=True
)
def platform_orders_poll_all() -> int:
    """Every minute (beat): one order poll per active channel whose platform connector polls orders."""
    from apps.orders.services.intake import platform_order_polls_due

    channel_ids = platform_order_polls_due()
    for channel_id in channel_ids:
        platform_orders_poll.apply_async(args=[channel_id], expires=120)
    return len(channel_ids)


@shared_task(
    name="orders.platform_orders_poll", acks_late=True, soft_time_limit=240, time_limit=270, ignore_result=True
)
def platform_orders_poll(channel_id: int) -> None:
    """Import one channel's orders changed since its watermark (one poller per channel; a second one returns)."""
    from apps.orders.services.intake import platform_orders_poll as poll

    poll(channel_id=channel_id)


@shared_task(
    name="orders.webhook_deliveries_prune", acks_late=True, soft_time_limit=120, time_limit=150, ignore_result=True
)
def webhook_deliveries_prune() -> int:
    """Daily (beat): forget webhook deliveries older than any platform's redelivery window."""
    from apps.orders.services.intake import webhook_deliveries_prune as prune

    return prune()


@shared_task(
    name="orders.platform_orders_sweep_all", acks_late=True, soft_time_limit=50, time_limit=55, ignore_result=True
)
def platform_orders_sweep_all() -> int:
    """Every few minutes (beat): one order truth sweep per active platform channel with open imported orders."""
    from apps.orders.services.sweep import platform_order_sweeps_due

    channel_ids = platform_order_sweeps_due()
    for channel_id in channel_ids:
        platform_orders_sweep.apply_async(args=[channel_id], expires=240)
    return len(channel_ids)


@shared_task(
    name="orders.platform_orders_sweep", acks_late=True, soft_time_limit=240, time_limit=270, ignore_result=True
)
def platform_orders_sweep(channel_id: int) -> None:
    """Re-read one channel's open orders from its platform and apply them (one sweeper per channel)."""
    from apps.orders.services.sweep import platform_orders_sweep as sweep

    sweep(channel_id=channel_id)


@shared_task(
    name="orders.platform_order_tombstones_prune",
    acks_late=True,
    soft_time_limit=120,
    time_limit=150,
    ignore_result=True,
)
def platform_order_tombstones_prune() -> int:
    """Daily (beat): forget cancels of never-seen platform orders after a long window."""
    from apps.orders.services.intake import platform_order_tombstones_prune as prune

    return prune()
