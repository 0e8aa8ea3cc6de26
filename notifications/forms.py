"""Forms of the Notifications page: a channel, and a person's quiet hours and cap."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email

from farm.forms import StyledModelForm
from notifications.models import APP_TARGET, ChannelKind, NotificationChannel, NotificationPrefs

TARGET_HELP = (
    "In the app: leave empty (the bell in the header). Email: an address. "
    "Apprise: one URL, e.g. ntfy://topic, tgram://bot-token/chat-id, "
    "slack://…, mailto://… (see Apprise's list of services). Webhook: an http(s):// URL that receives signed JSON."
)


def _plain_checkboxes(form: forms.BaseForm) -> None:
    # Before style_controls, which would give them the text-input class (full width).
    for field in form.fields.values():
        if isinstance(field.widget, forms.CheckboxInput):
            field.widget.attrs["class"] = "form-check"


class ChannelForm(StyledModelForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_checkboxes(self)
        kind = self.fields["kind"]
        kind.choices = ChannelKind.choices  # type: ignore[attr-defined]
        kind.initial = ChannelKind.EMAIL
        self.fields["target"].required = False  # "In the app" needs none; the others are checked in clean()

    class Meta:
        model = NotificationChannel
        fields = ["kind", "label", "target", "min_severity", "enabled"]
        labels = {"min_severity": "Least severity sent here", "target": "Where to"}
        help_texts = {"target": TARGET_HELP, "label": "Optional, e.g. “My phone”."}
        widgets = {"target": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"})}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, target = data.get("kind"), (data.get("target") or "").strip()
        if kind == ChannelKind.APP:
            data["target"] = APP_TARGET
        elif kind and not target:
            self.add_error("target", "This field is required.")
        elif kind and target:
            error = _target_error(ChannelKind(kind), target)
            if error:
                self.add_error("target", error)
            data["target"] = target
        return data


def _target_error(kind: ChannelKind, target: str) -> str:
    if kind == ChannelKind.EMAIL:
        try:
            validate_email(target)
        except ValidationError:
            return "Enter an email address, e.g. grower@example.com."
    elif kind == ChannelKind.WEBHOOK:
        try:
            URLValidator(schemes=["http", "https"])(target)
        except ValidationError:
            return "Enter an http:// or https:// URL."
    elif not _apprise_knows(target):
        return "Apprise does not recognise this URL: check its scheme and the parts the service needs."
    return ""


def _apprise_knows(url: str) -> bool:
    import apprise  # only the web process validates channels: see notifications.senders

    return apprise.Apprise.instantiate(url) is not None


class PrefsForm(StyledModelForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_checkboxes(self)

    class Meta:
        model = NotificationPrefs
        fields = ["quiet_start", "quiet_end", "critical_breaks_through", "hourly_cap"]
        labels = {
            "quiet_start": "Quiet from",
            "quiet_end": "Quiet until",
            "critical_breaks_through": "Critical alerts break through quiet hours",
            "hourly_cap": "At most this many messages per channel per hour",
        }
        widgets = {
            "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("quiet_start"), data.get("quiet_end")
        if (start is None) != (end is None) and not self.errors:
            self.add_error("quiet_end" if end is None else "quiet_start", "Set both times, or neither.")
        elif start is not None and start == end:
            self.add_error("quiet_end", "The end must differ from the start.")
        return data
