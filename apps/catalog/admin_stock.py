"""The merchant's daily stock work in the back office: receipts, adjustments with reasons, transfers.

Every page writes through the catalog's services (``services/receipts.py``, ``adjustments.py``,
``transfers.py``), which book their movements through the stock owner; each document links to
its ledger rows by their reference.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, F, Prefetch, QuerySet, Sum, Value
from django.db.models.functions import Greatest
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from apps.catalog.access import location_ids_for, locations_for, scope_to_locations, sees_all_locations
from apps.catalog.errors import OverDeliveryUnconfirmed
from apps.catalog.models import (
    DOCUMENT_KEY_SCOPE,
    Adjustment,
    Location,
    Movement,
    Receipt,
    ReceiptLine,
    StockLevel,
    Transfer,
    TransferLine,
)
from apps.catalog.services.adjustments import REASON_SIGN, adjustment_record
from apps.catalog.services.receipts import (
    OPEN,
    ReceiptLineSpec,
    receipt_close,
    receipt_create,
    receipt_receive,
    receipt_update,
)
from apps.catalog.services.transfers import (
    TransferLineSpec,
    transfer_cancel,
    transfer_create,
    transfer_receive,
    transfer_ship,
    transfer_update,
)
from apps.catalog.units import quantity_text, totals_by_unit, totals_text, unit_symbol
from apps.core.admin import DefaultChoiceFilter, ServiceAdmin, changed_fields, kept_rows, saved_as
from apps.core.authentication import principal_key_scope
from apps.core.errors import DomainError


class YourLocationsFilter(admin.RelatedFieldListFilter):
    """A list filter by location that offers only the locations the user sees."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> Any:
        ids = location_ids_for(request.user)
        ordering = self.field_admin_ordering(field, request, model_admin)
        limit = {} if ids is None else {"pk__in": ids}
        return field.get_choices(include_blank=False, ordering=ordering, limit_choices_to=limit)


class StockWorkPlaces:
    """Where stock work happens, and the one place the back office scopes pages by location.

    Store staff see and work at the locations assigned to them only (``apps.catalog.access``);
    merchants and viewers see every location. An admin with this mixin:

    - lists only rows at the user's locations: ``location_lookup`` names the row's location, or
      several (a transfer is seen from either end); another location's object page answers 403;
    - offers as location choices the user's active stores and warehouses (a supplier's location
      follows its feed), except in ``open_place_fields`` (a transfer goes to any other place);
    - lets the user change (or delete) an object only where its ``change_lookup`` location (by
      default the first of ``location_lookup``) is theirs: a transfer is the shipper's to edit;
    - filters the list by location with the user's locations only.
    """

    location_lookup: str | tuple[str, ...] = "location"
    change_lookup: str | None = None
    open_place_fields: tuple[str, ...] = ()

    def work_places(self, request: HttpRequest) -> QuerySet[Location]:
        return locations_for(request.user).exclude(kind=Location.Kind.SUPPLIER).filter(is_active=True)

    def works_at(self, request: HttpRequest, obj: Any, lookup: str | None = None) -> bool:
        """Whether the object's location (``lookup``, by default ``change_lookup``) is one of the user's."""
        ids = location_ids_for(request.user)
        if ids is None:
            return True
        lookups = self.location_lookup if isinstance(self.location_lookup, tuple) else (self.location_lookup,)
        place = obj
        for part in (lookup or self.change_lookup or lookups[0]).split("__"):
            place = place if part == "pk" else getattr(place, part, None)
        return place is not None and place.pk in ids

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is Location:
            places = Location.objects.exclude(kind=Location.Kind.SUPPLIER).filter(is_active=True)
            kwargs["queryset"] = places if db_field.name in self.open_place_fields else self.work_places(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return scope_to_locations(queryset, request.user, self.location_lookup)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)  # type: ignore[misc]
        if obj is None and not sees_all_locations(request.user):
            # Not among the user's rows: another location's record is refused, a missing one is missing.
            model = self.model  # type: ignore[attr-defined]
            field = model._meta.pk if from_field is None else model._meta.get_field(from_field)
            try:
                exists = model._default_manager.filter(**{field.name: field.to_python(object_id)}).exists()
            except (ValidationError, ValueError):
                exists = False
            if exists:
                raise PermissionDenied("This belongs to a location you do not work at.")
        return obj

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)  # type: ignore[misc]
        return bool(allowed) and (obj is None or self.works_at(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)  # type: ignore[misc]
        return bool(allowed) and (obj is None or self.works_at(request, obj))

    def get_list_filter(self, request: HttpRequest) -> Any:
        model = self.model  # type: ignore[attr-defined]
        chosen = []
        for entry in super().get_list_filter(request):  # type: ignore[misc]
            if isinstance(entry, str) and get_fields_from_path(model, entry)[-1].related_model is Location:
                entry = (entry, YourLocationsFilter)
            chosen.append(entry)
        return chosen


def ledger_link(reference: str, label: str = "movements") -> str:
    url = reverse("admin:catalog_movement_changelist")
    return format_html('<a class="ledger-link" href="{}?reference__exact={}">{}</a>', url, reference, label)


class LinesFormSet(BaseInlineFormSet):
    """An inline of document lines whose rows go to the document's service in one call."""

    def kept(self) -> list[dict[str, Any]]:
        return kept_rows(self, required="item")

    def clean(self) -> None:
        super().clean()
        if not self.kept():
            raise forms.ValidationError("Add at least one line.")


# --- Receipts ------------------------------------------------------------------------------------


class ReceiptLineInline(admin.TabularInline):
    model = ReceiptLine
    formset = LinesFormSet
    fields = ("item", "expected", "received_shown", "due")
    readonly_fields = ("received_shown", "due")
    autocomplete_fields = ("item",)
    extra = 3
    verbose_name_plural = "Lines (quantities in the item's base unit)"

    def has_change_permission(self, request: HttpRequest, obj: Receipt | None = None) -> bool:
        # Lines are what was announced: fixed once anything arrived.
        return (obj is None or obj.status == Receipt.Status.EXPECTED) and super().has_change_permission(request, obj)

    has_add_permission = has_delete_permission = has_change_permission  # type: ignore[assignment]

    @admin.display(description="Received")
    def received_shown(self, line: ReceiptLine) -> str:
        return quantity_text(line.received, line.item.unit) if line.pk else "0"

    @admin.display(description="Still due")
    def due(self, line: ReceiptLine) -> str:
        if line.pk and line.over_delivered:
            over = quantity_text(line.over_delivered, line.item.unit)
            return format_html('<span class="over-delivered">over-delivered by {}</span>', over)
        return quantity_text(line.due, line.item.unit) if line.pk else "0"


class DueFilter(DefaultChoiceFilter):
    """Open deliveries (something still due) unless the merchant asks for the others."""

    title = "status"
    parameter_name = "due"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Still due"), ("closed", "Received or cancelled"), ("all", "All")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Receipt]) -> QuerySet[Receipt]:
        value = self.current()
        if value == "open":
            return queryset.filter(status__in=OPEN)
        if value == "closed":
            return queryset.exclude(status__in=OPEN)
        return queryset


class ReceiveForm:
    """The receiving page's fields: units arrived per line, a note, the submission key, and the
    confirmation of units above what is still due (the service refuses them unconfirmed)."""

    def __init__(self, lines: list[ReceiptLine], data: Any = None) -> None:
        self.lines, self.data = lines, data
        self.errors: dict[int, str] = {}
        self.quantities: dict[int, int] = {}
        self.over: dict[int, dict[str, Any]] = {}  # lines to confirm, from the service's refusal
        self.submission = ((data or {}).get("submission", "")[:40]) or uuid.uuid4().hex
        self.note = (data or {}).get("note", "")[:500]
        self.over_confirmed: dict[int, int] = {}

    def is_valid(self) -> bool:
        for line in self.lines:
            raw = self.data.get(f"line-{line.pk}", "").strip() or "0"
            try:
                self.quantities[line.pk] = int(raw)
            except ValueError:
                self.errors[line.pk] = "Enter a whole number."
        if self.data.get("confirm_over"):
            # What the clerk saw and confirmed: the excess per line, as the warning showed it.
            for line in self.lines:
                confirmed = self.data.get(f"over-{line.pk}", "")
                if confirmed.isdigit():
                    self.over_confirmed[line.pk] = int(confirmed)
        return not self.errors

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "line": line,
                "value": self.data.get(f"line-{line.pk}", line.due) if self.data else line.due,
                "error": self.errors.get(line.pk),
                "over": self.over.get(line.pk),
            }
            for line in self.lines
        ]


@admin.register(Receipt)
class ReceiptAdmin(StockWorkPlaces, ServiceAdmin):
    """Expected deliveries with what is still due; "Receive" books what arrived, in parts."""

    # Fits a 1400 px window beside the navigation: the name carries the reference.
    list_display = (
        "__str__",
        "supplier",
        "location",
        "expected_on",
        "status",
        "expected_units",
        "due_units",
        "actions_column",
    )
    list_filter = (DueFilter, "location")
    search_fields = ("reference", "supplier", "lines__item__sku")
    list_select_related = ("location",)
    fields = ("location", "supplier", "reference", "expected_on", "note", "status", "created_by", "ledger")
    readonly_fields = ("status", "created_by", "ledger")
    inlines = [ReceiptLineInline]
    ordering = ("expected_on", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Receipt]:
        due = Greatest(Value(0), F("lines__expected") - F("lines__received"))
        return (
            super()
            .get_queryset(request)
            .annotate(expected_sum=Sum("lines__expected"), received_sum=Sum("lines__received"), due_sum=Sum(due))
            # The columns total per unit (pieces and grams never add up): from the lines, in one query.
            .prefetch_related(Prefetch("lines", queryset=ReceiptLine.objects.select_related("item")))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Receipt | None = None) -> tuple[str, ...]:
        if obj is not None and obj.status != Receipt.Status.EXPECTED:
            return (*self.readonly_fields, "location")
        return self.readonly_fields

    @admin.display(description="Expected", ordering="expected_sum")
    def expected_units(self, receipt: Receipt) -> str:
        return totals_text(totals_by_unit((line.item.unit, line.expected) for line in receipt.lines.all()))

    @admin.display(description="Received", ordering="received_sum")
    def received_units(self, receipt: Receipt) -> str:
        return totals_text(totals_by_unit((line.item.unit, line.received) for line in receipt.lines.all()))

    @admin.display(description="Still due", ordering="due_sum")
    def due_units(self, receipt: Receipt) -> str:
        if receipt.status not in OPEN:
            return "0"
        return totals_text(totals_by_unit((line.item.unit, line.due) for line in receipt.lines.all()))

    @admin.display(description="")
    def actions_column(self, receipt: Receipt) -> str:
        if receipt.status in OPEN:
            url = reverse("admin:catalog_receipt_receive", args=[receipt.pk])
            return format_html('<a class="button receive-link" href="{}">Receive</a>', url)
        return ledger_link(receipt.ledger_reference)

    @admin.display(description="Ledger")
    def ledger(self, receipt: Receipt) -> str:
        if receipt.pk is None:
            return "-"
        links = [ledger_link(receipt.ledger_reference, "movements of this receipt")]
        if receipt.status in OPEN:
            url = reverse("admin:catalog_receipt_receive", args=[receipt.pk])
            links.append(format_html('<a class="button receive-link" href="{}">Receive goods</a>', url))
        return format_html(" &nbsp; ".join(["{}"] * len(links)), *links)

    def save_model(self, request: HttpRequest, obj: Receipt, form: Any, change: bool) -> None:
        """Nothing yet: the receipt and its lines are one service call, in ``save_related``."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        (lines_formset,) = formsets
        lines_formset.save(commit=False)  # writes nothing; lists what changed for the history message
        lines = None
        if not change or lines_formset.has_changed():
            lines = [ReceiptLineSpec(item=row["item"], expected=row["expected"]) for row in lines_formset.kept()]
        if change:
            receipt = Receipt.objects.get(pk=form.instance.pk)
            receipt_update(receipt=receipt, lines=lines, **changed_fields(form))
            return
        names = ("location", "supplier", "reference", "expected_on", "note")
        fields = {name: form.cleaned_data[name] for name in names}
        saved_as(form.instance, receipt_create(lines=lines or [], actor=request.user.get_username(), **fields))

    def has_delete_permission(self, request: HttpRequest, obj: Receipt | None = None) -> bool:
        return False  # a receipt is a record of what arrived; "Close" ends one that will not complete

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.receive_view)
        return [path("<int:receipt_id>/receive/", view, name="catalog_receipt_receive"), *super().get_urls()]

    def receive_view(self, request: HttpRequest, receipt_id: int) -> HttpResponse:
        receipt = self.get_object(request, str(receipt_id))
        if receipt is None:
            raise Http404("No such receipt.")
        if not self.has_change_permission(request, receipt):
            raise PermissionDenied
        lines = list(receipt.lines.select_related("item"))
        back = reverse("admin:catalog_receipt_change", args=[receipt.pk])
        form = ReceiveForm(lines, request.POST if request.method == "POST" else None)
        if request.method == "POST":
            if "close" in request.POST:
                return self._act(request, back, lambda: receipt_close(receipt_id=receipt.pk), "closed")
            if form.is_valid():
                try:
                    result = receipt_receive(
                        receipt_id=receipt.pk,
                        quantities=form.quantities,
                        actor=request.user.get_username(),
                        submission=form.submission,
                        note=form.note,
                        over_confirmed=form.over_confirmed,
                    )
                except OverDeliveryUnconfirmed as err:
                    # Nothing was booked: the page comes back with the warnings and asks to confirm them.
                    form.over = {row["line"]: row for row in err.data["lines"]}
                    receipt.refresh_from_db()
                    form.lines = list(receipt.lines.select_related("item"))
                except DomainError as err:
                    self.message_user(request, err.detail, messages.ERROR)
                    return HttpResponseRedirect(request.get_full_path())
                else:
                    arrived = totals_by_unit((line.item.unit, form.quantities.get(line.pk, 0)) for line in form.lines)
                    over = totals_by_unit(
                        (line.item.unit, max(0, form.quantities.get(line.pk, 0) - line.due)) for line in form.lines
                    )
                    return self._report(request, back, result, "received", arrived=arrived, over=over)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Receive goods: {receipt}",
            "receipt": receipt,
            "form": form,
            "lines": form.rows(),
            "submission": form.submission,
            "ledger": ledger_link(receipt.ledger_reference, "movements booked so far"),
        }
        return TemplateResponse(request, "admin/catalog/receipt/receive.html", context)

    def _act(self, request: HttpRequest, back: str, act: Any, done: str) -> HttpResponse:
        try:
            result = act()
        except DomainError as err:
            self.message_user(request, err.detail, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        return self._report(request, back, result, done)

    def _report(
        self,
        request: HttpRequest,
        back: str,
        result: Any,
        done: str,
        arrived: dict[str, int] | None = None,
        over: dict[str, int] | None = None,
    ) -> HttpResponse:
        units = getattr(result, "units", None)
        if getattr(result, "replayed", False):
            self.message_user(request, "This receiving was already booked; nothing was booked twice.", messages.INFO)
        elif units is not None:
            status = result.receipt.get_status_display().lower()
            what = totals_text(arrived) if arrived else f"{units} units"
            beyond = f" ({totals_text(over or {})} more than was due)" if result.over_delivered else ""
            self.message_user(request, f"Received {what}{beyond}; the receipt is now {status}.", messages.SUCCESS)
        else:
            self.message_user(request, f"{result} {done}.", messages.SUCCESS)
        return HttpResponseRedirect(back)


# --- Adjustments ---------------------------------------------------------------------------------


class AdjustmentForm(forms.ModelForm):
    key = forms.CharField(widget=forms.HiddenInput, initial=lambda: uuid.uuid4().hex, max_length=40)

    class Meta:
        model = Adjustment
        fields = ("location", "item", "reason", "quantity", "note")
        help_texts = {
            "quantity": "Units. Damaged and lost remove them, found adds them; a correction is signed (+ or -).",
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        reason, quantity = data.get("reason"), data.get("quantity")
        if reason and quantity is not None:
            sign = REASON_SIGN[Adjustment.Reason(reason)]
            # The merchant types how many; the reason says which way they go.
            data["quantity"] = sign * abs(quantity) if sign else quantity
            if data["quantity"] == 0:
                self.add_error("quantity", "Enter a quantity other than zero.")
        return data


@admin.register(Adjustment)
class AdjustmentAdmin(StockWorkPlaces, ServiceAdmin):
    """Adjustments with their reason; the list totals the filtered rows per reason."""

    form = AdjustmentForm
    list_display = ("created_at", "reason", "item", "location", "quantity_shown", "ledger", "actor", "note")
    list_filter = ("reason", "location", "created_at")
    list_select_related = ("item", "location", "movement")
    search_fields = ("item__sku", "item__name", "location__code", "note", "actor")
    autocomplete_fields = ("item",)
    date_hierarchy = "created_at"

    def has_change_permission(self, request: HttpRequest, obj: Adjustment | None = None) -> bool:
        return False  # booked on the ledger; a mistake is undone by a correction

    def has_delete_permission(self, request: HttpRequest, obj: Adjustment | None = None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj: Adjustment | None = None) -> Any:
        if obj is None:
            return ("location", "item", "reason", "quantity", "note", "key")
        return ("created_at", "reason", "item", "location", "quantity", "note", "actor", "ledger")

    @admin.display(description="Quantity", ordering="quantity")
    def quantity_shown(self, adjustment: Adjustment) -> str:
        return quantity_text(adjustment.quantity, adjustment.item.unit, signed=True)

    @admin.display(description="Ledger")
    def ledger(self, adjustment: Adjustment) -> str:
        return ledger_link(adjustment.movement.reference, "movement")

    def save_model(self, request: HttpRequest, obj: Adjustment, form: Any, change: bool) -> None:
        data = form.cleaned_data
        saved = adjustment_record(
            location=data["location"],
            item=data["item"],
            quantity=data["quantity"],
            reason=data["reason"],
            note=data.get("note", ""),
            actor=request.user.get_username(),
            idempotency_key=data["key"],
            key_scope=principal_key_scope(request.user),
        )
        saved_as(obj, saved)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if not isinstance(response, TemplateResponse) or response.context_data is None:
            return response  # a redirect (bad filter) or an error page
        changelist = response.context_data["cl"]
        rows = (
            changelist.queryset.order_by()
            .values("reason", "item__unit")
            .annotate(count=Count("id"), units=Sum("quantity"))
        )
        counts: dict[str, int] = {}
        per_unit: dict[str, dict[str, int]] = {}
        for row in rows:  # one row per reason and unit: pieces and grams are totalled apart
            counts[row["reason"]] = counts.get(row["reason"], 0) + row["count"]
            per_unit.setdefault(row["reason"], {})[row["item__unit"]] = int(row["units"] or 0)
        response.context_data["reason_totals"] = [
            (label, counts.get(value, 0), totals_text(per_unit.get(value, {})), value)
            for value, label in Adjustment.Reason.choices
        ]
        return response


# --- Transfers -----------------------------------------------------------------------------------


class TransferLineInline(admin.TabularInline):
    model = TransferLine
    formset = LinesFormSet
    fields = ("item", "quantity")
    shipped_fields = ("item", "quantity", "arrived", "short")
    autocomplete_fields = ("item",)
    extra = 3
    verbose_name_plural = "Lines (quantities in the item's base unit)"

    def has_change_permission(self, request: HttpRequest, obj: Transfer | None = None) -> bool:
        return (obj is None or obj.status == Transfer.Status.DRAFT) and super().has_change_permission(request, obj)

    has_add_permission = has_delete_permission = has_change_permission  # type: ignore[assignment]

    def get_fields(self, request: HttpRequest, obj: Transfer | None = None) -> Any:
        return self.fields if obj is None or obj.status == Transfer.Status.DRAFT else self.shipped_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Transfer | None = None) -> Any:
        return () if obj is None or obj.status == Transfer.Status.DRAFT else self.shipped_fields

    @admin.display(description="Arrived")
    def arrived(self, line: TransferLine) -> str:
        return quantity_text(line.received, line.item.unit)

    @admin.display(description="Short (still in transit)")
    def short(self, line: TransferLine) -> str:
        return quantity_text(line.in_transit, line.item.unit) if line.in_transit else "-"


def _receiving_booked(transfer: Transfer, submission: str) -> bool:
    """Whether a receiving with this submission key was booked already (its ledger rows carry the key)."""
    if not submission:
        return False
    prefix = f"{transfer.ledger_reference}:{Movement.Kind.TRANSFER_IN}:{submission[:40]}:"
    return Movement.objects.filter(key_scope=DOCUMENT_KEY_SCOPE, idempotency_key__startswith=prefix).exists()


class CancelInTransitForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=Transfer.CancelOutcome.choices,
        widget=forms.RadioSelect,
        label="What became of the goods in transit?",
        error_messages={"required": "Choose whether the goods came back or were lost."},
    )


@admin.register(Transfer)
class TransferAdmin(StockWorkPlaces, ServiceAdmin):
    """Draft -> shipped (out of the source, in transit) -> received (into the destination)."""

    list_display = ("__str__", "reference", "source", "destination", "status", "units", "shipped_at", "ledger")
    list_filter = ("status", "source", "destination")
    list_select_related = ("source", "destination")
    search_fields = ("reference", "lines__item__sku")
    fields = ("source", "destination", "reference", "status", "shipped_at", "received_at", "created_by", "ledger")
    readonly_fields = ("status", "shipped_at", "received_at", "created_by", "ledger")
    inlines = [TransferLineInline]
    change_form_template = "admin/catalog/transfer/change_form.html"
    # Store staff see transfers from or to their locations; they draft and ship from their own
    # source (to any place) and receive at their own destination.
    location_lookup = ("source", "destination")
    change_lookup = "source"
    open_place_fields = ("destination",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Transfer]:
        lines = Prefetch("lines", queryset=TransferLine.objects.select_related("item"))
        return super().get_queryset(request).annotate(unit_sum=Sum("lines__quantity")).prefetch_related(lines)

    def step_allowed(self, request: HttpRequest, transfer: Transfer, step: str) -> bool:
        """Ship and cancel happen at the source, receive at the destination."""
        place = "destination" if step == "receive" else "source"
        return self.has_change_permission(request) and self.works_at(request, transfer, place)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Transfer | None = None,
    ) -> HttpResponse:
        if obj is not None:  # the buttons shown are the steps this user may take
            steps = ("ship", "receive", "cancel")
            context["steps_allowed"] = {step: self.step_allowed(request, obj, step) for step in steps}
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Transfer | None = None) -> tuple[str, ...]:
        if obj is not None and obj.status != Transfer.Status.DRAFT:
            return (*self.readonly_fields, "source", "destination", "reference")
        return self.readonly_fields

    @admin.display(description="Quantity", ordering="unit_sum")
    def units(self, transfer: Transfer) -> str:
        return totals_text(totals_by_unit((line.item.unit, line.quantity) for line in transfer.lines.all()))

    @admin.display(description="Ledger")
    def ledger(self, transfer: Transfer) -> str:
        return ledger_link(transfer.ledger_reference) if transfer.pk else "-"

    def has_delete_permission(self, request: HttpRequest, obj: Transfer | None = None) -> bool:
        return False  # a draft is cancelled, a shipped transfer is a record

    def save_model(self, request: HttpRequest, obj: Transfer, form: Any, change: bool) -> None:
        """Nothing yet: the transfer and its lines are one service call, in ``save_related``."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        (lines_formset,) = formsets
        lines_formset.save(commit=False)
        lines = None
        if not change or lines_formset.has_changed():
            lines = [TransferLineSpec(item=row["item"], quantity=row["quantity"]) for row in lines_formset.kept()]
        if change:
            transfer = Transfer.objects.get(pk=form.instance.pk)
            transfer_update(transfer=transfer, lines=lines, **changed_fields(form))
            return
        fields = {name: form.cleaned_data[name] for name in ("source", "destination", "reference")}
        saved_as(form.instance, transfer_create(lines=lines or [], actor=request.user.get_username(), **fields))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.step_view)
        return [path("<int:transfer_id>/step/<str:step>/", view, name="catalog_transfer_step"), *super().get_urls()]

    def step_view(self, request: HttpRequest, transfer_id: int, step: str) -> HttpResponse:
        transfer = self.get_object(request, str(transfer_id))
        if transfer is None:
            raise Http404("No such transfer.")
        back = reverse("admin:catalog_transfer_change", args=[transfer.pk])
        if step == "cancel" and transfer.status == Transfer.Status.IN_TRANSIT:
            return self.cancel_in_transit_view(request, transfer, back)
        if step not in {"ship", "receive", "cancel"} or (request.method != "POST" and step == "cancel"):
            return HttpResponseRedirect(back)
        if not self.step_allowed(request, transfer, step):
            raise PermissionDenied("Goods leave (or a draft is cancelled) at the source and arrive at the destination.")
        if step in {"ship", "receive"}:
            return self.confirm_step_view(request, transfer, step, back)
        try:
            transfer_cancel(transfer_id=transfer.pk, actor=request.user.get_username(), outcome="")
        except DomainError as err:
            self.message_user(request, err.detail, messages.ERROR)
            return HttpResponseRedirect(back)
        self.message_user(request, f"{transfer} cancelled.", messages.SUCCESS)
        return HttpResponseRedirect(back)

    def confirm_step_view(self, request: HttpRequest, transfer: Transfer, step: str, back: str) -> HttpResponse:
        """Ship and receive ask first: shipping shows what leaves; receiving asks what arrived, line by line."""
        wanted = Transfer.Status.DRAFT if step == "ship" else Transfer.Status.IN_TRANSIT
        sent_again = step == "receive" and _receiving_booked(transfer, request.POST.get("submission", ""))
        if transfer.status != wanted and not sent_again:
            status = transfer.get_status_display().lower()
            self.message_user(request, f"{transfer} is {status}: there is nothing to {step}.", messages.INFO)
            return HttpResponseRedirect(back)
        lines = list(transfer.lines.select_related("item"))
        data = request.POST if request.method == "POST" and request.POST.get("confirm") else None
        errors: list[str] = []
        quantities: dict[int, int] = {}
        if step == "receive" and data is not None and _receiving_booked(transfer, data.get("submission", "")):
            # The same form sent again (a double click, a reload): what it typed was booked once.
            self.message_user(request, "This receiving was already booked; nothing was booked twice.", messages.INFO)
            return HttpResponseRedirect(back)
        if step == "receive" and data is not None:
            for line in lines:
                raw = data.get(f"line-{line.pk}", "").strip() or "0"
                if not raw.isdigit():
                    errors.append(f"{line.item.sku}: enter a whole number of {unit_symbol(line.item.unit)}.")
                elif int(raw) > line.in_transit:
                    most = quantity_text(line.in_transit, line.item.unit)
                    errors.append(f"{line.item.sku}: at most {most} is in transit.")
                else:
                    quantities[line.pk] = int(raw)
            if not errors and not any(quantities.values()):
                errors.append("Nothing arrived: type what you count, or come back when it is there.")
        if data is not None and not errors:
            actor = request.user.get_username()
            try:
                if step == "ship":
                    transfer_ship(transfer_id=transfer.pk, actor=actor)
                else:
                    submission = (data.get("submission", "") or uuid.uuid4().hex)[:40]
                    transfer_receive(transfer_id=transfer.pk, actor=actor, quantities=quantities, submission=submission)
            except DomainError as err:
                self.message_user(request, err.detail, messages.ERROR)
                return HttpResponseRedirect(back)
            if step == "ship":
                moved = totals_text(totals_by_unit((line.item.unit, line.quantity) for line in lines))
                self.message_user(request, f"{transfer} shipped: {moved} in transit.", messages.SUCCESS)
            else:
                self.message_user(request, self._received_message(transfer, lines, quantities), messages.SUCCESS)
            return HttpResponseRedirect(back)
        rows: list[dict[str, Any]] = []
        if step == "ship":
            free = {
                level.item_id: level.offline_usable
                for level in StockLevel.objects.filter(location=transfer.source, item__in=[ln.item_id for ln in lines])
            }
            for line in lines:
                rows.append({"line": line, "free": free.get(line.item_id, 0)})
                rows[-1]["short"] = not transfer.source.allow_negative and rows[-1]["free"] < line.quantity
        else:
            for line in lines:
                if line.in_transit:
                    value = data.get(f"line-{line.pk}", line.in_transit) if data is not None else line.in_transit
                    rows.append({"line": line, "value": value})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{'Ship' if step == 'ship' else 'Receive'} {transfer}",
            "transfer": transfer,
            "step": step,
            "rows": rows,
            "errors": errors,
            "total": totals_text(totals_by_unit((line.item.unit, line.quantity) for line in lines)),
            "submission": (data.get("submission") if data is not None else "") or uuid.uuid4().hex,
            "back": back,
        }
        return TemplateResponse(request, "admin/catalog/transfer/step.html", context)

    @staticmethod
    def _received_message(transfer: Transfer, lines: list[TransferLine], quantities: dict[int, int]) -> str:
        """What arrived, and what is short against what was shipped (it stays in transit)."""
        arrived = totals_text(totals_by_unit((line.item.unit, quantities.get(line.pk, 0)) for line in lines))
        short = [
            f"{line.item.sku} short by {quantity_text(line.in_transit - quantities.get(line.pk, 0), line.item.unit)}"
            for line in lines
            if line.in_transit - quantities.get(line.pk, 0) > 0
        ]
        if not short:
            return f"{transfer} received: {arrived} booked into {transfer.destination.code}."
        return (
            f"{transfer}: {arrived} booked into {transfer.destination.code}; {', '.join(short)} "
            "(still in transit: receive it when it comes, or cancel in transit as returned or lost)."
        )

    def cancel_in_transit_view(self, request: HttpRequest, transfer: Transfer, back: str) -> HttpResponse:
        """Confirm first: say what became of the goods on the road, then cancel through the service."""
        if not self.has_change_permission(request, transfer):
            raise PermissionDenied
        form = CancelInTransitForm(request.POST if request.method == "POST" else None)
        on_the_road = [line for line in transfer.lines.select_related("item") if line.in_transit]
        settled = totals_text(totals_by_unit((line.item.unit, line.in_transit) for line in on_the_road))
        if request.method == "POST" and form.is_valid():
            outcome = form.cleaned_data["outcome"]
            try:
                result = transfer_cancel(transfer_id=transfer.pk, actor=request.user.get_username(), outcome=outcome)
            except DomainError as err:
                self.message_user(request, err.detail, messages.ERROR)
                return HttpResponseRedirect(back)
            if result.replayed:
                self.message_user(
                    request, f"{transfer} was already cancelled; nothing was booked twice.", messages.INFO
                )
            elif outcome == Transfer.CancelOutcome.RETURNED:
                self.message_user(
                    request,
                    f"{transfer} cancelled: {settled} booked back into {transfer.source.code}.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{transfer} cancelled: {settled} written off as lost at {transfer.source.code}.",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(back)
        lines = [line for line in transfer.lines.select_related("item") if line.in_transit]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Cancel {transfer} in transit",
            "transfer": transfer,
            "form": form,
            "lines": lines,
            "units": totals_text(totals_by_unit((line.item.unit, line.in_transit) for line in lines)),
            "received_part": any(line.received for line in transfer.lines.all()),
            "back": back,
        }
        return TemplateResponse(request, "admin/catalog/transfer/cancel_in_transit.html", context)
