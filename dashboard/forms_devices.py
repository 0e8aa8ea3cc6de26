"""The manager's device form: a device's name and its field (of the same farm)."""

from __future__ import annotations

from typing import Any

from django import forms

from farm.forms import StyledForm
from farm.models import Farm, Field


class DeviceForm(StyledForm):
    name = forms.CharField(max_length=120)
    field = forms.ModelChoiceField(queryset=Field.objects.none(), required=False, empty_label="No field")

    def __init__(self, *args: Any, farm: Farm, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["field"].queryset = Field.objects.filter(farm=farm).order_by("name")  # type: ignore[attr-defined]
