"""The rule form (errors beside their fields) and the acknowledge form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User

from alerts.models import NOTIFY_ROLES, AlertRule, Kind, Scope, Severity, default_notify_roles
from alerts.specs import RuleSpec, roles_in_order, spec_errors
from farm.models import Farm, Field, Membership, Role
from sensors.models import Device, Sensor

_FORM_FIELD = {
    "for_seconds": "for_minutes",
    "clear_for_seconds": "clear_for_minutes",
    "remind_seconds": "remind_minutes",
    "escalate_seconds": "escalate_minutes",
}
_ROLE_PLURAL = {Role.OWNER: "Owners", Role.MANAGER: "Managers", Role.VIEWER: "Viewers"}


class _DateTimeLocal(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M", attrs={"class": "form-control"})


def _control(widget: forms.Widget) -> forms.Widget:
    widget.attrs.setdefault("class", "form-control")
    return widget


class _NamedChoice(forms.ModelChoiceField):
    """A field, device or sensor by its own name (its ``str`` repeats the farm)."""

    def label_from_instance(self, obj: Any) -> str:
        if isinstance(obj, Sensor):
            return f"{obj.device.name} · {obj.label}"
        return str(obj.name)


def _optional_minutes(label: str, help_text: str) -> forms.IntegerField:
    return forms.IntegerField(
        label=label, min_value=1, required=False, help_text=help_text, widget=_control(forms.NumberInput())
    )


class _MemberChoice(forms.ModelMultipleChoiceField):
    """A farm member by name, with their role: "Ana Silva (viewer)"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.roles: dict[int, str] = {}

    def label_from_instance(self, obj: Any) -> str:
        name = obj.get_full_name() or obj.get_username()
        role = self.roles.get(obj.pk)
        return f"{name} ({role})" if role else str(name)


class AlertRuleForm(forms.Form):
    name = forms.CharField(max_length=120, widget=_control(forms.TextInput()))
    metric = forms.ChoiceField(help_text="The measurement the rule watches.", widget=_control(forms.Select()))
    kind = forms.ChoiceField(label="Condition", choices=Kind.choices, widget=_control(forms.Select()))
    threshold = forms.FloatField(
        required=False, help_text="The level (the low edge of a band).", widget=_control(forms.NumberInput())
    )
    threshold_high = forms.FloatField(
        label="High edge", required=False, help_text="Bands only.", widget=_control(forms.NumberInput())
    )
    clear = forms.FloatField(
        label="Clear level",
        required=False,
        help_text="Where the alert clears; empty = the threshold. E.g. frost below 2 °C clearing above 3 °C.",
        widget=_control(forms.NumberInput()),
    )
    clear_high = forms.FloatField(
        label="High clear level", required=False, help_text="Bands only.", widget=_control(forms.NumberInput())
    )
    for_minutes = forms.IntegerField(
        label="For (minutes)",
        min_value=0,
        initial=0,
        help_text="How long the condition must hold before the alert fires (no data: the silence).",
        widget=_control(forms.NumberInput()),
    )
    clear_for_minutes = forms.IntegerField(
        label="Clear for (minutes)", min_value=0, initial=0, widget=_control(forms.NumberInput())
    )
    remind_minutes = _optional_minutes("Remind every (minutes)", "While firing and not acknowledged; empty = none.")
    notify_roles = forms.MultipleChoiceField(
        label="Tell these roles",
        choices=[(role, _ROLE_PLURAL[role]) for role in NOTIFY_ROLES],
        required=False,
        initial=default_notify_roles,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check"}),
        help_text="Everyone on the farm with one of these roles.",
    )
    notify_users = _MemberChoice(
        label="And these members",
        queryset=User.objects.none(),
        required=False,
        help_text="Told whatever their role (a viewer too). On a computer, Ctrl/⌘-click picks several.",
        widget=_control(forms.SelectMultiple(attrs={"size": 4})),
    )
    escalate_minutes = _optional_minutes(
        "Escalate to the owners after (minutes)",
        "Once per alert, when still unacknowledged this long after it was sent; empty = never.",
    )
    notify_resolved = forms.BooleanField(
        label="Tell them when it resolves",
        required=False,
        initial=True,
        widget=forms.CheckboxInput({"class": "form-check"}),
    )
    scope = forms.ChoiceField(choices=Scope.choices, widget=_control(forms.Select()))
    field = _NamedChoice(queryset=Field.objects.none(), required=False, widget=_control(forms.Select()))
    device = _NamedChoice(queryset=Device.objects.none(), required=False, widget=_control(forms.Select()))
    sensor = _NamedChoice(queryset=Sensor.objects.none(), required=False, widget=_control(forms.Select()))
    severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.WARNING, widget=_control(forms.Select()))
    note = forms.CharField(
        required=False,
        help_text="Shown with every alert, e.g. “open valve 3 and call the irrigation contractor”.",
        widget=_control(forms.Textarea(attrs={"rows": 2})),
    )
    enabled = forms.BooleanField(required=False, initial=True)
    muted_until = forms.DateTimeField(
        label="Mute until", required=False, help_text="Snooze: no notifications until then.", widget=_DateTimeLocal()
    )

    def __init__(self, *args: Any, farm: Farm, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.farm = farm
        self.spec: RuleSpec | None = None
        keys = sorted(set(Sensor.objects.filter(device__farm=farm).values_list("key", flat=True)))
        current = self.initial.get("metric") or self.data.get("metric")
        if current and current not in keys:
            keys.append(str(current))
        self.fields["metric"].choices = [(k, k) for k in keys]  # type: ignore[attr-defined]
        self.fields["field"].queryset = Field.objects.filter(farm=farm)  # type: ignore[attr-defined]
        self.fields["device"].queryset = Device.objects.filter(farm=farm)  # type: ignore[attr-defined]
        self.fields["sensor"].queryset = Sensor.objects.filter(device__farm=farm).select_related("device")  # type: ignore[attr-defined]
        members = Membership.objects.filter(farm=farm, user__is_active=True)
        users = self.fields["notify_users"]
        assert isinstance(users, _MemberChoice)
        users.queryset = User.objects.filter(pk__in=members.values("user_id")).order_by("first_name", "username")
        users.roles = dict(members.values_list("user_id", "role"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        spec = RuleSpec(
            name=data["name"],
            metric=data["metric"],
            kind=data["kind"],
            severity=data["severity"],
            scope=data["scope"],
            field=data.get("field"),
            device=data.get("device"),
            sensor=data.get("sensor"),
            threshold=data.get("threshold"),
            threshold_high=data.get("threshold_high"),
            clear=data.get("clear"),
            clear_high=data.get("clear_high"),
            for_seconds=(data.get("for_minutes") or 0) * 60,
            clear_for_seconds=(data.get("clear_for_minutes") or 0) * 60,
            remind_seconds=data["remind_minutes"] * 60 if data.get("remind_minutes") else None,
            escalate_seconds=data["escalate_minutes"] * 60 if data.get("escalate_minutes") else None,
            notify_roles=roles_in_order(data.get("notify_roles") or ()),
            notify_users=tuple(sorted(user.pk for user in data.get("notify_users") or ())),
            notify_resolved=bool(data.get("notify_resolved")),
            note=data.get("note", ""),
            enabled=bool(data.get("enabled")),
            muted_until=data.get("muted_until"),
        )
        errors = spec_errors(self.farm, spec)
        rivals = AlertRule.objects.filter(farm=self.farm, name=spec.name)
        if self.initial.get("id"):
            rivals = rivals.exclude(pk=self.initial["id"])
        if rivals.exists():
            errors["name"] = "This farm already has a rule with that name."
        for name, message in errors.items():
            self.add_error(_FORM_FIELD.get(name, name), message)
        self.spec = None if errors else spec
        return data


def initial_of(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        "metric": rule.metric,
        "kind": rule.kind,
        "threshold": rule.threshold,
        "threshold_high": rule.threshold_high,
        "clear": rule.clear,
        "clear_high": rule.clear_high,
        "for_minutes": rule.for_seconds // 60,
        "clear_for_minutes": rule.clear_for_seconds // 60,
        "remind_minutes": rule.remind_seconds // 60 if rule.remind_seconds else None,
        "escalate_minutes": rule.escalate_seconds // 60 if rule.escalate_seconds else None,
        "notify_roles": list(rule.notify_roles),
        "notify_users": list(rule.notify_users.values_list("pk", flat=True)),
        "notify_resolved": rule.notify_resolved,
        "scope": rule.scope,
        "field": rule.field_id,
        "device": rule.device_id,
        "sensor": rule.sensor_id,
        "severity": rule.severity,
        "note": rule.note,
        "enabled": rule.enabled,
        "muted_until": rule.muted_until,
    }


class AcknowledgeForm(forms.Form):
    comment = forms.CharField(
        required=False, max_length=2000, widget=_control(forms.TextInput(attrs={"placeholder": "Comment (optional)"}))
    )
