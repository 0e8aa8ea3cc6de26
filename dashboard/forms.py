"""Query parameters of the dashboard's JSON endpoints."""

from __future__ import annotations

from django import forms

from . import charts


class SeriesQuery(forms.Form):
    range = forms.ChoiceField(choices=[(key, key) for key in charts.RANGES], required=False)
    width = forms.IntegerField(min_value=1, max_value=1_000_000, required=False)

    def range_key(self) -> str:
        return self.cleaned_data.get("range") or charts.DEFAULT_RANGE

    def width_px(self) -> int:
        """The chart's width in pixels: about one bucket per pixel, capped both ways."""
        width = self.cleaned_data.get("width") or charts.DEFAULT_WIDTH
        return max(charts.MIN_WIDTH, min(charts.MAX_WIDTH, width))
