"""Staff web pages: dashboard, safety stock with overrides and history, item page with the backtest.

Store staff reach them too ("View site" of the back office): every page shows only the locations
the user sees (``apps.catalog.access``), and the business-wide channel quantities only to those
who see every location.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from apps.catalog.access import location_ids_for, locations_for
from apps.catalog.models import Item, Location, StockLevel
from apps.catalog.units import unit_symbol
from apps.core.durations import duration_text
from apps.forecasting.errors import InvalidOverride
from apps.forecasting.models import SLOTS_PER_WEEK, ForecastSettings, SafetyForecast, SafetyOverride
from apps.forecasting.selectors import override_far_beyond
from apps.forecasting.services.backtest import item_backtest
from apps.forecasting.services.demand import slot_of
from apps.forecasting.services.overrides import safety_override_clear, safety_override_set
from apps.staff import charts, selectors, sources
from apps.staff.forms import SafetyFilterForm, SafetyOverrideForm

OVERRIDE_PERMISSION = "forecasting.change_safetyoverride"
PAGE_SIZE = 50
DASHBOARD_DAYS = (1, 7, 14, 30, 90)
# ATP in a merchant's words: what channels may sell of it now (docs/architecture.md, "Stock, ATP and listing quantity").
SELLABLE_NOW = "sellable now (on hand - reserved - safety)"


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Logged-in staff only; others go to the staff login page."""
    return staff_member_required(view, login_url="staff-login")


def _slot_label(slot: int) -> str:
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[slot // 24]
    return f"{day} {slot % 24:02d}:00"


# --- Safety stock list and overrides ------------------------------------------------------


@staff_required
@require_http_methods(["GET", "POST"])
def safety_stock(request: HttpRequest) -> HttpResponse:
    can_edit = request.user.has_perm(OVERRIDE_PERMISSION)
    seen = location_ids_for(request.user)
    filters = SafetyFilterForm(request.GET or None, user=request.user)
    location = query = None
    if filters.is_bound and filters.is_valid():
        location = filters.cleaned_data["location"]
        query = filters.cleaned_data["q"]
    bound: SafetyOverrideForm | None = None
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("You may look at safety stock but not override it.")
        row = request.POST.get("level", "")
        bound = SafetyOverrideForm(request.POST, auto_id=f"id_%s_{row}" if row.isdigit() else "id_%s")
        saved = _override_save(request, bound, seen)
        if saved:
            return HttpResponseRedirect(_list_url(location, query, request.GET.get("page")))
        if bound.warning and not bound.errors:
            messages.warning(request, "Confirm the safety stock below: it is far beyond demand and stock.")
    now = timezone.now()
    levels = selectors.safety_levels_list(at=now, location=location, query=query or "", location_ids=seen)
    page = Paginator(levels, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = []
    matched = False
    for level in page.object_list:
        annotated: Any = level  # carries forecast_value and the override_* annotations
        override_valid = annotated.override_value is not None and (
            annotated.override_valid_until is None or annotated.override_valid_until > now
        )
        if bound is not None and bound.data.get("level") == str(level.pk):
            form, matched = bound, True
        else:
            form = SafetyOverrideForm(
                initial={
                    "level": level.pk,
                    "value": annotated.override_value,
                    "reason": annotated.override_reason or "",
                    "valid_until": timezone.localtime(annotated.override_valid_until)
                    if annotated.override_valid_until
                    else None,
                },
                auto_id=f"id_%s_{level.pk}",
            )
        rows.append({"level": level, "form": form, "override_valid": override_valid})
    # A value waiting for its confirmation is not a bad request; a refused one is.
    status = 400 if bound is not None and bound.errors else 200
    forecast_settings = ForecastSettings.current()
    context = {
        # A refused form whose row is not on this page (gone, filtered out): say so at the top.
        "unplaced_errors": [str(e) for errors in bound.errors.values() for e in errors]
        if bound is not None and not matched
        else [],
        "filters": filters if filters.is_bound else SafetyFilterForm(user=request.user),
        "rows": rows,
        "page": page,
        "can_edit": can_edit,
        "slot_label": _slot_label(slot_of(now)),
        "query_string": _filter_query(location, query),
        "settings": forecast_settings,
        "service_level_label": f"{float(forecast_settings.service_level):.1%}".replace(".0%", "%"),
    }
    return render(request, "staff/safety_stock.html", context, status=status)


def _filter_query(location: Location | None, query: str | None, page: str | None = None) -> str:
    pairs = (("location", location.code if location else ""), ("q", query or ""), ("page", page or ""))
    return urlencode({key: value for key, value in pairs if value})


def _list_url(location: Location | None, query: str | None, page: str | None) -> str:
    params = _filter_query(location, query, page)
    return reverse("staff-safety-stock") + (f"?{params}" if params else "")


def _override_save(request: HttpRequest, form: SafetyOverrideForm, seen: list[int] | None) -> bool:
    """Validate and apply one row's form; True when saved (the caller redirects), False to re-render."""
    if not form.is_valid():
        return False
    levels = StockLevel.objects.select_related("item", "location").filter(pk=form.cleaned_data["level"])
    if seen is not None:
        levels = levels.filter(location_id__in=seen)  # another store's level is no level of this user's
    level = levels.first()
    if level is None:
        form.add_error(None, "This stock level no longer exists.")
        return False
    data = form.cleaned_data
    try:
        if data["action"] == SafetyOverrideForm.ACTION_CLEAR:
            audit = safety_override_clear(
                item=level.item, location=level.location, reason=data["reason"], user=request.user
            )
            if audit is None:
                messages.info(request, f"{level.item.sku} at {level.location.code} had no override.")
            else:
                messages.success(
                    request,
                    f"Override cleared: {level.item.sku} at {level.location.code} is back on the forecast "
                    f"({audit.new_safety}).",
                )
        else:
            check = override_far_beyond(level=level, value=data["value"])
            if check is not None and not form.is_confirmed():
                form.ask_confirmation(check.message)
                return False
            audit = safety_override_set(
                item=level.item,
                location=level.location,
                value=data["value"],
                reason=data["reason"],
                valid_until=data["valid_until"],
                user=request.user,
            )
            messages.success(
                request,
                f"Safety stock of {level.item.sku} at {level.location.code} is now {audit.new_safety} "
                f"(was {audit.old_safety}); channels are being updated.",
            )
    except InvalidOverride as err:
        form.add_error(err.data.get("field"), err.detail)
        return False
    return True


@staff_required
def safety_history(request: HttpRequest, sku: str, location: str) -> HttpResponse:
    item = get_object_or_404(Item, sku=sku)
    loc = get_object_or_404(locations_for(request.user), code=location)
    level = StockLevel.objects.filter(item=item, location=loc).first()
    override = SafetyOverride.objects.filter(item=item, location=loc).first()
    forecasts = list(SafetyForecast.objects.filter(item=item, location=loc).order_by("slot"))
    now = timezone.now()
    by_slot = charts.line_chart(
        title="Forecast safety stock by hour of week",
        width=1080,
        y_label=unit_symbol(item.unit),
        x_label="hour of week (0 = Monday 00:00)",
        series=[
            charts.Series("forecast safety", [(f.slot, f.value) for f in forecasts], step=True),
            charts.Series(
                "mean demand in window",
                [(f.slot, f.mean_per_hour * ForecastSettings.current().window_hours) for f in forecasts],
                dashed=True,
            ),
            *(
                [charts.Series("override", [(0, override.value), (SLOTS_PER_WEEK - 1, override.value)])]
                if override
                else []
            ),
        ],
        empty_message="No forecast yet: run recompute_safety",
    )
    context = {
        "item": item,
        "location": loc,
        "level": level,
        "override": override,
        "override_valid": override is not None and (override.valid_until is None or override.valid_until > now),
        "audits": selectors.safety_history(item=item, location=loc)[:200],
        "chart": by_slot,
        "slot_label": _slot_label(slot_of(now)),
        "current_forecast": next((f for f in forecasts if f.slot == slot_of(now)), None),
    }
    return render(request, "staff/safety_history.html", context)


# --- Item page with the backtest ---------------------------------------------------------


@staff_required
def item_detail(request: HttpRequest, sku: str) -> HttpResponse:
    item = get_object_or_404(Item, sku=sku)
    seen = location_ids_for(request.user)
    levels_seen = StockLevel.objects.filter(item=item)
    if seen is not None:
        levels_seen = levels_seen.filter(location_id__in=seen)
    levels = list(levels_seen.select_related("location").order_by("location__code"))
    selling = [lv for lv in levels if lv.location.kind != Location.Kind.SUPPLIER]
    wanted = request.GET.get("location")
    level = next((lv for lv in selling if lv.location.code == wanted), None) or (selling[0] if selling else None)
    try:
        weeks = min(26, max(2, int(request.GET.get("weeks", 8))))
    except ValueError:
        weeks = 8
    context: dict[str, Any] = {"item": item, "levels": levels, "selling": selling, "level": level, "weeks": weeks}
    if level is not None:
        result = item_backtest(item=item, location=level.location, weeks=weeks)
        outcomes = result.outcomes
        context["backtest"] = result
        context["tradeoff_chart"] = charts.line_chart(
            title="Trade-off: breaches against units hidden",
            x_label=f"{unit_symbol(item.unit)} held back from channels on average",
            x_min=0,
            y_label="% of windows breached",
            series=[
                charts.Series(
                    "service levels " + ", ".join(o.label for o in outcomes),
                    [(o.mean_hidden, 100 * o.breach_rate) for o in outcomes],
                    markers=True,
                )
            ],
            empty_message="No offline sales in the replayed weeks",
        )
        daily = result.daily
        day_points = [(ts.to_pydatetime(), row) for ts, row in daily.iterrows()] if not daily.empty else []
        context["replay_chart"] = charts.line_chart(
            title=f"Replay at {result.chosen_level:.0%}: busiest window of each day against the safety stock",
            y_label=unit_symbol(item.unit),
            series=[
                charts.Series("peak offline sales in one window", [(d, r["demand"]) for d, r in day_points]),
                charts.Series("safety stock (highest that day)", [(d, r["safety"]) for d, r in day_points], step=True),
                charts.Series("windows breached", [(d, r["breach"]) for d, r in day_points], dashed=True),
            ],
            empty_message="No offline sales in the replayed weeks",
        )
    return render(request, "staff/item_detail.html", context)


# --- Dashboard -----------------------------------------------------------------------------


@staff_required
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    seen = location_ids_for(request.user)
    visible = locations_for(request.user).filter(is_active=True).order_by("code")
    item = selectors.dashboard_item(request.GET.get("item"), location_ids=seen)
    location = locations_for(request.user).filter(code=request.GET.get("location") or "").first()
    try:
        days = int(request.GET.get("days", 7))
    except ValueError:
        days = 7
    days = days if days in DASHBOARD_DAYS else 7
    context: dict[str, Any] = {
        "item": item,
        "location": location,
        "days": days,
        "day_choices": DASHBOARD_DAYS,
        "items": Item.objects.filter(is_active=True).order_by("sku").values_list("sku", "name")[:500],
        "locations": visible,
        # Channel quantities add up every location's stock: shown to those who see every location.
        "sees_all": seen is None,
        "unknown_item": bool(request.GET.get("item")) and item is None,
    }
    if item is not None:
        series = selectors.stock_over_time(
            item=item, since=now - timedelta(days=days), until=now, location=location, location_ids=seen
        )
        frame = series.frame
        points = [ts.to_pydatetime() for ts in frame.index]
        context["stock_chart"] = charts.line_chart(
            title=f"{item.sku} stock over the last {days} day{'s' if days > 1 else ''}"
            + (f" at {location.code}" if location else " (all locations)" if seen is None else " (your locations)"),
            y_label=unit_symbol(item.unit),
            series=[
                charts.Series("on hand", list(zip(points, frame["on_hand"], strict=True)), step=True),
                charts.Series("reserved", list(zip(points, frame["reserved"], strict=True)), step=True),
                charts.Series(SELLABLE_NOW, list(zip(points, frame["atp"], strict=True)), step=True, dashed=True),
            ],
            width=1080,
            height=300,
            empty_message="No movements for this item yet",
        )
        levels = StockLevel.objects.filter(item=item, **({"location": location} if location else {}))
        if seen is not None:
            levels = levels.filter(location_id__in=seen)
        context["totals"] = levels.aggregate(on_hand=Sum("on_hand"), reserved=Sum("reserved"), safety=Sum("safety"))
        context["totals"]["sellable"] = sum(level.atp for level in levels.select_related("location"))
        quantities = selectors.item_channel_quantities(item=item) if seen is None else []
        context["channel_quantities"] = quantities
        context["channel_chart"] = charts.bar_chart(
            title="What each listing shows now",
            width=440,
            bars=[(f"{q['channel']} · {q['channel_sku']}", float(int(q["available"]))) for q in quantities],
            empty_message="No channel lists this item",
        )
    lag = sources.channel_sync_lag()
    context["sync_lag"] = lag
    if lag is not None:
        context["lag_chart"] = charts.bar_chart(
            title="Oldest change still waiting to reach each channel",
            width=440,
            value_text=duration_text,
            bars=[(str(r.get("name") or r.get("channel")), float(r.get("oldest_pending_seconds") or 0)) for r in lag],
            colors=[charts.PALETTE[1] if (r.get("dead") or 0) else charts.PALETTE[0] for r in lag],
            limit=30,
            limit_label="30 s target",
            empty_message="No channels yet",
        )
    feeds = sources.supplier_feed_freshness()
    context["feeds"] = feeds
    if feeds is not None:
        for r in feeds:  # ages read as durations ("1.6 h"), never as a raw number of minutes
            age = r.get("age_minutes")
            r["age_text"] = duration_text(None if age is None else age * 60)
            r["max_age_text"] = duration_text((r.get("max_age_minutes") or 0) * 60)
        context["feed_chart"] = charts.bar_chart(
            title="Time since each supplier feed last succeeded",
            width=440,
            # A feed that never succeeded is a -1 bar (drawn empty) labelled "never", not "0 s".
            value_text=lambda minutes: "never" if minutes < 0 else duration_text(minutes * 60),
            bars=[
                (
                    str(r.get("name") or r.get("supplier")),
                    -1.0 if r.get("age_minutes") is None else float(r["age_minutes"]),
                )
                for r in feeds
            ],
            colors=["#c62828" if r.get("stale") else "#2e7d32" for r in feeds],
            empty_message="No suppliers yet",
        )
    context["incident_count"], context["incidents"] = selectors.open_incidents(location_ids=seen)
    return render(request, "staff/dashboard.html", context)
