"""Query parameters of the history page, its data endpoint, the summaries and the export."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from django import forms

from .windows import DEFAULT_RANGE, MAX_DAYS, RANGE_LABELS, Window, days_window, range_window

MAX_SENSORS: Final = 8
RESOLUTIONS: Final = ("raw", "hour", "day")


class SensorsField(forms.TypedMultipleChoiceField):
    """Sensor ids from repeated ``sensor=`` parameters; which exist on the farm is the view's business."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(coerce=int, required=False, **kwargs)

    def valid_value(self, value: Any) -> bool:
        return str(value).isdigit() and len(str(value)) < 19


class HistoryQuery(forms.Form):
    """``sensor=`` (up to 8), ``range=`` a named range or ``custom`` with ``start``/``end`` local dates."""

    sensor = SensorsField()
    range = forms.ChoiceField(
        choices=[(k, v) for k, v in RANGE_LABELS.items()] + [("custom", "Custom")], required=False
    )
    start = forms.DateField(required=False)
    end = forms.DateField(required=False)

    def clean_sensor(self) -> list[int]:
        ids = list(dict.fromkeys(self.cleaned_data.get("sensor") or []))
        if len(ids) > MAX_SENSORS:
            raise forms.ValidationError(f"Pick at most {MAX_SENSORS} sensors.")
        return ids

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if self._custom(data) and not (start and end):
            raise forms.ValidationError("A custom range needs both a start and an end date.")
        if start and end and (end < start or (end - start).days > MAX_DAYS):
            raise forms.ValidationError(f"The end date must be on or after the start, at most {MAX_DAYS} days later.")
        return data

    @staticmethod
    def _custom(data: dict[str, Any]) -> bool:
        """A named range wins over dates left in the form; dates alone mean a custom range."""
        named = data.get("range")
        return named == "custom" or (not named and bool(data.get("start") or data.get("end")))

    def range_key(self) -> str:
        if self._custom(self.cleaned_data):
            return "custom"
        return self.cleaned_data.get("range") or DEFAULT_RANGE

    def window(self, *, now: datetime, zone: ZoneInfo, season_start: date | None) -> Window:
        if self.range_key() == "custom":
            return days_window(first=self.cleaned_data["start"], last=self.cleaned_data["end"], zone=zone)
        return range_window(key=self.range_key(), now=now, zone=zone, season_start=season_start)


class DataQuery(forms.Form):
    """The page's data endpoint: sensors, an exact window (a zoom), and the chart's width in pixels."""

    sensor = SensorsField()
    start = forms.DateTimeField()
    end = forms.DateTimeField()
    width = forms.IntegerField(min_value=50, max_value=4000, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and not (start < end and (end - start).days <= MAX_DAYS):
            raise forms.ValidationError(f"The window must run forwards, at most {MAX_DAYS} days.")
        if len(data.get("sensor") or []) > MAX_SENSORS:
            raise forms.ValidationError(f"At most {MAX_SENSORS} sensors.")
        return data


class ExportQuery(forms.Form):
    """``export.csv``'s parameters, shared with ``manage.py export_readings``: local dates, ``end`` inclusive."""

    sensor = SensorsField()
    start = forms.DateField()
    end = forms.DateField()
    resolution = forms.ChoiceField(choices=[(r, r) for r in RESOLUTIONS], required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and (end < start or (end - start).days > MAX_DAYS):
            raise forms.ValidationError(f"The end date must be on or after the start, at most {MAX_DAYS} days later.")
        if not data.get("sensor"):
            raise forms.ValidationError("Name at least one sensor (sensor=<id>).")
        return data

    def resolution_key(self) -> str:
        return self.cleaned_data.get("resolution") or "raw"
