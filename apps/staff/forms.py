"""Staff forms: one small override form per stock level row, and the list filters."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone

from apps.catalog.access import locations_for, sees_all_locations
from apps.catalog.models import Location
from apps.forecasting.services.overrides import MAX_OVERRIDE, MAX_REASON


class SafetyFilterForm(forms.Form):
    location = forms.ModelChoiceField(
        queryset=Location.objects.filter(is_active=True).order_by("code"),
        required=False,
        to_field_name="code",
        empty_label="All locations",
    )
    q = forms.CharField(required=False, max_length=100, label="Search", strip=True)

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if user is not None:  # store staff choose among their own locations
            field = self.fields["location"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = locations_for(user).filter(is_active=True).order_by("code")
            if not sees_all_locations(user):
                field.empty_label = "All your locations"


class SafetyOverrideForm(forms.Form):
    """Set (or clear) the override of one level. Plain POST; errors are shown next to each field."""

    ACTION_SET = "set"
    ACTION_CLEAR = "clear"

    level = forms.IntegerField(widget=forms.HiddenInput)
    action = forms.ChoiceField(choices=[(ACTION_SET, "Save"), (ACTION_CLEAR, "Clear")], initial=ACTION_SET)
    value = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_OVERRIDE,
        error_messages={"invalid": "Enter a whole number of units.", "min_value": "Safety stock cannot be negative."},
        widget=forms.NumberInput(attrs={"min": 0, "step": 1, "class": "qty", "aria-label": "Override units"}),
    )
    reason = forms.CharField(
        required=False,
        max_length=MAX_REASON,
        widget=forms.TextInput(attrs={"placeholder": "Why?", "aria-label": "Reason"}),
    )
    valid_until = forms.DateTimeField(
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local", "aria-label": "Valid until"}, format="%Y-%m-%dT%H:%M"
        ),
        error_messages={"invalid": "Enter a date and time."},
    )
    # An override far beyond demand and stock (``override_far_beyond``) needs this ticked, for this very value.
    confirm = forms.BooleanField(required=False, label="Yes, hold these units back")
    confirmed_value = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warning: str = ""  # set by the view when the value asks for a confirmation

    def is_confirmed(self) -> bool:
        """Ticked, and for the value now entered (not one confirmed before and changed since)."""
        data = self.cleaned_data
        return bool(data.get("confirm")) and data.get("confirmed_value") == data.get("value")

    def ask_confirmation(self, warning: str) -> None:
        """Show the warning with an unticked box that confirms the value entered now."""
        self.warning = warning
        data = dict(self.data.items())
        data["confirmed_value"] = str(self.cleaned_data["value"])
        data.pop("confirm", None)
        self.data = data

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") == self.ACTION_SET and data.get("value") is None and "value" not in self.errors:
            self.add_error("value", "Enter the safety stock in units.")
        if not (data.get("reason") or "").strip() and "reason" not in self.errors:
            self.add_error("reason", "Say why: the reason is kept in the history.")
        until = data.get("valid_until")
        if data.get("action") == self.ACTION_SET and until is not None and until <= timezone.now():
            self.add_error("valid_until", "Valid until must be in the future.")
        return data
