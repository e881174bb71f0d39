"""The only place in this app that builds select_for_update querysets: reorder rules, in (item, location) order."""

from __future__ import annotations

from collections.abc import Sequence

from apps.forecasting.models import ReorderRule


def reorder_rules_for_update(*, item_ids: Sequence[int], source: str | None = None) -> list[ReorderRule]:
    """Lock the rules of these items at every location, in the fixed order; ``source`` keeps only those.

    PostgreSQL re-checks the source once a concurrent change is committed, so a rule the
    merchant has just set by hand is not taken for a forecast one.
    """
    if not item_ids:
        return []
    rules = ReorderRule.objects.select_for_update().filter(item_id__in=sorted(set(item_ids)))
    if source is not None:
        rules = rules.filter(source=source)
    return list(rules.order_by("item_id", "location_id"))


def reorder_rule_for_update(rule_id: int) -> ReorderRule:
    return ReorderRule.objects.select_for_update().select_related("item", "location").get(pk=rule_id)
