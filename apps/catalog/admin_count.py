"""Stock counts in the back office: make a sheet for a location, count (typed in or a CSV file), preview, apply.

Every write goes through ``services/counts.py``, which books the differences through the stock
owner; an applied count links to its ledger rows by their reference (``stock_count:<id>``).
"""

from __future__ import annotations

import io
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.catalog.admin_stock import StockWorkPlaces, ledger_link
from apps.catalog.errors import CountFileRejected
from apps.catalog.models import Item, StockCount, StockCountLine
from apps.catalog.services.counts import (
    EDITABLE,
    MAX_FILE_BYTES,
    CountOutcome,
    stock_count_add_items,
    stock_count_apply,
    stock_count_cancel,
    stock_count_create,
    stock_count_preview,
    stock_count_record,
    stock_count_submit,
    stock_count_update,
    stock_count_upload,
)
from apps.catalog.services.movements import MAX_QUANTITY
from apps.catalog.units import quantity_text, totals_by_unit
from apps.core.admin import ServiceAdmin, saved_as
from apps.core.errors import DomainError
from apps.core.spreadsheets import csv_writer

SHEET_PAGE = 100  # lines per page of the sheet: a page is one form, well under the request's field limit


class StockCountForm(forms.ModelForm):
    """A new sheet: where, blind or not, and which items (all stocked there, narrowed, or chosen)."""

    sku_prefix = forms.CharField(
        label="SKU prefix", required=False, max_length=64, help_text="Only items whose SKU starts with this."
    )
    search = forms.CharField(required=False, max_length=100, help_text="Only items whose SKU or name contains this.")
    items = forms.ModelMultipleChoiceField(
        queryset=Item.objects.all(),
        required=False,
        widget=AutocompleteSelectMultiple(StockCountLine._meta.get_field("item"), admin.site),
        help_text=(
            "Or the items to count, stocked at the location or not yet (type part of a SKU or name). "
            "Empty: every active item stocked at the location."
        ),
    )

    # The service's refusal of what was typed (no item to count...), shown on the form it came from.
    refusal: str = ""

    class Meta:
        model = StockCount
        fields = ("location", "blind", "note")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.refusal:
            raise forms.ValidationError(self.refusal)
        return data


class CountLineForm(forms.Form):
    line = forms.IntegerField(widget=forms.HiddenInput)
    counted = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_QUANTITY,
        widget=forms.NumberInput(attrs={"class": "vIntegerField counted", "min": 0, "step": 1}),
    )


CountLineFormSet = forms.formset_factory(CountLineForm, extra=0)


class CountFileForm(forms.Form):
    file = forms.FileField(
        label="Counts file (CSV)", help_text="Columns sku,counted (UTF-8); other columns are ignored."
    )
    add_missing = forms.BooleanField(
        label="Add items of the catalog the file names that are not on this sheet", required=False
    )


class AddItemsForm(forms.Form):
    """Items found on the shelf that the sheet does not list, stocked at the location or not yet."""

    add_items = forms.ModelMultipleChoiceField(
        label="Items to add",
        queryset=Item.objects.all(),
        widget=AutocompleteSelectMultiple(
            StockCountLine._meta.get_field("item"), admin.site, attrs={"style": "width: 32em"}
        ),
        help_text="Type part of a SKU or name. An item with no stock here yet gets a line expecting 0.",
    )


@admin.register(StockCount)
class StockCountAdmin(StockWorkPlaces, ServiceAdmin):
    """Count sheets: counting, counted (to apply), applied or cancelled; each opens on its sheet."""

    form = StockCountForm
    list_display = ("__str__", "location", "scope", "status", "lines_counted", "created_by", "created_at", "next_step")
    list_filter = ("status", "location", "blind")
    list_select_related = ("location",)
    search_fields = ("scope", "note", "created_by", "lines__item__sku")
    date_hierarchy = "created_at"
    change_form_template = "admin/catalog/stockcount/change_form.html"
    readonly_fields = ("location", "status", "blind", "scope", "created", "counted", "applied", "ledger")

    def get_queryset(self, request: HttpRequest) -> QuerySet[StockCount]:
        return (
            super()
            .get_queryset(request)
            .annotate(line_total=Count("lines"), counted_total=Count("lines", filter=Q(lines__counted__isnull=False)))
        )

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """A new sheet the service refuses comes back as the form as typed (location, scope) with the reason."""
        try:
            return admin.ModelAdmin.changeform_view(self, request, object_id, form_url, extra_context)
        except DomainError as err:
            if object_id is not None or request.method != "POST":
                return self._refused(request, err)
            request.count_refusal = err.detail  # type: ignore[attr-defined]
            return admin.ModelAdmin.changeform_view(self, request, object_id, form_url, extra_context)

    def get_form(self, request: HttpRequest, obj: StockCount | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        refusal = getattr(request, "count_refusal", "")
        return type(form.__name__, (form,), {"refusal": refusal}) if refusal else form

    def get_fields(self, request: HttpRequest, obj: StockCount | None = None) -> Any:
        if obj is None:
            return ("location", "blind", "sku_prefix", "search", "items", "note")
        return ("location", "status", "blind", "scope", "created", "counted", "applied", "note", "ledger")

    def get_readonly_fields(self, request: HttpRequest, obj: StockCount | None = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: StockCount | None = None) -> bool:
        return False  # a count is a record; one that will not be applied is cancelled

    @admin.display(description="Counted")
    def lines_counted(self, count: StockCount) -> str:
        return f"{getattr(count, 'counted_total', 0)} of {getattr(count, 'line_total', 0)}"

    @admin.display(description="Snapshot")
    def created(self, count: StockCount) -> str:
        return _by_at(count.created_by, count.created_at)

    @admin.display(description="Submitted")
    def counted(self, count: StockCount) -> str:
        return _by_at(count.counted_by, count.counted_at)

    @admin.display(description="Applied or cancelled")
    def applied(self, count: StockCount) -> str:
        if count.cancelled_at:
            return f"Cancelled {_by_at(count.cancelled_by, count.cancelled_at)}"
        return _by_at(count.applied_by, count.applied_at)

    @admin.display(description="Ledger")
    def ledger(self, count: StockCount) -> str:
        if count.status != StockCount.Status.APPLIED:
            return "Nothing booked yet."
        return ledger_link(count.ledger_reference, "movements of this count")

    @admin.display(description="")
    def next_step(self, count: StockCount) -> str:
        if count.status == StockCount.Status.DRAFT:
            return format_html('<a class="button count-link" href="{}">Count</a>', _url("sheet", count))
        if count.status == StockCount.Status.COUNTED:
            return format_html('<a class="button preview-link" href="{}">Preview</a>', _url("preview", count))
        if count.status == StockCount.Status.APPLIED:
            return ledger_link(count.ledger_reference)
        return "-"

    # --- Writes, each one service call ---------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: StockCount, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            stock_count_update(count=obj, note=data.get("note", ""))
            return
        count = stock_count_create(
            location=data["location"],
            actor=request.user.get_username(),
            blind=data.get("blind", False),
            sku_prefix=data.get("sku_prefix", ""),
            search=data.get("search", ""),
            items=list(data.get("items") or []),
            note=data.get("note", ""),
        )
        saved_as(obj, count)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Nothing: the lines are made by ``stock_count_create`` and filled on the sheet."""

    def response_add(self, request: HttpRequest, obj: StockCount, post_url_continue: str | None = None) -> HttpResponse:
        lines = obj.lines.count()
        self.message_user(request, f"{obj} made with {lines} lines: count them now.", messages.SUCCESS)
        return HttpResponseRedirect(_url("sheet", obj))

    # --- The sheet, the file, the preview ------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        def view(name: str, fn: Any) -> URLPattern:
            return path(f"<int:count_id>/{name}/", self.admin_site.admin_view(fn), name=f"catalog_stockcount_{name}")

        return [
            view("sheet", self.sheet_view),
            view("upload", self.upload_view),
            view("add", self.add_items_view),
            view("download", self.download_view),
            view("preview", self.preview_view),
            view("cancel", self.cancel_view),
            *super().get_urls(),
        ]

    def _count(self, request: HttpRequest, count_id: int, *, write: bool) -> StockCount:
        count = get_object_or_404(self.get_queryset(request).select_related("location"), pk=count_id)
        allowed = self.has_change_permission(request, count) if write else self.has_view_permission(request, count)
        if not allowed:
            raise PermissionDenied
        return count

    def sheet_view(self, request: HttpRequest, count_id: int) -> HttpResponse:
        count = self._count(request, count_id, write=request.method == "POST")
        page = Paginator(count.lines.select_related("item").order_by("id"), SHEET_PAGE).get_page(
            request.GET.get("page")
        )
        if request.method != "POST":
            formset = CountLineFormSet(prefix="lines", initial=[{"line": ln.pk, "counted": ln.counted} for ln in page])
            return self._sheet(request, count, page, formset)
        formset = CountLineFormSet(request.POST, prefix="lines")
        if not formset.is_valid():
            self.message_user(request, "Some quantities are not whole numbers of 0 or more.", messages.ERROR)
            return self._sheet(request, count, page, formset)
        quantities = {form.cleaned_data["line"]: form.cleaned_data.get("counted") for form in formset.forms}
        actor = request.user.get_username()
        try:
            changed = stock_count_record(count_id=count.pk, quantities=quantities, actor=actor)
            if "_submit" in request.POST:
                stock_count_submit(count_id=count.pk, actor=actor)
        except DomainError as err:
            self.message_user(request, err.detail, messages.ERROR)
            return self._sheet(request, count, page, formset)
        if "_submit" in request.POST:
            self.message_user(request, f"{count} submitted: check the adjustments, then apply.", messages.SUCCESS)
            return HttpResponseRedirect(_url("preview", count))
        self.message_user(request, f"Saved {changed} changed quantities.", messages.SUCCESS)
        number = page.next_page_number() if "_next" in request.POST and page.has_next() else page.number
        return HttpResponseRedirect(f"{_url('sheet', count)}?page={number}")

    def _sheet(
        self,
        request: HttpRequest,
        count: StockCount,
        page: Any,
        formset: Any,
        upload: CountFileForm | None = None,
        problems: list[dict[str, Any]] | None = None,
        add_items: AddItemsForm | None = None,
    ) -> HttpResponse:
        editable = count.status in EDITABLE and self.has_change_permission(request, count)
        lines = list(page)
        rows = list(zip(lines, formset.forms, strict=False)) if len(formset.forms) == len(lines) else []
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Count sheet: {count} at {count.location.code}",
            "count": count,
            "page": page,
            "formset": formset,
            "rows": rows,
            "editable": editable,
            "show_expected": not count.hides_expected,
            "upload": upload or CountFileForm(),
            "add_items": add_items or AddItemsForm(),
            "media": self.media + (add_items or AddItemsForm()).media,
            "problems": problems or [],
            "max_kib": MAX_FILE_BYTES // 1024,
        }
        return TemplateResponse(request, "admin/catalog/stockcount/sheet.html", context)

    def upload_view(self, request: HttpRequest, count_id: int) -> HttpResponse:
        count = self._count(request, count_id, write=True)
        if request.method != "POST":
            return HttpResponseRedirect(_url("sheet", count))
        upload = CountFileForm(request.POST, request.FILES)
        page = Paginator(count.lines.select_related("item").order_by("id"), SHEET_PAGE).get_page(1)
        formset = CountLineFormSet(prefix="lines", initial=[{"line": ln.pk, "counted": ln.counted} for ln in page])
        if not upload.is_valid():
            return self._sheet(request, count, page, formset, upload=upload)
        file = upload.cleaned_data["file"]
        try:
            recorded = stock_count_upload(
                count_id=count.pk,
                data=file.read(MAX_FILE_BYTES + 1),
                actor=request.user.get_username(),
                add_missing=upload.cleaned_data.get("add_missing", False),
            )
        except CountFileRejected as err:
            self.message_user(request, f"{err.detail} ({file.name})", messages.ERROR)
            return self._sheet(request, count, page, formset, upload=upload, problems=err.data.get("rows", []))
        except DomainError as err:
            self.message_user(request, err.detail, messages.ERROR)
            return HttpResponseRedirect(_url("sheet", count))
        self.message_user(request, f"Recorded {recorded} counted quantities from {file.name}.", messages.SUCCESS)
        return HttpResponseRedirect(_url("sheet", count))

    def add_items_view(self, request: HttpRequest, count_id: int) -> HttpResponse:
        count = self._count(request, count_id, write=True)
        if request.method != "POST":
            return HttpResponseRedirect(_url("sheet", count))
        form = AddItemsForm(request.POST)
        if not form.is_valid():
            page = Paginator(count.lines.select_related("item").order_by("id"), SHEET_PAGE).get_page(1)
            initial = [{"line": ln.pk, "counted": ln.counted} for ln in page]
            formset = CountLineFormSet(prefix="lines", initial=initial)
            return self._sheet(request, count, page, formset, add_items=form)
        items = list(form.cleaned_data["add_items"])
        try:
            added = stock_count_add_items(count_id=count.pk, items=items, actor=request.user.get_username())
        except DomainError as err:
            self.message_user(request, err.detail, messages.ERROR)
            return HttpResponseRedirect(_url("sheet", count))
        skus = ", ".join(sorted(item.sku for item in items))
        if added:
            self.message_user(request, f"Added {added} line(s) to count: {skus}.", messages.SUCCESS)
        else:
            self.message_user(request, f"Already on this sheet: {skus}.", messages.INFO)
        # The new lines are the last ones: open the page that shows them.
        last = Paginator(count.lines.order_by("id"), SHEET_PAGE).num_pages
        return HttpResponseRedirect(f"{_url('sheet', count)}?page={last}")

    def download_view(self, request: HttpRequest, count_id: int) -> HttpResponse:
        """The sheet as a CSV file to count into (a scanner, a spreadsheet), then upload."""
        count = self._count(request, count_id, write=False)
        out = io.StringIO()
        writer = csv_writer(out)
        show_expected = not count.hides_expected
        writer.writerow(["sku", "name", *(["expected"] if show_expected else []), "reserved", "counted"])
        for line in count.lines.select_related("item").order_by("id").iterator(chunk_size=2000):
            expected = [line.expected] if show_expected else []
            counted = "" if line.counted is None else line.counted
            writer.writerow([line.item.sku, line.item.name, *expected, line.reserved, counted])
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="count-{count.pk}-{count.location.code}.csv"'
        return response

    def preview_view(self, request: HttpRequest, count_id: int) -> HttpResponse:
        count = self._count(request, count_id, write=request.method == "POST")
        if count.hides_expected:
            self.message_user(request, "A blind count shows expected quantities once it is submitted.", messages.INFO)
            return HttpResponseRedirect(_url("sheet", count))
        refused: set[str] = set()
        if request.method == "POST":
            confirmed = {int(value) for value in request.POST.getlist("confirm") if value.isdigit()}
            try:
                result = stock_count_apply(count_id=count.pk, actor=request.user.get_username(), confirmed=confirmed)
            except DomainError as err:
                self.message_user(request, err.detail, messages.ERROR)
                refused = {line["sku"] for line in err.data.get("lines") or []}
            else:
                if result.replayed:
                    self.message_user(request, f"{count} was already applied; nothing was booked twice.", messages.INFO)
                else:
                    unit_of = dict(count.lines.values_list("item_id", "item__unit"))
                    booked = _signed_totals((unit_of[m.item_id], m.on_hand_delta) for m in result.movements)
                    text = f"{count} applied: {len(result.movements)} movements booked ({booked})"
                    if result.incidents:
                        text += f"; {len(result.incidents)} incident(s) opened for stock under its reservations"
                    self.message_user(request, f"{text}.", messages.SUCCESS)
                # Back to this page, now the count as applied: every counted line and what it booked.
                return HttpResponseRedirect(_url("preview", count))
        outcomes = stock_count_preview(count=count)
        applied = count.status == StockCount.Status.APPLIED
        summary = _summary(outcomes)
        # Before applying, the lines that book something; once applied, every counted line (the record of the count).
        shown = [o for o in outcomes if o.counted is not None and (applied or o.difference or o.eats_reserved)]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{'Adjustments of' if applied else 'Preview of'} {count} at {count.location.code}",
            "count": count,
            "applied": applied,
            "can_apply": count.status == StockCount.Status.COUNTED and self.has_change_permission(request, count),
            "rows": [(o, o.line.item.sku in refused) for o in shown],
            "summary": summary,
            "uncounted": [o.line.item.sku for o in outcomes if o.counted is None],
            "ledger": ledger_link(count.ledger_reference, "movements of this count") if applied else "",
        }
        return TemplateResponse(request, "admin/catalog/stockcount/preview.html", context)

    def cancel_view(self, request: HttpRequest, count_id: int) -> HttpResponse:
        count = self._count(request, count_id, write=True)
        back = reverse("admin:catalog_stockcount_change", args=[count.pk])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        try:
            stock_count_cancel(count_id=count.pk, actor=request.user.get_username())
        except DomainError as err:
            self.message_user(request, err.detail, messages.ERROR)
        else:
            self.message_user(request, f"{count} cancelled; nothing was booked.", messages.SUCCESS)
        return HttpResponseRedirect(back)


def _url(view: str, count: StockCount) -> str:
    return reverse(f"admin:catalog_stockcount_{view}", args=[count.pk])


def _by_at(by: str, at: Any) -> str:
    if not at:
        return "-"
    when = timezone.localtime(at).strftime("%Y-%m-%d %H:%M")
    return f"{when} by {by}" if by else when


def _signed_totals(pairs: Any) -> str:
    """``+3 pcs, -250 g``: a sum per unit, signed; ``0`` when nothing moved."""
    totals = totals_by_unit(pairs)
    return ", ".join(quantity_text(value, unit, signed=True) for unit, value in totals.items() if value) or "0"


def _summary(outcomes: list[CountOutcome]) -> dict[str, Any]:
    counted = [o for o in outcomes if o.counted is not None]
    return {
        "up_text": _signed_totals((o.line.item.unit, o.difference) for o in counted if o.difference > 0),
        "down_text": _signed_totals((o.line.item.unit, o.difference) for o in counted if o.difference < 0),
        "lines": len(outcomes),
        "counted": len(counted),
        "matching": sum(1 for o in counted if not o.difference),
        "differing": sum(1 for o in counted if o.difference),
        "units_up": sum(o.difference for o in counted if o.difference > 0),
        "units_down": sum(o.difference for o in counted if o.difference < 0),
        "short": sum(1 for o in counted if o.eats_reserved),
    }
