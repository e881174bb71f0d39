"""The merchant's back office for suppliers: health, feed runs with their quarantined rows, mappings to confirm."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join

from apps.core.admin import ReadOnlyAdmin, ServiceAdmin
from apps.core.durations import duration_text
from apps.core.errors import CredentialsRequired
from apps.suppliers.connectors.folder import DropPathRefused, drop_folder_resolve
from apps.suppliers.models import FeedRun, PurchaseOrder, QuarantinedRow, Supplier, SupplierProduct
from apps.suppliers.services.mappings import (
    mapping_validate,
    mappings_confirm,
    supplier_product_delete,
    supplier_product_save,
)
from apps.suppliers.services.suppliers import (
    supplier_create,
    supplier_delete,
    supplier_rebind_check,
    supplier_update,
)
from apps.suppliers.tasks import supplier_poll


class SupplierForm(forms.ModelForm):
    """The secret is write-only: the form never renders it, and a blank field keeps the current one."""

    new_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False), help_text="Leave blank to keep the secret."
    )

    class Meta:
        model = Supplier
        fields = [
            "code",
            "name",
            "connector",
            "settings",
            "trust_factor",
            "cap",
            "max_age_minutes",
            "poll_interval_s",
            "priority",
            "is_active",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("connector") == Supplier.Connector.FOLDER and isinstance(data.get("settings"), dict):
            try:
                drop_folder_resolve(data["settings"].get("path"))
            except DropPathRefused as err:
                self.add_error("settings", str(err))
        if self.instance.pk and "settings" in self.changed_data and isinstance(data.get("settings"), dict):
            stored = Supplier.objects.get(pk=self.instance.pk)
            try:
                supplier_rebind_check(
                    supplier=stored, settings=data["settings"], secret_given=bool(data.get("new_secret"))
                )
            except CredentialsRequired as err:
                self.add_error("settings", err.detail)
        return data


@admin.register(Supplier)
class SupplierAdmin(ServiceAdmin):
    form = SupplierForm
    list_display = (
        "code",
        "name",
        "connector",
        "trust_factor",
        "cap",
        "last_success_at",
        "failures_in_row",
        "breaker_state",
        "is_stale",
        "secret_display",
    )
    list_filter = ("connector", "breaker_state", "is_stale", "is_active")
    search_fields = ("code", "name")
    readonly_fields = (
        "secret_display",
        "location",
        "last_success_at",
        "last_attempt_at",
        "failures_in_row",
        "breaker_state",
        "breaker_opened_at",
        "is_stale",
    )
    fieldsets = (
        (None, {"fields": ("code", "name", "connector", "settings", "new_secret", "secret_display", "is_active")}),
        ("Distrust", {"fields": ("trust_factor", "cap", "max_age_minutes", "priority")}),
        ("Polling", {"fields": ("poll_interval_s",)}),
        (
            "Health",
            {
                "fields": (
                    "location",
                    "last_success_at",
                    "last_attempt_at",
                    "failures_in_row",
                    "breaker_state",
                    "breaker_opened_at",
                    "is_stale",
                )
            },
        ),
    )
    actions = ["poll_now", "validate_mappings"]

    @admin.display(description="Secret")
    def secret_display(self, obj: Supplier) -> str:
        return obj.secret_masked or "—"

    def save_model(self, request: HttpRequest, obj: Supplier, form: Any, change: bool) -> None:
        data = {f: form.cleaned_data[f] for f in form.changed_data if f in {x.name for x in Supplier._meta.fields}}
        if form.cleaned_data.get("new_secret"):
            data["secret"] = form.cleaned_data["new_secret"]
        actor = f"admin:{request.user}"
        if change:
            fresh = Supplier.objects.select_related("location").get(pk=obj.pk)
            data.pop("code", None)
            updated = supplier_update(supplier=fresh, actor=actor, **data)
            obj.pk, obj.location_id = updated.pk, updated.location_id
        else:
            fields = {
                f: form.cleaned_data[f]
                for f in (
                    "settings",
                    "trust_factor",
                    "cap",
                    "max_age_minutes",
                    "poll_interval_s",
                    "priority",
                    "is_active",
                )
            }
            created = supplier_create(
                code=form.cleaned_data["code"],
                name=form.cleaned_data["name"],
                connector=form.cleaned_data["connector"],
                secret=form.cleaned_data.get("new_secret") or "",
                actor=actor,
                **fields,
            )
            obj.pk, obj.location_id = created.pk, created.location_id

    def delete_model(self, request: HttpRequest, obj: Supplier) -> None:
        supplier_delete(supplier=obj, actor=f"admin:{request.user}")

    @admin.action(description="Poll now")
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Supplier]) -> None:
        for supplier in queryset:
            supplier_poll.delay(supplier.pk)
        self.message_user(request, f"Polling queued for {queryset.count()} supplier(s).", messages.SUCCESS)

    @admin.action(description="Validate mappings")
    def validate_mappings(self, request: HttpRequest, queryset: QuerySet[Supplier]) -> None:
        for supplier in queryset.select_related("location"):
            summary = mapping_validate(supplier=supplier, actor=f"admin:{request.user}")
            self.message_user(
                request,
                f"{supplier.code}: {summary['suspect']} suspect, {summary['vanished']} vanished, "
                f"{summary['unmapped']} unmapped.",
                messages.INFO,
            )


class QuarantinedRowInline(admin.TabularInline):
    model = QuarantinedRow
    verbose_name_plural = "Quarantined rows"
    fields = ("row_number", "supplier_sku", "reason", "raw")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[QuarantinedRow]:
        # A garbage feed can have a million quarantined rows; the page shows the first ones of this run.
        queryset = super().get_queryset(request)
        run_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if run_id is None or not str(run_id).isdigit():
            return queryset.none()
        first = list(
            queryset.filter(run_id=int(run_id)).order_by("row_number", "pk").values_list("pk", flat=True)[:500]
        )
        return queryset.filter(pk__in=first).order_by("row_number", "pk")


@admin.register(FeedRun)
class FeedRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "supplier",
        "source",
        "status",
        "rows_read",
        "rows_accepted",
        "rows_changed",
        "rows_quarantined",
        "started_at",
        "duration_shown",
    )
    list_filter = ("status", "supplier")
    search_fields = ("supplier__code", "source", "error")
    date_hierarchy = "started_at"
    list_select_related = ("supplier",)
    inlines = [QuarantinedRowInline]
    # The run's page lists its fields by hand: the duration reads "28 s", never a raw "0:00:28.104".
    fields = (
        "supplier",
        "source",
        "status",
        ("rows_read", "rows_accepted", "rows_changed", "rows_quarantined"),
        ("started_at", "finished_at", "duration_shown"),
        "heartbeat_shown",
        "error",
    )
    readonly_fields = ("duration_shown", "heartbeat_shown")

    @admin.display(description="duration", ordering="duration")
    def duration_shown(self, run: FeedRun) -> str:
        if run.duration is None and run.status == FeedRun.Status.RUNNING:
            return f"running for {duration_text(timezone.now() - run.started_at)}"
        return duration_text(run.duration)

    @admin.display(description="last heartbeat")
    def heartbeat_shown(self, run: FeedRun) -> str:
        if run.status != FeedRun.Status.RUNNING:
            return "-"
        return f"{duration_text(timezone.now() - run.heartbeat_at)} ago"


@admin.register(SupplierProduct)
class SupplierProductAdmin(ServiceAdmin):
    list_display = (
        "supplier",
        "supplier_sku",
        "item",
        "units_per_pack",
        "unit_factor",
        "status",
        "status_reason",
        "last_reported_qty",
        "last_seen_at",
    )
    list_filter = ("status", "supplier")
    search_fields = ("supplier_sku", "item__sku", "supplier__code")
    list_select_related = ("supplier", "item")
    raw_id_fields = ("item",)
    readonly_fields = (
        "status",
        "status_reason",
        "last_reported_qty",
        "last_seen_at",
        "fingerprint",
        "confirmed_fingerprint",
    )
    actions = ["confirm_mapping"]

    @admin.action(description="Confirm mapping (back on sale)")
    def confirm_mapping(self, request: HttpRequest, queryset: QuerySet[SupplierProduct]) -> None:
        mappings = list(queryset.select_related("supplier"))
        unmapped = sum(1 for m in mappings if m.item_id is None)
        confirmed = mappings_confirm(mappings=mappings, actor=f"admin:{request.user}")
        self.message_user(request, f"Confirmed {confirmed} mapping(s).", messages.SUCCESS)
        if unmapped:
            self.message_user(request, f"{unmapped} unmapped SKU(s) need an item first.", messages.WARNING)

    def save_model(self, request: HttpRequest, obj: SupplierProduct, form: Any, change: bool) -> None:
        data = {f: form.cleaned_data[f] for f in form.changed_data if f != "supplier"}
        existing = SupplierProduct.objects.get(pk=obj.pk) if change else None
        saved = supplier_product_save(
            mapping=existing,
            supplier=form.cleaned_data.get("supplier") or obj.supplier,
            data=data,
            actor=f"admin:{request.user}",
        )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: SupplierProduct) -> None:
        supplier_product_delete(mapping=obj, actor=f"admin:{request.user}")


@admin.register(PurchaseOrder)
class PurchaseOrderAdmin(ReadOnlyAdmin):
    """Made from the "To reorder" list; its goods are receipts due, received on the receiving page."""

    list_display = ("number_shown", "supplier", "created_at", "created_by", "receipts_shown")
    list_filter = ("supplier",)
    search_fields = ("id", "supplier__name", "receipts__lines__item__sku")
    list_select_related = ("supplier",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseOrder]:
        return super().get_queryset(request).prefetch_related("receipts__location")

    @admin.display(description="Number", ordering="id")
    def number_shown(self, order: PurchaseOrder) -> str:
        return order.number

    @admin.display(description="Receipts due")
    def receipts_shown(self, order: PurchaseOrder) -> str:
        return format_html_join(
            ", ",
            '<a href="{}">{} at {} ({})</a>',
            (
                (reverse("admin:catalog_receipt_change", args=[r.pk]), r, r.location.code, r.get_status_display())
                for r in order.receipts.all()
            ),
        )
