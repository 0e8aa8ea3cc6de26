"""Devices, their sensors and readings, and what the ingest pipeline could not store."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from farm.models import Farm, Field

UID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEVEUI_PATTERN = re.compile(r"[0-9A-Fa-f]{16}")
METRIC_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
DEAD_LETTER_MAX_BYTES = 8 * 1024
# No sensor on earth reports a value beyond this: the ingest worker skips such a value with
# a reason instead of storing it (a 1e155 would overflow avg(float8) in every chart query).
MAX_ABS_VALUE = 1e12


def normalize_uid(value: str) -> str:
    """A 16-hex-digit uid is a LoRaWAN DevEUI: store it lower-case."""
    value = value.strip()
    return value.lower() if DEVEUI_PATTERN.fullmatch(value) else value


def _describe_uid_char(ch: str) -> str:
    if ch == "/":
        return "'/' (the MQTT topic separator)"
    if ch in "+#":
        return f"{ch!r} (an MQTT wildcard)"
    if ch.isspace():
        return "a space" if ch == " " else f"whitespace {ch!r}"
    if not ch.isascii():
        return f"{ch!r} (not ASCII)"
    return repr(ch)


def validate_uid(value: str) -> None:
    if UID_PATTERN.fullmatch(value):
        return
    if not value:
        raise ValidationError("A device uid cannot be empty.", code="uid_empty")
    if len(value) > 64:
        raise ValidationError(f"A device uid is at most 64 characters (this one has {len(value)}).", code="uid_long")
    bad = sorted({ch for ch in value if not UID_PATTERN.fullmatch(ch)})
    shown = ", ".join(_describe_uid_char(ch) for ch in bad[:5])
    raise ValidationError(
        f"A device uid may use only letters A–Z, digits, '-' and '_' (it is part of the MQTT topic "
        f"farm/<uid>/telemetry); found {shown}.",
        code="uid_chars",
    )


def validate_metric_key(value: str) -> None:
    if not METRIC_KEY_PATTERN.fullmatch(value):
        raise ValidationError(
            "A metric key is lower-case letters, digits and '_', starting with a letter (e.g. soil_moisture).",
            code="metric_key",
        )


class DeviceKind(models.Model):
    """A profile shared by many devices: what they measure and how often they report."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    description = models.TextField(blank=True)
    expected_interval = models.PositiveIntegerField(
        "expected interval (s)",
        default=900,
        validators=[MinValueValidator(1)],
        help_text="How often a device of this kind reports, in seconds.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(expected_interval__gte=1), name="kind_interval_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class MetricSpec(models.Model):
    kind = models.ForeignKey(DeviceKind, on_delete=models.CASCADE, related_name="metrics")
    key = models.CharField(max_length=64, validators=[validate_metric_key])
    label = models.CharField(max_length=120)
    unit = models.CharField(max_length=24, blank=True)
    min_value = models.FloatField("plausible min", null=True, blank=True)
    max_value = models.FloatField("plausible max", null=True, blank=True)

    class Meta:
        ordering = ["kind", "id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "key"], name="metricspec_unique_key_per_kind"),
            models.CheckConstraint(
                condition=models.Q(key__regex=r"^[a-z][a-z0-9_]{0,63}$"), name="metricspec_key_format"
            ),
            models.CheckConstraint(
                condition=models.Q(min_value__isnull=True)
                | models.Q(max_value__isnull=True)
                | models.Q(min_value__lte=models.F("max_value")),
                name="metricspec_min_le_max",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


class DeviceStatus(models.TextChoices):
    UNKNOWN = "unknown", "Never seen"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"


class Device(models.Model):
    uid = models.CharField(
        "uid",
        max_length=64,
        unique=True,
        validators=[validate_uid],
        help_text="The MQTT identity (farm/<uid>/…) or the LoRaWAN DevEUI (16 hex digits, stored lower-case).",
    )
    name = models.CharField(max_length=120)
    farm = models.ForeignKey(Farm, on_delete=models.CASCADE, related_name="devices")
    field = models.ForeignKey(Field, on_delete=models.SET_NULL, null=True, blank=True, related_name="devices")
    kind = models.ForeignKey(DeviceKind, on_delete=models.PROTECT, related_name="devices")
    enabled = models.BooleanField(default=True)
    expected_interval = models.PositiveIntegerField(
        "expected interval (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Leave empty to use the kind's interval.",
    )
    status = models.CharField(max_length=16, choices=DeviceStatus.choices, default=DeviceStatus.UNKNOWN)
    last_seen = models.DateTimeField(null=True, blank=True)
    battery = models.FloatField("battery (%)", null=True, blank=True)
    rssi = models.FloatField("RSSI (dBm)", null=True, blank=True)
    snr = models.FloatField("SNR (dB)", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["farm", "name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(uid__regex=r"^[A-Za-z0-9_-]{1,64}$"), name="device_uid_charset"),
            models.CheckConstraint(
                condition=~models.Q(uid__regex=r"^[0-9A-Fa-f]{16}$") | models.Q(uid__regex=r"^[0-9a-f]{16}$"),
                name="device_deveui_lowercase",
            ),
            models.CheckConstraint(condition=models.Q(status__in=DeviceStatus.values), name="device_status_valid"),
            models.CheckConstraint(
                condition=models.Q(expected_interval__isnull=True) | models.Q(expected_interval__gte=1),
                name="device_interval_positive",
            ),
            # The field-in-farm rule is also a composite foreign key (field_id, farm_id) →
            # farm_field (id, farm_id), declared in SQL in migration 0003.
        ]
        indexes = [
            # Farm dashboard and farm list: devices of one farm by status.
            models.Index(fields=["farm", "status"], name="device_farm_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.uid})"

    @property
    def interval_seconds(self) -> int:
        return self.expected_interval or self.kind.expected_interval

    def clean(self) -> None:
        self.uid = normalize_uid(self.uid or "")
        field = self.field if self.field_id else None
        if field is not None and self.farm_id and field.farm_id != self.farm_id:
            raise ValidationError({"field": f"{field.name} is on farm {field.farm.name}, not on this device's farm."})


class Sensor(models.Model):
    """One metric of one device; readings hang off it."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="sensors")
    key = models.CharField(max_length=64, validators=[validate_metric_key])
    label = models.CharField(max_length=120)
    unit = models.CharField(max_length=24, blank=True)
    min_value = models.FloatField("plausible min", null=True, blank=True)
    max_value = models.FloatField("plausible max", null=True, blank=True)
    needs_review = models.BooleanField(
        default=False, help_text="Created by the ingest worker for a metric the device's kind does not list."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["device", "id"]
        constraints = [
            models.UniqueConstraint(fields=["device", "key"], name="sensor_unique_key_per_device"),
            models.CheckConstraint(condition=models.Q(key__regex=r"^[a-z][a-z0-9_]{0,63}$"), name="sensor_key_format"),
            models.CheckConstraint(
                condition=models.Q(min_value__isnull=True)
                | models.Q(max_value__isnull=True)
                | models.Q(min_value__lte=models.F("max_value")),
                name="sensor_min_le_max",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.device.name} · {self.label}"


class Reading(models.Model):
    """The one big table: narrow rows written with COPY, idempotent on (sensor, ts).

    The primary key (sensor_id, ts) makes a redelivered message harmless
    (ON CONFLICT DO NOTHING) and serves every chart query: one sensor over a
    time range. There is no foreign key to sensor in the database: its per-row
    check cost ~155–200 ms per 50,000-reading ingest batch (about 40% of the
    store). Instead the ingest store, the only writer, locks every sensor of a
    batch and fails the batch if one is gone, and an AFTER DELETE trigger on
    sensors deletes their readings in one statement, so deleting a sensor, its
    device or its farm never loads readings into Python (migration 0006). The
    trigger needs READ COMMITTED (Django's default) and refuses otherwise; a
    TRUNCATE of sensors alone would bypass it (truncate readings with it).
    """

    pk = models.CompositePrimaryKey("sensor_id", "ts")
    sensor = models.ForeignKey(
        Sensor, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="readings"
    )
    ts = models.DateTimeField()
    value = models.FloatField()

    class Meta:
        managed = True

    def __str__(self) -> str:
        return f"{self.sensor_id} @ {self.ts:%Y-%m-%d %H:%M:%S}: {self.value}"


class NumericField(models.DecimalField):
    """PostgreSQL ``numeric`` without precision or scale: sums of float8 values, exact in any order."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("max_digits", 1000)
        kwargs.setdefault("decimal_places", 0)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def db_type(self, connection: object) -> str:
        return "numeric"

    def get_db_prep_value(self, value: object, connection: object, prepared: bool = False) -> object:
        return value


class Rollup(models.Model):
    """One bucket of a sensor's finite readings: count, exact sum, min, max, first and last.

    Kept in the batch's transaction by ``sensors.history.rollups`` from each batch's new
    readings, so a bucket always equals a recompute from the raw readings it covers --
    late, backfilled and redelivered readings included. ``sum`` is ``numeric``: float
    addition depends on order, a numeric sum does not, so the upsert's running total is
    exactly what one ``sum()`` over the raw rows gives. Values are clamped to ±1e250 before
    summing, as the selectors do. Rollups never expire with the raw readings.
    """

    sensor = models.ForeignKey(
        Sensor, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    count = models.BigIntegerField()
    sum = NumericField()
    min = models.FloatField()
    max = models.FloatField()
    first_ts = models.DateTimeField()
    first_value = models.FloatField()
    last_ts = models.DateTimeField()
    last_value = models.FloatField()

    class Meta:
        abstract = True


class RollupHour(Rollup):
    """A UTC hour, ``bucket`` its start. Serves every series wider than the raw window."""

    pk = models.CompositePrimaryKey("sensor_id", "bucket")
    bucket = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.sensor_id} @ {self.bucket:%Y-%m-%d %H:00}: {self.count} readings"


class RollupDay(Rollup):
    """A local day of the sensor's farm (23 or 25 hours when the clocks change). Serves rain bars and summaries."""

    pk = models.CompositePrimaryKey("sensor_id", "day")
    day = models.DateField()

    def __str__(self) -> str:
        return f"{self.sensor_id} on {self.day}: {self.count} readings"


class UnknownDevice(models.Model):
    """A uid seen on the broker that no registered device has; an admin may register it."""

    uid = models.CharField(max_length=64, unique=True)
    source = models.CharField(max_length=16, blank=True, help_text="native, chirpstack or ttn")
    topic = models.CharField(max_length=512)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    message_count = models.PositiveBigIntegerField(default=0)
    last_payload = models.TextField(blank=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return self.uid


class RejectCategory(models.TextChoices):
    """Why a whole message became a dead letter, in a few groups an admin can filter on."""

    TOPIC = "topic", "Topic or device id"
    PAYLOAD = "payload", "Not JSON, too large or malformed"
    NO_VALUES = "no_values", "Nothing storable"
    TIME = "time", "Timestamp out of window"
    RETAINED = "retained", "Retained telemetry"
    STATUS = "status", "Bad status"
    DISABLED = "disabled", "Disabled device"
    METRIC_LIMIT = "metric_limit", "Too many new metrics"
    INTERNAL = "internal", "Internal error"


class SkipCategory(models.TextChoices):
    """Why one field of a stored message was skipped."""

    NOT_NUMERIC = "not_numeric", "Not a number (text, null, list)"
    NOT_FINITE = "not_finite", "NaN or infinite"
    TOO_LARGE = "too_large", "Beyond the absolute bound"
    INVALID_KEY = "invalid_key", "Invalid metric key"
    TOO_DEEP = "too_deep", "Nested too deeply"
    DUPLICATE = "duplicate", "Duplicate or ignored key"
    BAD_ELEMENT = "bad_element", "Bad element of an array"
    METRIC_LIMIT = "metric_limit", "Too many new metrics"


class DeadLetter(models.Model):
    """A message the ingest worker rejected, with the reason in plain words.

    One row per distinct message (topic and payload bytes): a redelivery, or the same
    bad message sent again, adds to ``count`` and moves ``last_received_at``.
    """

    # sha256 hex of the length-prefixed topic bytes and the whole payload; the ingest
    # worker upserts on it. NULL (not "", which would collide on the unique constraint)
    # on rows stored before it existed: their full payload is not kept to hash.
    fingerprint = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001
    received_at = models.DateTimeField("first received")
    last_received_at = models.DateTimeField("last received")
    count = models.PositiveBigIntegerField("deliveries", default=1)
    topic = models.CharField(max_length=512)
    payload = models.BinaryField(help_text=f"The raw bytes, up to {DEAD_LETTER_MAX_BYTES}.")
    payload_size = models.PositiveIntegerField()
    reason = models.TextField()
    category = models.CharField(max_length=16, choices=RejectCategory.choices, default=RejectCategory.INTERNAL)
    source = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            # The ingest worker's INSERT … ON CONFLICT (fingerprint) dedupe.
            models.UniqueConstraint(fields=["fingerprint"], name="deadletter_unique_fingerprint"),
            models.CheckConstraint(condition=models.Q(count__gte=1), name="deadletter_count_positive"),
            models.CheckConstraint(
                condition=models.Q(category__in=RejectCategory.values), name="deadletter_category_valid"
            ),
        ]
        indexes = [
            # Admin list: newest dead letters first.
            models.Index(fields=["-received_at"], name="deadletter_received_idx"),
            # The purge task: rows whose last delivery is older than the retention age.
            models.Index(fields=["last_received_at"], name="deadletter_last_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.topic}: {self.reason[:60]}"


class SkippedField(models.Model):
    """A field of a device's stored messages that was not stored, counted per (device, field).

    A message with some good readings is stored and is not a dead letter; what it carried
    that could not be stored (text, NaN, an invalid key, a metric over the device's limit)
    is counted here, one row per device and field, upserted once per ingest batch.
    """

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="skipped_fields")
    # The payload key as sent (escaped, clipped), "ts" or "(element)" for a whole element of an array.
    field = models.CharField(max_length=128)
    category = models.CharField(max_length=16, choices=SkipCategory.choices)
    reason = models.TextField()
    example = models.TextField(blank=True, help_text="An excerpt of the latest skipped value.")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=1)

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            # The ingest worker's INSERT … ON CONFLICT (device_id, field) upsert.
            models.UniqueConstraint(fields=["device", "field"], name="skippedfield_unique_device_field"),
            models.CheckConstraint(condition=models.Q(count__gte=1), name="skippedfield_count_positive"),
            models.CheckConstraint(
                condition=models.Q(category__in=SkipCategory.values), name="skippedfield_category_valid"
            ),
        ]
        indexes = [
            # The admin list (newest first) and the purge task (last seen before a cutoff).
            models.Index(fields=["last_seen"], name="skippedfield_last_seen_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.device_id} · {self.field}: {self.reason[:60]}"
