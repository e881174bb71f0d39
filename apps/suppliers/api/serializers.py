"""Supplier API shapes: suppliers by code, mappings, feed runs and their quarantined rows.

A contract with integrators (docs/architecture.md, "The API contract").
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from apps.catalog.models import Item
from apps.suppliers.connectors.folder import DropPathRefused, drop_folder_resolve
from apps.suppliers.models import FeedRun, QuarantinedRow, Supplier, SupplierProduct

_REQUIRED_SETTINGS: dict[str, tuple[str, ...]] = {
    Supplier.Connector.REST: ("url",),
    Supplier.Connector.SFTP: ("host", "username", "path", "host_key"),
    Supplier.Connector.FOLDER: ("path",),
    Supplier.Connector.WEBHOOK: (),
}
_SECRET_LOOKING = ("password", "secret", "token", "api_key", "apikey")


class SupplierSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=500, trim_whitespace=False
    )
    secret_set = serializers.SerializerMethodField()
    location: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="code", read_only=True)
    settings = serializers.JSONField(required=False)

    class Meta:
        model = Supplier
        fields = [
            "code",
            "name",
            "connector",
            "settings",
            "secret",
            "secret_set",
            "trust_factor",
            "cap",
            "max_age_minutes",
            "poll_interval_s",
            "priority",
            "is_active",
            "location",
            "last_success_at",
            "last_attempt_at",
            "failures_in_row",
            "breaker_state",
            "is_stale",
        ]
        read_only_fields = [
            "location",
            "last_success_at",
            "last_attempt_at",
            "failures_in_row",
            "breaker_state",
            "is_stale",
        ]
        extra_kwargs: dict[str, dict[str, Any]] = {"code": {"validators": []}}

    def get_secret_set(self, supplier: Supplier) -> bool:
        return bool(supplier.secret)

    def validate_code(self, value: str) -> str:
        if self.instance is None and Supplier.objects.filter(code=value).exists():
            raise serializers.ValidationError("A supplier with this code already exists.", code="unique")
        if self.instance is not None and value != self.instance.code:
            raise serializers.ValidationError("A supplier's code cannot change: it is its location's code.")
        return value

    def validate_settings(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        leaked = sorted(k for k in value if any(word in str(k).lower() for word in _SECRET_LOOKING))
        if leaked:
            raise serializers.ValidationError(f"Put credentials in `secret`, not in settings ({', '.join(leaked)}).")
        for key in ("reject_threshold",):
            if key in value and not (isinstance(value[key], int | float) and 0 <= value[key] <= 1):
                raise serializers.ValidationError({key: "Must be a number from 0 to 1."})
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        connector = attrs.get("connector", getattr(self.instance, "connector", None))
        settings = attrs.get("settings", getattr(self.instance, "settings", None)) or {}
        secret = attrs.get("secret", getattr(self.instance, "secret", ""))
        missing = [k for k in _REQUIRED_SETTINGS.get(str(connector), ()) if not settings.get(k)]
        if missing:
            raise serializers.ValidationError({"settings": [f"A {connector} supplier needs: {', '.join(missing)}."]})
        if connector == Supplier.Connector.FOLDER:
            try:
                drop_folder_resolve(settings.get("path"))
            except DropPathRefused as err:
                raise serializers.ValidationError({"settings": [str(err)]}) from err
        if connector == Supplier.Connector.WEBHOOK and not secret:
            raise serializers.ValidationError({"secret": ["A webhook supplier needs a secret to verify signatures."]})
        return attrs


class SupplierProductSerializer(serializers.ModelSerializer):
    supplier: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="code", queryset=Supplier.objects.all()
    )
    item = serializers.SlugRelatedField(slug_field="sku", queryset=Item.objects.all(), allow_null=True, required=False)
    status = serializers.ChoiceField(
        choices=[SupplierProduct.Status.ACTIVE, SupplierProduct.Status.SUSPECT, SupplierProduct.Status.VANISHED],
        required=False,
    )

    class Meta:
        model = SupplierProduct
        fields = [
            "id",
            "supplier",
            "supplier_sku",
            "item",
            "units_per_pack",
            "unit_factor",
            "lead_time_days",
            "moq",
            "status",
            "status_reason",
            "last_reported_qty",
            "last_seen_at",
            "fingerprint",
        ]
        read_only_fields = ["id", "status_reason", "last_reported_qty", "last_seen_at", "fingerprint"]
        validators: list = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        supplier = attrs.get("supplier", getattr(self.instance, "supplier", None))
        sku = attrs.get("supplier_sku", getattr(self.instance, "supplier_sku", None))
        if self.instance is not None and "supplier" in attrs and attrs["supplier"] != self.instance.supplier:
            raise serializers.ValidationError({"supplier": ["A mapping cannot move to another supplier."]})
        clash = SupplierProduct.objects.filter(supplier=supplier, supplier_sku=sku)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError({"supplier_sku": ["This supplier SKU is already mapped."]}, code="unique")
        if attrs.get("unit_factor") is not None and attrs["unit_factor"] <= 0:
            raise serializers.ValidationError({"unit_factor": ["Must be greater than 0."]})
        if attrs.get("units_per_pack") == 0:
            raise serializers.ValidationError({"units_per_pack": ["Must be at least 1."]})
        return attrs


@extend_schema_serializer(deprecate_fields=["rows_rejected"])
class FeedRunSerializer(serializers.ModelSerializer):
    supplier: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="code", read_only=True)
    duration_s = serializers.SerializerMethodField()
    rows_quarantined = serializers.IntegerField(
        read_only=True, help_text="Rows not taken, each kept with its reason (`quarantine/` lists them)."
    )
    # The old name of rows_quarantined, kept for integrators until the next API version (docs/api.md).
    rows_rejected = serializers.IntegerField(
        source="rows_quarantined",
        read_only=True,
        help_text="Deprecated: the same number as `rows_quarantined`, under its old name; gone in `/api/v2/`.",
    )

    class Meta:
        model = FeedRun
        fields = [
            "id",
            "supplier",
            "source",
            "status",
            "rows_read",
            "rows_accepted",
            "rows_changed",
            "rows_quarantined",
            "rows_rejected",
            "started_at",
            "finished_at",
            "duration_s",
            "error",
        ]
        read_only_fields = fields

    def get_duration_s(self, run: FeedRun) -> float | None:
        return round(run.duration.total_seconds(), 3) if run.duration is not None else None


class QuarantinedRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = QuarantinedRow
        fields = ["row_number", "supplier_sku", "reason", "raw"]
        read_only_fields = fields
