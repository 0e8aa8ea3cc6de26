"""Admin for device kinds, devices, sensors, unknown devices, dead letters and skipped fields.

Thin by design: every write goes through ``sensors.services``; pages read
through ``sensors.selectors`` (readings through ``sensors.history.selectors``);
what the pages display is built by the pure helpers in ``sensors.display``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME, AdminForm
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.core.exceptions import ValidationError
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString

from farm.models import Farm, Field
from sensors import selectors, services
from sensors.display import device_mqtt_help, payload_hex_dump, payload_text_preview
from sensors.history import selectors as history
from sensors.models import (
    DeadLetter,
    Device,
    DeviceKind,
    DeviceStatus,
    MetricSpec,
    Sensor,
    SkippedField,
    UnknownDevice,
)

if TYPE_CHECKING:
    from sensors.history.selectors import SensorWithLatest


def status_badge_html(status: str, label: str) -> SafeString:
    """A coloured badge; the colours are classes in static/css/admin.css (the CSP allows no style attribute)."""
    return format_html('<span class="furrow-status furrow-status-{}">{}</span>', DeviceStatus(status).value, label)


def wrapped(text: str, limit: int = 600) -> SafeString:
    """Long text that wraps in a list instead of widening the table (no horizontal scrolling)."""
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return format_html('<div class="furrow-wrap">{}</div>', shown)


class IngestRecordsMedia:
    css = {"all": ["sensors/admin.css"]}


# --- Kinds -------------------------------------------------------------------


class MetricSpecInline(admin.TabularInline):
    model = MetricSpec
    fields = ["key", "label", "unit", "min_value", "max_value"]
    extra = 0


@admin.register(DeviceKind)
class DeviceKindAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "expected_interval", "metric_keys", "device_count"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MetricSpecInline]
    actions = ["add_missing_sensors"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeviceKind]:
        return selectors.kind_list()

    @admin.display(description="metrics")
    def metric_keys(self, kind: DeviceKind) -> str:
        return ", ".join(metric.key for metric in kind.metrics.all())

    @admin.display(description="devices", ordering="device_count")
    def device_count(self, kind: DeviceKind) -> int:
        return kind.device_count  # type: ignore[attr-defined]

    @admin.action(description="Add missing sensors to devices of the selected kinds", permissions=["change"])
    def add_missing_sensors(self, request: HttpRequest, queryset: QuerySet[DeviceKind]) -> None:
        created = sum(services.kind_sensors_sync(kind=kind) for kind in queryset)
        self.message_user(request, f"Created {created} sensor(s).", messages.SUCCESS)


# --- Devices -----------------------------------------------------------------


class FieldListFilter(admin.RelatedFieldListFilter):
    """Field choices with their farm in one query (the default filter would query each field's farm)."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [(str(choice.pk), str(choice)) for choice in Field.objects.select_related("farm")]


class SensorInlineForm(forms.ModelForm):
    class Meta:
        model = Sensor
        fields = ["label", "unit", "min_value", "max_value", "needs_review"]
        widgets = {
            "label": forms.TextInput(attrs={"size": 22}),
            "unit": forms.TextInput(attrs={"size": 6}),
            "min_value": forms.NumberInput(attrs={"class": "furrow-narrow"}),
            "max_value": forms.NumberInput(attrs={"class": "furrow-narrow"}),
        }


class SensorInline(admin.TabularInline):
    model = Sensor
    form = SensorInlineForm
    fields = ["key", "label", "unit", "min_value", "max_value", "needs_review", "latest"]
    readonly_fields = ["key", "latest"]
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[SensorWithLatest]:
        return history.with_latest(super().get_queryset(request))

    @admin.display(description="last reading")
    def latest(self, sensor: SensorWithLatest) -> str:
        if sensor.last_value is None or sensor.last_ts is None:
            return "none yet"
        return f"{sensor.last_value:g} {sensor.unit} · {naturaltime(sensor.last_ts)}".replace("  ", " ")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Sensors come from the device's kind (or from the ingest worker for unlisted metrics).
        return False


class NeedsReviewFilter(admin.SimpleListFilter):
    title = "needs review"
    parameter_name = "needs_review"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Device]) -> QuerySet[Device]:
        if self.value() in ("yes", "no"):
            # ``needs_review`` is the annotation of selectors.device_list().
            return queryset.filter(needs_review=self.value() == "yes")  # type: ignore[misc]
        return queryset


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "uid", "status_badge", "last_seen_ago", "enabled", "review", "where", "kind"]
    list_filter = ["farm", ("field", FieldListFilter), "kind", "status", "enabled", NeedsReviewFilter]
    search_fields = ["uid", "name"]
    list_select_related = ["farm", "field__farm", "kind"]
    list_per_page = 50
    actions = ["enable_devices", "disable_devices", "mark_reviewed"]
    readonly_fields = ["status_badge", "last_seen", "battery", "rssi", "snr", "created_at", "updated_at", "mqtt_help",
                       "skipped_fields"]  # fmt: skip
    Media = IngestRecordsMedia
    add_fieldsets = [
        (None, {"fields": ["uid", "name", "kind"]}),
        ("Where", {"fields": ["farm", "field"]}),
        ("Reporting", {"fields": ["enabled", "expected_interval"]}),
    ]
    change_fieldsets = [
        *add_fieldsets,
        ("Link health", {"fields": ["status_badge", "last_seen", ("battery", "rssi", "snr")]}),
        ("Publishing over MQTT", {"fields": ["mqtt_help"]}),
        ("Skipped fields of stored messages", {"fields": ["skipped_fields"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Device]:
        return selectors.device_list()

    def get_fieldsets(self, request: HttpRequest, obj: Device | None = None) -> Any:
        return self.change_fieldsets if obj is not None else self.add_fieldsets

    def get_inlines(self, request: HttpRequest, obj: Device | None) -> list[type[admin.options.InlineModelAdmin]]:
        return [SensorInline] if obj is not None else []

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if formfield is not None and db_field.name == "uid":
            # The admin renders help text as HTML, where "farm/<uid>/…" would lose "<uid>" as an unknown tag.
            formfield.help_text = escape(formfield.help_text)
        return formfield

    def response_add(self, request: HttpRequest, obj: Device, post_url_continue: str | None = None) -> HttpResponse:
        response = super().response_add(request, obj, post_url_continue)
        if "_addanother" in request.POST or IS_POPUP_VAR in request.POST:
            return response
        # The device's page is where its topic and the test-reading help are: the next thing a new device needs.
        return HttpResponseRedirect(reverse("admin:sensors_device_change", args=[obj.pk]))

    def formfield_for_foreignkey(self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "field":
            kwargs["queryset"] = Field.objects.select_related("farm")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Device, form: forms.ModelForm, change: bool) -> None:
        if not change:
            services.device_create(device=obj)
            return
        super().save_model(request, obj, form, change)
        if "kind" in form.changed_data:
            services.device_sensors_sync(device=obj)

    @admin.display(description="status", ordering="status")
    def status_badge(self, device: Device) -> SafeString:
        return status_badge_html(device.status, device.get_status_display())

    @admin.display(description="skipped fields")
    def skipped_fields(self, device: Device) -> SafeString:
        # A read-only section, not an inline: an inline formset would have to be posted with every save.
        rows = selectors.device_skipped_fields(device_id=device.pk)
        if not rows:
            return SafeString("None: every field of its stored messages was stored.")
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (row.field, row.get_category_display(), wrapped(row.reason), row.example, row.count,
                 naturaltime(row.first_seen), naturaltime(row.last_seen))
                for row in rows
            ),
        )  # fmt: skip
        head = "".join(f"<th>{h}</th>" for h in ("field", "category", "reason", "example", "count", "first", "last"))
        return format_html('<table class="furrow-skipped"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
                           SafeString(head), body)  # fmt: skip

    @admin.display(description="needs review", boolean=True, ordering="needs_review")
    def review(self, device: Device) -> bool:
        return bool(getattr(device, "needs_review", False))

    @admin.action(description="Mark selected devices as reviewed", permissions=["change"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        changed = services.devices_mark_reviewed(devices=queryset)
        self.message_user(request, f"Marked {changed} sensor(s) as reviewed.", messages.SUCCESS)

    @admin.display(description="farm / field", ordering="farm__name")
    def where(self, device: Device) -> str:
        return f"{device.farm.name} / {device.field.name}" if device.field else device.farm.name

    @admin.display(description="last seen", ordering="last_seen")
    def last_seen_ago(self, device: Device) -> str:
        return naturaltime(device.last_seen) if device.last_seen else "never"

    @admin.display(description="MQTT")
    def mqtt_help(self, device: Device) -> SafeString:
        help_ = device_mqtt_help(
            uid=device.uid, metrics=device.kind.metrics.all(), mqtt_url=settings.MQTT_URL, ca_file=settings.MQTT_CA_FILE
        )
        return SafeString(render_to_string("admin/sensors/device/mqtt_help.html", {"help": help_, "device": device}))

    @admin.action(description="Enable selected devices", permissions=["change"])
    def enable_devices(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        changed = services.devices_set_enabled(devices=queryset, enabled=True)
        self.message_user(request, f"Enabled {changed} device(s).", messages.SUCCESS)

    @admin.action(description="Disable selected devices", permissions=["change"])
    def disable_devices(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        changed = services.devices_set_enabled(devices=queryset, enabled=False)
        self.message_user(request, f"Disabled {changed} device(s).", messages.SUCCESS)


# --- Sensors -----------------------------------------------------------------


@admin.register(Sensor)
class SensorAdmin(admin.ModelAdmin):
    list_display = ["__str__", "key", "unit", "needs_review", "last_value", "last_reading_at"]
    list_filter = ["needs_review", "device__farm", "device__kind"]
    search_fields = ["key", "label", "device__uid", "device__name"]
    list_select_related = ["device__farm", "device__kind"]
    fields = [
        "device",
        "key",
        "label",
        "unit",
        ("min_value", "max_value"),
        "needs_review",
        "last_value",
        "last_reading_at",
    ]
    readonly_fields = ["device", "key", "last_value", "last_reading_at", "recent_readings"]
    actions = ["mark_reviewed"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SensorWithLatest]:
        return selectors.sensor_list()

    def get_fields(self, request: HttpRequest, obj: Sensor | None = None) -> Any:
        return [*self.fields, "recent_readings"] if obj is not None else self.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # Both read the annotations of ``get_queryset`` (the newest reading), and sort on them.
    @admin.display(description="last value", ordering="last_value")
    def last_value(self, sensor: SensorWithLatest) -> float | None:
        return sensor.last_value

    @admin.display(description="last reading at", ordering="last_ts")
    def last_reading_at(self, sensor: SensorWithLatest) -> Any:
        return sensor.last_ts

    @admin.display(description="latest readings")
    def recent_readings(self, sensor: Sensor) -> SafeString:
        # Readings have a composite primary key, which Django 5.2's admin cannot register: show them here.
        readings = history.sensor_readings_latest(sensor_id=sensor.pk, limit=50)
        return SafeString(
            render_to_string("admin/sensors/sensor/recent_readings.html", {"sensor": sensor, "readings": readings})
        )

    @admin.action(description="Mark selected sensors as reviewed", permissions=["change"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Sensor]) -> None:
        changed = services.sensors_mark_reviewed(sensors=queryset)
        self.message_user(request, f"Marked {changed} sensor(s) as reviewed.", messages.SUCCESS)


# --- Unknown devices -----------------------------------------------------------


class FieldChoiceField(ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.farm.name} / {obj.name}"


class RegisterUnknownDevicesForm(forms.Form):
    farm = forms.ModelChoiceField(queryset=Farm.objects.all())
    field = FieldChoiceField(
        queryset=Field.objects.select_related("farm"), required=False, help_text="Optional; must be on the farm."
    )
    kind = forms.ModelChoiceField(queryset=DeviceKind.objects.all(), help_text="What the devices measure.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        farm, field = data.get("farm"), data.get("field")
        if farm and field and field.farm_id != farm.pk:
            self.add_error("field", f"{field.name} is on {field.farm.name}, not on {farm.name}.")
        return data


@admin.register(UnknownDevice)
class UnknownDeviceAdmin(admin.ModelAdmin):
    list_display = ["uid", "source", "topic", "message_count", "first_seen", "last_seen", "payload_preview"]
    list_filter = ["source"]
    search_fields = ["uid", "topic"]
    readonly_fields = ["uid", "source", "topic", "message_count", "first_seen", "last_seen", "last_payload"]
    actions = ["register_devices"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UnknownDevice]:
        return selectors.unknown_device_list()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_register_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sensors.add_device")

    @admin.display(description="last payload")
    def payload_preview(self, row: UnknownDevice) -> str:
        return row.last_payload if len(row.last_payload) <= 80 else row.last_payload[:79] + "…"

    @admin.action(description="Register selected devices…", permissions=["register"])
    def register_devices(self, request: HttpRequest, queryset: QuerySet[UnknownDevice]) -> TemplateResponse | None:
        form = RegisterUnknownDevicesForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                devices = services.unknown_devices_register(unknown=queryset, **form.cleaned_data)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                self.message_user(request, f"Registered {len(devices)} device(s).", messages.SUCCESS)
                return None
        # AdminForm renders any form like the admin's own pages (errors beside fields); the stubs say ModelForm.
        adminform = AdminForm(form, [(None, {"fields": ["farm", "field", "kind"]})], {}, model_admin=self)  # type: ignore[arg-type]
        context = {
            **self.admin_site.each_context(request),
            "title": "Register unknown devices",
            "opts": self.model._meta,
            "form": form,
            "adminform": adminform,
            "queryset": queryset,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/sensors/unknowndevice/register.html", context)


# --- Dead letters ----------------------------------------------------------------


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["received_at", "last_received_at", "count", "category", "source", "topic_wrapped", "short_reason",
                    "payload_size"]  # fmt: skip
    list_filter = ["category", "source"]
    Media = IngestRecordsMedia
    search_fields = ["topic", "reason"]
    date_hierarchy = "received_at"
    fields = ["received_at", "last_received_at", "count", "category", "source", "topic", "reason", "payload_size",
              "payload_text", "payload_hex"]  # fmt: skip
    readonly_fields = ["received_at", "last_received_at", "count", "category", "source", "topic", "reason",
                       "payload_size", "payload_text", "payload_hex"]  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeadLetter]:
        return selectors.dead_letter_list()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="reason")
    def short_reason(self, letter: DeadLetter) -> SafeString:
        return wrapped(letter.reason)

    @admin.display(description="topic", ordering="topic")
    def topic_wrapped(self, letter: DeadLetter) -> SafeString:
        return wrapped(letter.topic, 200)

    @admin.display(description="payload (text, escaped)")
    def payload_text(self, letter: DeadLetter) -> SafeString:
        stored = bytes(letter.payload)
        note = (
            f"Stored the first {len(stored)} of {letter.payload_size} bytes."
            if letter.payload_size > len(stored)
            else ""
        )
        return format_html('<pre class="furrow-payload">{}</pre><p>{}</p>', payload_text_preview(stored), note)

    @admin.display(description="payload (hex)")
    def payload_hex(self, letter: DeadLetter) -> SafeString:
        return format_html("<pre>{}</pre>", payload_hex_dump(bytes(letter.payload)))


# --- Skipped fields of stored messages ---------------------------------------------


@admin.register(SkippedField)
class SkippedFieldAdmin(admin.ModelAdmin):
    list_display = ["device", "field", "category", "reason_wrapped", "example", "count", "first_seen", "last_seen"]
    list_filter = ["category", "device__farm"]
    search_fields = ["device__uid", "device__name", "field"]
    list_select_related = ["device__farm"]
    date_hierarchy = "last_seen"
    Media = IngestRecordsMedia

    def get_queryset(self, request: HttpRequest) -> QuerySet[SkippedField]:
        return selectors.skipped_field_list()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="reason")
    def reason_wrapped(self, row: SkippedField) -> SafeString:
        return wrapped(row.reason)
