"""Staff pages through the Django test client: access, CSRF, validation, audit, and what the pages show."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.catalog.models import Incident, Location, StockLevel
from apps.catalog.signals import Tier
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.forecasting.models import ForecastSettings, SafetyAudit, SafetyForecast, SafetyOverride
from apps.forecasting.services.demand import slot_of
from apps.staff import sources

LIST = "/staff/safety-stock/"


@pytest.fixture
def editor(django_user_model):
    user = django_user_model.objects.create_user(username="planner", password="pw-planner-1", is_staff=True)
    # A planner for the whole business: sees every location (store staff see their own, test_roles.py).
    user.user_permissions.add(*Permission.objects.filter(codename__in=["change_safetyoverride", "view_all_locations"]))
    return user


@pytest.fixture
def editor_client(editor) -> Client:
    client = Client()
    client.force_login(editor)
    return client


@pytest.fixture
def level(item, store) -> StockLevel:
    return stock(item, store, 12, safety=1)


def _post(client, level, **data):
    body = {"level": level.pk, "action": "set", "value": "4", "reason": "Promo", "valid_until": ""}
    body.update(data)
    return client.post(LIST, body)


@pytest.mark.parametrize("path", ["/staff/", LIST, "/staff/items/HOOD-M/", "/staff/safety-stock/HOOD-M/S1/history/"])
def test_pages_need_a_staff_login(client, django_user_model, level, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/staff/login/")
    client.force_login(django_user_model.objects.create_user(username="shopper", password="pw-shopper-1"))
    assert client.get(path).status_code == 302


def test_login_page_logs_in_and_goes_to_the_dashboard(client, staff_user):
    response = client.post("/staff/login/", {"username": "staffer", "password": "pw-staffer-1", "next": "/staff/"})
    assert response.status_code == 302 and response["Location"] == "/staff/"
    assert client.get("/staff/").status_code == 200


def test_staff_without_the_permission_see_but_cannot_override(client, staff_user, level):
    staff_user.user_permissions.add(Permission.objects.get(codename="view_all_locations"))
    client.force_login(staff_user)
    page = client.get(LIST)
    assert page.status_code == 200 and b"HOOD-M" in page.content and b"override-form" not in page.content
    assert _post(client, level).status_code == 403
    assert StockLevel.objects.get(pk=level.pk).safety == 1


def test_posts_without_csrf_token_are_refused(editor, level):
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    assert _post(client, level).status_code == 403
    assert not SafetyOverride.objects.exists()


def test_an_override_takes_effect_is_audited_and_shown(editor_client, level):
    until = (timezone.localtime() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    response = _post(editor_client, level, value="5", reason="Window display", valid_until=until)

    assert response.status_code == 302 and response["Location"] == LIST
    level.refresh_from_db()
    assert (level.safety, level.atp) == (5, 7)
    audit = SafetyAudit.objects.get()
    assert (audit.who, audit.old_safety, audit.new_safety, audit.reason) == ("planner", 1, 5, "Window display")
    page = editor_client.get(LIST)
    assert "Safety stock of HOOD-M at S1 is now 5 (was 1)" in page.content.decode()
    history = editor_client.get("/staff/safety-stock/HOOD-M/S1/history/").content.decode()
    assert "Window display" in history and "planner" in history and "Override set" in history


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"value": "-3"}, "Safety stock cannot be negative."),
        ({"value": "lots"}, "Enter a whole number of units."),
        ({"value": ""}, "Enter the safety stock in units."),
        ({"reason": "  "}, "Say why: the reason is kept in the history."),
        ({"valid_until": "2020-01-01T10:00"}, "Valid until must be in the future."),
        ({"valid_until": "soon"}, "Enter a date and time."),
    ],
)
def test_bad_input_is_shown_next_to_the_field_and_changes_nothing(editor_client, level, data, message):
    response = _post(editor_client, level, **data)
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body and 'class="field-error"' in body
    assert f'id="level-{level.pk}" data-sku="HOOD-M" data-location="S1" class="has-errors"' in body
    assert StockLevel.objects.get(pk=level.pk).safety == 1
    assert not SafetyOverride.objects.exists() and not SafetyAudit.objects.exists()


def test_unknown_level_is_a_form_error_not_a_crash(editor_client, level):
    response = editor_client.post(LIST, {"level": "999999", "action": "set", "value": "1", "reason": "x"})
    assert response.status_code == 400 and b"no longer exists" in response.content


def test_clearing_an_override_goes_back_to_the_forecast(editor_client, item, store, level):
    SafetyForecast.objects.create(
        item=item, location=store, slot=slot_of(timezone.now()), value=3, computed_at=timezone.now()
    )
    _post(editor_client, level, value="9")
    response = _post(editor_client, level, action="clear", value="", reason="Promo over")
    assert response.status_code == 302
    assert StockLevel.objects.get(pk=level.pk).safety == 3
    assert list(SafetyAudit.objects.order_by("id").values_list("kind", flat=True)) == [
        "override_set",
        "override_cleared",
    ]


def test_list_filters_by_location_and_search(editor_client, item, store, level):
    warehouse = LocationFactory(code="W1", kind=Location.Kind.WAREHOUSE)
    stock(item, warehouse, 3)
    stock(ItemFactory(sku="CAP-RED", name="Red cap"), store, 4)
    by_location = editor_client.get(LIST, {"location": "W1"}).content.decode()
    assert 'data-location="W1"' in by_location and 'data-location="S1"' not in by_location
    by_name = editor_client.get(LIST, {"q": "red"}).content.decode()
    assert 'data-sku="CAP-RED"' in by_name and 'data-sku="HOOD-M"' not in by_name


def test_list_shows_forecast_effective_and_atp(editor_client, item, store, level):
    SafetyForecast.objects.create(
        item=item, location=store, slot=slot_of(timezone.now()), value=2, computed_at=timezone.now()
    )
    body = editor_client.get(LIST).content.decode()
    assert '<td class="num forecast">2 pcs</td>' in body
    assert '<td class="num effective">1 pc</td>' in body
    assert '<td class="num atp">11 pcs</td>' in body


@pytest.mark.parametrize("rows", [3, 30])
def test_list_query_count_does_not_grow_with_rows(editor_client, store, django_assert_num_queries, rows):
    for n in range(rows):
        stock(ItemFactory(sku=f"BULK-{n:02d}"), store, n + 1)
    ForecastSettings.current()
    # session, user, user and group permissions, page count, the rows with forecast and override,
    # forecast settings, the location filter: never one per row.
    with django_assert_num_queries(8):
        response = editor_client.get(LIST)
    assert response.content.decode().count('class="override-form"') == rows


def test_item_page_shows_the_backtest(editor_client, item, store, level):
    body = editor_client.get("/staff/items/HOOD-M/").content.decode()
    assert "Backtest" in body and "<svg" in body and "Trade-off" in body
    assert editor_client.get("/staff/items/NOPE/").status_code == 404


def test_dashboard_charts_stock_and_lists_incidents(editor_client, item, store, level):
    Incident.objects.create(kind=Incident.Kind.OVERSELL, item=item, location=store, shortfall=2)
    body = editor_client.get("/staff/", {"item": "HOOD-M", "days": "7"}).content.decode()
    assert 'class="chart line-chart"' in body and 'data-series="on hand"' in body
    assert "Open incidents" in body and "Oversell" in body
    assert editor_client.get("/staff/", {"item": "NOPE"}).status_code == 200


def test_dashboard_shows_channel_quantities(editor_client, item, store, level):
    from apps.channels.models import Channel, ChannelLocation, Listing

    channel = Channel.objects.create(code="shop1", name="Webshop")
    ChannelLocation.objects.create(channel=channel, location=store)
    Listing.objects.create(channel=channel, channel_sku="HOOD-M-WEB", product=product_of("HOOD", {item: 1}))
    body = editor_client.get("/staff/", {"item": "HOOD-M"}).content.decode()
    assert "HOOD-M-WEB" in body and 'class="chart bar-chart"' in body


def test_dashboard_panels_say_no_data_when_sources_are_missing(editor_client, monkeypatch, level):
    monkeypatch.setattr(sources, "channel_sync_lag", lambda: None)
    monkeypatch.setattr(sources, "supplier_feed_freshness", lambda: None)
    body = editor_client.get("/staff/").content.decode()
    assert "No data yet: channel sync is not reporting." in body
    assert "No data yet: supplier feeds are not reporting." in body


def test_dashboard_charts_sync_lag_and_feed_freshness(editor_client, monkeypatch, level):
    monkeypatch.setattr(
        sources,
        "channel_sync_lag",
        lambda: [
            {
                "channel": "mk",
                "name": "Marketplace",
                "connector": "amazon",
                "pending": 4,
                "oldest_pending_seconds": 42.0,
                "last_push_at": None,
                "dead": 1,
                "pushes": 1234,
                "updates": 2000,
                "throttled": 0,
            },
            {
                "channel": "web",
                "name": "Webshop",
                "connector": "shopify",
                "pending": 0,
                "oldest_pending_seconds": None,
                "last_push_at": timezone.now(),
                "dead": 0,
                "pushes": 56,
                "updates": 80,
                "throttled": 2,
            },
        ],
    )
    monkeypatch.setattr(
        sources,
        "supplier_feed_freshness",
        lambda: [
            {
                "supplier": "acme",
                "name": "Acme",
                "last_success_at": timezone.now(),
                "age_minutes": 95,
                "max_age_minutes": 60,
                "stale": True,
                "failures_in_row": 3,
                "breaker": "open",
            }
        ],
    )
    body = editor_client.get("/staff/").content.decode()
    assert "Marketplace" in body and "Oldest change still waiting" in body
    # Each channel's connector and the pushes the workers counted for it.
    sync = body[body.index('id="sync-lag"') : body.index('id="feed-freshness"')]
    assert '<td class="small connector">amazon</td>' in sync and '<td class="num pushes">1234</td>' in sync
    assert '<td class="num pushes">56</td><td class="num throttled">2</td>' in sync
    assert "stale: selling 0" in body and "breaker open" in body
    # Feed ages read as durations in the table and on the chart's bars, not as raw minutes.
    feeds = body[body.index('id="feed-freshness"') : body.index('id="incidents"')]
    assert '<td class="num">1.6 h</td><td class="num">60 min</td>' in feeds
    assert "Time since each supplier feed last succeeded" in feeds and ">1.6 h</text>" in feeds
    assert "95 min" not in feeds and ">95<" not in feeds


def test_a_feed_that_never_succeeded_reads_never_on_the_chart(editor_client, monkeypatch, level):
    row = {"supplier": "new", "name": "Newcomer", "last_success_at": None, "age_minutes": None}
    monkeypatch.setattr(sources, "supplier_feed_freshness", lambda: [{**row, "max_age_minutes": 90, "stale": True}])
    body = editor_client.get("/staff/").content.decode()
    feeds = body[body.index('id="feed-freshness"') : body.index('id="incidents"')]
    assert ">never</text>" in feeds and ">0 s</text>" not in feeds
    assert '<td class="num">-</td><td class="num">1.5 h</td>' in feeds


def test_a_failing_source_blanks_its_panel_not_the_page():
    assert sources._panel(_failing_source) is None
    assert sources._panel(lambda: iter([{"channel": "web"}])) == [{"channel": "web"}]


def _failing_source():
    raise RuntimeError("boom")


def test_stock_levels_api_shows_the_new_safety_and_atp(editor_client, staff_api, level):
    _post(editor_client, level, value="5", reason="API check")
    response = staff_api.get("/api/v1/stock/levels/", {"item": "HOOD-M", "location": "S1"})
    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert (row["safety"], row["atp"]) == (5, 7)


def test_an_override_enqueues_channel_sync(editor_client, item, store, level, django_capture_on_commit_callbacks):
    from apps.channels.models import Channel, ChannelLocation, Listing, SyncWork

    channel = Channel.objects.create(code="shop1", name="Webshop")
    ChannelLocation.objects.create(channel=channel, location=store)
    listing = Listing.objects.create(channel=channel, channel_sku="HOOD-M-WEB", product=product_of("HOOD", {item: 1}))
    with django_capture_on_commit_callbacks():
        _post(editor_client, level, value="5", reason="sync check")
    work = SyncWork.objects.get(listing=listing)
    assert work.priority == Tier.MANUAL
    assert reverse("staff-safety-stock") == LIST
