"""The merchant's back office for stock: catalog, levels with ATP, the read-only ledger, incidents."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, F, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.catalog.access import location_condition
from apps.catalog.admin_stock import StockWorkPlaces
from apps.catalog.models import Incident, Item, Location, Movement, Product, ProductComponent, StockLevel
from apps.catalog.resources import CatalogImportExportMixin, catalog_resource
from apps.catalog.services.catalog import (
    ComponentSpec,
    catalog_record_delete,
    item_create,
    item_update,
    location_create,
    location_update,
    product_create,
    product_update,
)
from apps.catalog.services.incidents import incident_resolve
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.stock.atp import atp_expression
from apps.catalog.units import quantity_text
from apps.core.admin import DefaultChoiceFilter, ReadOnlyAdmin, ServiceAdmin, changed_fields, kept_rows, saved_as


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LevelInline(StockWorkPlaces, ReadOnlyInline):
    """Where an item is, with what can still be promised (at the locations the user sees)."""

    model = StockLevel
    fk_name = "item"
    fields = ("location", "on_hand_shown", "reserved_shown", "safety_shown", "atp_display", "updated_at")
    readonly_fields = fields
    verbose_name_plural = "Stock by location (changed only through movements)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[StockLevel]:
        return super().get_queryset(request).select_related("location", "item").annotate(atp_now=atp_expression())

    @admin.display(description="On hand")
    def on_hand_shown(self, level: StockLevel) -> str:
        return quantity_text(level.on_hand, level.item.unit)

    @admin.display(description="Reserved")
    def reserved_shown(self, level: StockLevel) -> str:
        return quantity_text(level.reserved, level.item.unit)

    @admin.display(description="Safety stock")
    def safety_shown(self, level: StockLevel) -> str:
        return quantity_text(level.safety, level.item.unit)

    @admin.display(description="ATP (sellable now)")
    def atp_display(self, level: StockLevel) -> str:
        return quantity_text(getattr(level, "atp_now", level.atp), level.item.unit)


class LocationLevelInline(LevelInline):
    fk_name = "location"
    fields = ("item", "on_hand_shown", "reserved_shown", "safety_shown", "atp_display", "updated_at")
    readonly_fields = fields
    verbose_name_plural = "Stock here (changed only through movements)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[StockLevel]:
        return super().get_queryset(request).select_related("item")


@admin.register(Location)
class LocationAdmin(StockWorkPlaces, CatalogImportExportMixin, ServiceAdmin):
    resource_classes = [catalog_resource("locations")]
    location_lookup = "pk"  # store staff see their own locations only
    list_display = ("code", "name", "kind", "allow_negative", "stock_valid_until", "is_active", "level_count")
    list_filter = ("kind", "is_active", "allow_negative")
    search_fields = ("code", "name")
    # How long a supplier's stock is good for follows its feeds (suppliers' services set it).
    readonly_fields = ("stock_valid_until", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Location]:
        return super().get_queryset(request).annotate(level_total=Count("levels"))

    def get_readonly_fields(self, request: HttpRequest, obj: Location | None = None) -> tuple[str, ...]:
        # Codes are what channels and suppliers refer to; negative stock is copied to each level.
        return (*self.readonly_fields, "code", "allow_negative") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Location, form: Any, change: bool) -> None:
        if change:
            location_update(location=Location.objects.get(pk=obj.pk), **changed_fields(form))
            return
        fields = ("code", "name", "kind", "allow_negative", "is_active")
        saved_as(obj, location_create(**{name: form.cleaned_data[name] for name in fields}))

    def delete_model(self, request: HttpRequest, obj: Location) -> None:
        catalog_record_delete(instance=obj, label=f"Location {obj}")

    @admin.display(description="Levels", ordering="level_total")
    def level_count(self, location: Location) -> int:
        return getattr(location, "level_total", 0)


@admin.register(Item)
class ItemAdmin(CatalogImportExportMixin, ServiceAdmin):
    resource_classes = [catalog_resource("items")]
    list_display = ("sku", "name", "unit", "on_hand_total", "atp_total", "is_active")
    list_filter = ("unit", "is_active")
    search_fields = ("sku", "name")
    readonly_fields = ("created_at",)
    inlines = [LevelInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Item]:
        from django.db.models import Sum

        # Totals over the locations the user sees: store staff's own stock, a merchant's everywhere.
        seen = location_condition(request.user, "levels__location")
        return (
            super()
            .get_queryset(request)
            .annotate(
                on_hand_sum=Sum("levels__on_hand", filter=seen),
                atp_sum=Sum(atp_expression("levels__"), filter=seen),
            )
            .order_by("sku")  # an aggregate drops Meta.ordering; the autocomplete pages this queryset
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Item | None = None) -> tuple[str, ...]:
        return ("created_at", "sku", "unit") if obj else ("created_at",)

    def save_model(self, request: HttpRequest, obj: Item, form: Any, change: bool) -> None:
        if change:
            item_update(item=Item.objects.get(pk=obj.pk), **changed_fields(form))
            return
        data = dict(form.cleaned_data)
        saved_as(obj, item_create(sku=data.pop("sku"), name=data.pop("name"), unit=data.pop("unit"), **data))

    def delete_model(self, request: HttpRequest, obj: Item) -> None:
        catalog_record_delete(instance=obj, label=f"Item {obj}")

    @admin.display(description="On hand, your locations", ordering="on_hand_sum")
    def on_hand_total(self, item: Item) -> str:
        return quantity_text(getattr(item, "on_hand_sum", None) or 0, item.unit)

    @admin.display(description="ATP (sellable now), your locations", ordering="atp_sum")
    def atp_total(self, item: Item) -> str:
        return quantity_text(getattr(item, "atp_sum", None) or 0, item.unit)


class ComponentFormSet(BaseInlineFormSet):
    """The same make-up rules as the API: a standard product is one item x 1, a bundle two or more items..."""

    def components(self) -> list[ComponentSpec]:
        return [ComponentSpec(item=row["item"], quantity=row["quantity"]) for row in kept_rows(self, required="item")]

    def clean(self) -> None:
        super().clean()
        from apps.catalog.api.serializers import _kind_problem

        rows = [{"item": c.item, "quantity": c.quantity} for c in self.components()]
        if not rows:
            raise ValidationError("A product needs at least one component.")
        problem = _kind_problem(self.instance.kind, rows)
        if problem:
            raise ValidationError(problem)


class ComponentInline(admin.TabularInline):
    model = ProductComponent
    formset = ComponentFormSet
    extra = 1
    autocomplete_fields = ("item",)
    verbose_name_plural = "Components (quantity in the item's base unit)"


@admin.register(Product)
class ProductAdmin(CatalogImportExportMixin, ServiceAdmin):
    resource_classes = [catalog_resource("products")]
    list_display = ("code", "name", "kind", "make_up", "is_active")
    list_filter = ("kind", "is_active")
    search_fields = ("code", "name", "components__item__sku")
    readonly_fields = ("created_at",)
    inlines = [ComponentInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return super().get_queryset(request).prefetch_related("components__item")

    @admin.display(description="Made of")
    def make_up(self, product: Product) -> str:
        return ", ".join(f"{c.quantity} x {c.item.sku}" for c in product.components.all())

    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        """Nothing yet: a product and its make-up are one service call, in ``save_related``."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        (make_up,) = [formset for formset in formsets if isinstance(formset, ComponentFormSet)]
        make_up.save(commit=False)  # writes nothing; lists what changed for the history message
        components = make_up.components()
        if change:
            product = Product.objects.get(pk=form.instance.pk)
            product_update(product=product, components=components, **changed_fields(form))
            return
        fields = {name: form.cleaned_data[name] for name in ("code", "name", "kind", "is_active")}
        saved_as(form.instance, product_create(components=components, **fields))

    def delete_model(self, request: HttpRequest, obj: Product) -> None:
        catalog_record_delete(instance=obj, label=f"Product {obj}")


class StaleFilter(admin.SimpleListFilter):
    title = "availability"
    parameter_name = "availability"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("none", "Nothing to promise (ATP 0)"),
            ("oversold", "Reserved above on hand"),
            ("negative", "Below zero"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[StockLevel]) -> QuerySet[StockLevel]:
        if self.value() == "none":
            return queryset.filter(atp_now=0)  # type: ignore[misc]  # annotated in get_queryset
        if self.value() == "oversold":
            return queryset.filter(reserved__gt=F("on_hand"))
        if self.value() == "negative":
            return queryset.filter(on_hand__lt=0)
        return queryset


@admin.register(StockLevel)
class StockLevelAdmin(StockWorkPlaces, ReadOnlyAdmin):
    """Levels change only through movements (and appear with their first one); checking them is an action."""

    list_display = (
        "item",
        "location",
        "on_hand_shown",
        "reserved_shown",
        "safety_shown",
        "atp_display",
        "updated_at",
        "ledger_link",
    )
    list_select_related = ("item", "location")
    list_filter = (StaleFilter, "location__kind", "location")
    search_fields = ("item__sku", "item__name", "location__code")
    readonly_fields = ("item", "location", "on_hand", "reserved", "safety", "allow_negative", "updated_at")
    actions = ["reconcile_selected", "reconcile_everything"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[StockLevel]:
        return super().get_queryset(request).annotate(atp_now=atp_expression())

    @admin.display(description="On hand", ordering="on_hand")
    def on_hand_shown(self, level: StockLevel) -> str:
        return quantity_text(level.on_hand, level.item.unit)

    @admin.display(description="Reserved", ordering="reserved")
    def reserved_shown(self, level: StockLevel) -> str:
        return quantity_text(level.reserved, level.item.unit)

    @admin.display(description="Safety stock", ordering="safety")
    def safety_shown(self, level: StockLevel) -> str:
        return quantity_text(level.safety, level.item.unit)

    @admin.display(description="ATP (sellable now)", ordering="atp_now")
    def atp_display(self, level: StockLevel) -> str:
        return quantity_text(getattr(level, "atp_now", level.atp), level.item.unit)

    @admin.display(description="Ledger")
    def ledger_link(self, level: StockLevel) -> str:
        url = reverse("admin:catalog_movement_changelist")
        return format_html(
            '<a href="{}?item__id__exact={}&location__id__exact={}">movements</a>',
            url,
            level.item_id,
            level.location_id,
        )

    @admin.action(description="Check the selected levels against the ledger")
    def reconcile_selected(self, request: HttpRequest, queryset: QuerySet[StockLevel]) -> None:
        report = ledger_reconcile(pairs=list(queryset.values_list("item_id", "location_id")))
        self._report(request, report)

    @admin.action(description="Check every level against the ledger (nightly job, now)")
    def reconcile_everything(self, request: HttpRequest, queryset: QuerySet[StockLevel]) -> None:
        self._report(request, ledger_reconcile())

    def _report(self, request: HttpRequest, report: Any) -> None:
        head, *drifts = report.lines()
        self.message_user(request, head, messages.SUCCESS if report.ok else messages.ERROR)
        for line in drifts[:20]:
            self.message_user(request, line.strip(), messages.WARNING)


@admin.register(Movement)
class MovementAdmin(StockWorkPlaces, ReadOnlyAdmin):
    """The ledger: append-only, so nothing here can be added, changed or deleted."""

    list_display = ("created_at", "kind", "item", "location", "on_hand_shown", "reserved_shown", "reference", "actor")
    list_select_related = ("item", "location")
    list_filter = ("kind", "location", "created_at")
    search_fields = ("item__sku", "location__code", "reference", "idempotency_key", "actor", "note")
    date_hierarchy = "created_at"
    show_full_result_count = False  # counting a large ledger on every page is slow

    @admin.display(description="On hand", ordering="on_hand_delta")
    def on_hand_shown(self, movement: Movement) -> str:
        return quantity_text(movement.on_hand_delta, movement.item.unit, signed=True) if movement.on_hand_delta else "-"

    @admin.display(description="Reserved", ordering="reserved_delta")
    def reserved_shown(self, movement: Movement) -> str:
        delta = movement.reserved_delta
        return quantity_text(delta, movement.item.unit, signed=True) if delta else "-"


class OpenFirstFilter(DefaultChoiceFilter):
    """Open incidents unless staff ask for the others."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("resolved", "Resolved"), ("all", "All")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Incident]) -> QuerySet[Incident]:
        value = self.current()
        return queryset if value == "all" else queryset.filter(status=value)


def _admin_link(url_name: str, pk: Any, text: str) -> str:
    return format_html('<a href="{}">{}</a>', reverse(url_name, args=[pk]), text)


def incident_reference_link(reference: str) -> str:
    """The record an incident's reference names, as a link to its admin page (order, movement, channel order)."""
    kind, _, rest = reference.partition(":")
    if kind == "order" and rest.isdigit():
        return _admin_link("admin:orders_order_change", rest, f"Order {rest}")
    if kind == "movement" and rest.isdigit():
        return _admin_link("admin:catalog_movement_change", rest, f"Movement {rest}")
    if kind == "channel" and ":" in rest:  # an import refused before any order was recorded
        channel, _, external_id = rest.partition(":")
        url = reverse("admin:orders_order_changelist") + "?" + urlencode({"q": f"{channel} {external_id}"})
        return format_html('<a href="{}">Orders {} of {}</a>', url, external_id, channel)
    return reference or "-"


@admin.register(Incident)
class IncidentAdmin(StockWorkPlaces, ServiceAdmin):
    """A work queue: open incidents first, newest first; resolve with a note, or with the Resolve button."""

    list_display = ("id", "opened_at", "kind", "status", "item_link", "location_link", "shortfall_shown",
                    "reference_link", "summary")  # fmt: skip
    list_display_links = ("id", "opened_at")
    list_select_related = ("item", "location")
    list_filter = (OpenFirstFilter, "kind", "location")
    search_fields = ("reference", "detail", "item__sku", "location__code")
    ordering = ("status", "-opened_at")
    actions = ["resolve"]
    change_form_template = "admin/catalog/incident/change_form.html"
    fields = (
        "kind",
        "status",
        "item_link",
        "location_link",
        "shortfall",
        "reference_link",
        "detail",
        "opened_at",
        "resolved_at",
        "resolved_by",
        "resolution_note",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Incident | None = None) -> tuple[str, ...]:
        if obj is not None and obj.status == Incident.Status.OPEN:
            return self.fields[:-1]  # staff can write the resolution note, then use "Resolve"
        return self.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # incidents are opened by the system

    def has_delete_permission(self, request: HttpRequest, obj: Incident | None = None) -> bool:
        return False

    @admin.display(description="Short", ordering="shortfall")
    def shortfall_shown(self, incident: Incident) -> str:
        if not incident.shortfall:
            return "-"
        return quantity_text(incident.shortfall, incident.item.unit) if incident.item else str(incident.shortfall)

    @admin.display(description="Item", ordering="item__sku")
    def item_link(self, incident: Incident) -> str:
        if incident.item is None:
            return "-"
        return _admin_link("admin:catalog_item_change", incident.item_id, incident.item.sku)

    @admin.display(description="Location", ordering="location__code")
    def location_link(self, incident: Incident) -> str:
        if incident.location is None:
            return "-"
        return _admin_link("admin:catalog_location_change", incident.location_id, incident.location.code)

    @admin.display(description="Order or record", ordering="reference")
    def reference_link(self, incident: Incident) -> str:
        return incident_reference_link(incident.reference)

    @admin.display(description="Detail")
    def summary(self, incident: Incident) -> str:
        return incident.detail[:60] + ("…" if len(incident.detail) > 60 else "")

    def save_model(self, request: HttpRequest, obj: Incident, form: Any, change: bool) -> None:
        # Only the note is editable; "Resolve", or saving an open incident with a note, resolves it.
        note = form.cleaned_data.get("resolution_note", "")
        if obj.status == Incident.Status.OPEN and (note or "_resolve" in request.POST):
            incident_resolve(incident=obj, resolved_by=request.user.get_username(), note=note)
            self.message_user(request, f"{obj} resolved.", messages.SUCCESS)

    @admin.action(description="Resolve selected incidents")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        resolved = 0
        for incident in queryset.filter(status=Incident.Status.OPEN):
            incident_resolve(incident=incident, resolved_by=request.user.get_username(), note="Resolved from the queue")
            resolved += 1
        self.message_user(request, f"Resolved {resolved} incident(s).", messages.SUCCESS)


import apps.catalog.admin_count  # noqa: E402, F401  (stock counts)
from apps.catalog import admin_stock  # noqa: E402, F401  (receipts, adjustments, transfers)
