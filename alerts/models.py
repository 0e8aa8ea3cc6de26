"""Alert rules, their per-sensor state, the episodes they record, and the audit trail.

A rule watches one metric over a scope (farm, field, device or sensor). Every sensor the
rule covers gets one ``AlertState``; a firing state points at its open ``AlertEpisode``.
The ingest batch writer (``alerts.writer``) and the periodic sweep (``alerts.sweep``) are
the only writers of states and episodes; people write rules and acknowledgements through
``alerts.services``, each recorded in ``AlertAudit``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q, Value

from farm.models import Farm, Field, Role
from sensors.models import Device, Sensor


class Scope(models.TextChoices):
    FARM = "farm", "Whole farm"
    FIELD = "field", "One field"
    DEVICE = "device", "One device"
    SENSOR = "sensor", "One sensor"


class Kind(models.TextChoices):
    ABOVE = "above", "Above a threshold"
    BELOW = "below", "Below a threshold"
    OUTSIDE = "outside", "Outside a band"
    NO_DATA = "no_data", "No data"
    DEVICE_OFFLINE = "device_offline", "Device offline"


THRESHOLD_KINDS = (Kind.ABOVE, Kind.BELOW, Kind.OUTSIDE)


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class StateName(models.TextChoices):
    OK = "ok", "OK"
    PENDING = "pending", "Pending"
    FIRING = "firing", "Firing"


NOTIFY_ROLES = (Role.OWNER, Role.MANAGER, Role.VIEWER)
"""The roles a rule may tell, in the order the form and the audit list them."""


def default_notify_roles() -> list[str]:
    return [Role.OWNER, Role.MANAGER]


def _scope_check() -> Q:
    """Exactly the foreign key the scope names is set (none for the whole farm)."""
    none = Q(field__isnull=True, device__isnull=True, sensor__isnull=True)
    return (
        (Q(scope=Scope.FARM) & none)
        | Q(scope=Scope.FIELD, field__isnull=False, device__isnull=True, sensor__isnull=True)
        | Q(scope=Scope.DEVICE, field__isnull=True, device__isnull=False, sensor__isnull=True)
        | Q(scope=Scope.SENSOR, field__isnull=True, device__isnull=True, sensor__isnull=False)
    )


def _levels_check() -> Q:
    """Thresholds a kind needs are set, and clear levels sit on the safe side of them (hysteresis)."""
    above = Q(kind=Kind.ABOVE, threshold__isnull=False, clear__isnull=False, clear__lte=F("threshold"))
    below = Q(kind=Kind.BELOW, threshold__isnull=False, clear__isnull=False, clear__gte=F("threshold"))
    outside = Q(
        kind=Kind.OUTSIDE,
        threshold__isnull=False,
        threshold_high__isnull=False,
        clear__isnull=False,
        clear_high__isnull=False,
        threshold__lt=F("threshold_high"),
        clear__gte=F("threshold"),
        clear_high__lte=F("threshold_high"),
        clear__lte=F("clear_high"),
    )
    timed = Q(kind__in=[Kind.NO_DATA, Kind.DEVICE_OFFLINE])
    return above | below | outside | timed


class AlertRule(models.Model):
    farm = models.ForeignKey(Farm, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=120)
    metric = models.CharField(max_length=64, help_text="The metric key the rule watches, e.g. soil_moisture.")
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.FARM)
    field = models.ForeignKey(Field, on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules")
    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BELOW)
    threshold = models.FloatField(null=True, blank=True, help_text="The level (the low edge of a band).")
    threshold_high = models.FloatField(null=True, blank=True, help_text="The high edge of a band.")
    clear = models.FloatField(null=True, blank=True, help_text="Where the alert clears (the low clear edge of a band).")
    clear_high = models.FloatField(null=True, blank=True, help_text="The high clear edge of a band.")
    for_seconds = models.PositiveIntegerField(
        default=0, help_text="How long the condition must hold before firing (for no data: the silence)."
    )
    clear_for_seconds = models.PositiveIntegerField(default=0, help_text="How long the clear condition must hold.")
    remind_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Remind every this many seconds while firing and unacknowledged."
    )
    escalate_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tell the farm's owners once when still unacknowledged this long after firing."
    )
    # db_default too: rules inserted in SQL (tests, benchmarks, operators' scripts) get the same.
    notify_roles = ArrayField(
        models.CharField(max_length=16),
        default=default_notify_roles,
        db_default=Value(
            [Role.OWNER.value, Role.MANAGER.value], output_field=ArrayField(models.CharField(max_length=16))
        ),
        blank=True,
        help_text="The farm's members with these roles are told.",
    )
    notify_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+", help_text="Members told whatever their role."
    )
    notify_resolved = models.BooleanField(
        default=True, db_default=True, help_text="Tell the same people when the alert resolves."
    )
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    note = models.TextField(blank=True, help_text="Shown with every alert of this rule.")
    enabled = models.BooleanField(default=True)
    muted_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["farm", "name"]
        constraints = [
            models.UniqueConstraint(fields=["farm", "name"], name="alertrule_unique_name_per_farm"),
            models.CheckConstraint(
                condition=Q(metric__regex=r"^[a-z][a-z0-9_]{0,63}$"), name="alertrule_metric_format"
            ),
            models.CheckConstraint(condition=Q(scope__in=Scope.values), name="alertrule_scope_valid"),
            models.CheckConstraint(condition=Q(kind__in=Kind.values), name="alertrule_kind_valid"),
            models.CheckConstraint(condition=Q(severity__in=Severity.values), name="alertrule_severity_valid"),
            models.CheckConstraint(condition=_scope_check(), name="alertrule_scope_matches_target"),
            models.CheckConstraint(condition=_levels_check(), name="alertrule_levels_valid"),
            models.CheckConstraint(
                condition=~Q(kind=Kind.NO_DATA) | Q(for_seconds__gt=0), name="alertrule_no_data_has_duration"
            ),
            models.CheckConstraint(
                condition=Q(remind_seconds__isnull=True) | Q(remind_seconds__gte=60), name="alertrule_remind_min"
            ),
            models.CheckConstraint(
                condition=Q(escalate_seconds__isnull=True) | Q(escalate_seconds__gte=60),
                name="alertrule_escalate_min",
            ),
            models.CheckConstraint(
                condition=Q(notify_roles__contained_by=list(NOTIFY_ROLES)), name="alertrule_notify_roles_valid"
            ),
        ]
        indexes = [
            # alerts.writer.RuleIndex fingerprint: count and max(updated_at) of rules.
            models.Index(fields=["updated_at"], name="alertrule_updated_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class AlertEpisode(models.Model):
    """One time a rule fired for one sensor: from firing to resolved, with who acknowledged it."""

    # No index of its own: (rule, -started_at) and (rule, sensor, started_at) lead with it, and
    # the sweep inserts thousands of episodes at once (every index is written for each).
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="episodes", db_index=False)
    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="alert_episodes")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, blank=True, help_text="cleared, or why it was closed otherwise.")
    first_value = models.FloatField(null=True, blank=True)
    worst_value = models.FloatField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When 'fired' went to the outbox (not while the rule was muted)."
    )
    reminders = models.PositiveIntegerField(default=0)
    escalated_at = models.DateTimeField(
        null=True, blank=True, help_text="When the escalation to the farm's owners went to the outbox."
    )
    next_reminder_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    ack_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # One open episode per (rule, sensor): the writer and the sweep rely on it.
            models.UniqueConstraint(
                fields=["rule", "sensor"], condition=Q(ended_at__isnull=True), name="alertepisode_one_open"
            ),
            # The writer maps inserted episodes back to their pair by this key.
            models.UniqueConstraint(fields=["rule", "sensor", "started_at"], name="alertepisode_unique_start"),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")),
                name="alertepisode_end_after_start",
            ),
            models.CheckConstraint(
                condition=Q(acknowledged_at__isnull=True) | Q(acknowledged_at__gte=F("started_at")),
                name="alertepisode_ack_after_start",
            ),
        ]
        indexes = [
            # Alerts page: a farm's open episodes and the recently resolved ones, newest first.
            models.Index(fields=["rule", "-started_at"], name="alertepisode_rule_started_idx"),
            # Sweep: reminders due on open, unacknowledged episodes.
            models.Index(
                fields=["next_reminder_at"],
                name="alertepisode_reminder_idx",
                condition=Q(ended_at__isnull=True, acknowledged_at__isnull=True, next_reminder_at__isnull=False),
            ),
            # Sweep: escalations due on open, unacknowledged, announced episodes not yet escalated.
            models.Index(
                fields=["notified_at"],
                name="alertepisode_escalation_idx",
                condition=Q(
                    ended_at__isnull=True,
                    acknowledged_at__isnull=True,
                    escalated_at__isnull=True,
                    notified_at__isnull=False,
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule} · sensor {self.sensor_id} from {self.started_at:%Y-%m-%d %H:%M}"


class AlertState(models.Model):
    """Where one rule stands for one sensor; the writer and the sweep read and write it in batches."""

    # No indexes of their own: (rule, sensor) leads with the rule, alertstate_sensor_idx is the
    # sensor's; a state that fires changes indexed columns, so every index is written for each.
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states", db_index=False)
    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="alert_states", db_index=False)
    state = models.CharField(max_length=16, choices=StateName.choices, default=StateName.OK)
    since = models.DateTimeField(help_text="When the state was entered (device time for readings).")
    last_ts = models.DateTimeField(null=True, blank=True, help_text="The newest reading evaluated.")
    pending_since = models.DateTimeField(null=True, blank=True)
    clear_since = models.DateTimeField(null=True, blank=True, help_text="Firing, and clear since then.")
    current_value = models.FloatField(null=True, blank=True)
    worst_value = models.FloatField(null=True, blank=True)
    episode = models.ForeignKey(AlertEpisode, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index for the writer's load of a batch's (rule, sensor) pairs.
            models.UniqueConstraint(fields=["rule", "sensor"], name="alertstate_unique_rule_sensor"),
            models.CheckConstraint(condition=Q(state__in=StateName.values), name="alertstate_state_valid"),
            models.CheckConstraint(
                condition=~Q(state=StateName.PENDING) | Q(pending_since__isnull=False),
                name="alertstate_pending_has_start",
            ),
            models.CheckConstraint(
                condition=Q(state=StateName.FIRING) | Q(clear_since__isnull=True), name="alertstate_clear_only_firing"
            ),
        ]
        indexes = [
            # Sweep: the states that may change with time alone (pending, or firing for a timed kind).
            models.Index(fields=["state"], name="alertstate_active_idx", condition=~Q(state=StateName.OK)),
            # Pages: a sensor's states (card badges) without a scan.
            models.Index(fields=["sensor"], name="alertstate_sensor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} · sensor {self.sensor_id}: {self.state}"


class AuditAction(models.TextChoices):
    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    DELETED = "deleted", "Deleted"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"


class AlertAudit(models.Model):
    """Who changed a rule or acknowledged an alert, when, and what changed."""

    farm = models.ForeignKey(Farm, on_delete=models.CASCADE, related_name="alert_audit")
    rule = models.ForeignKey(AlertRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit")
    episode = models.ForeignKey(AlertEpisode, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit")
    rule_name = models.CharField(max_length=120, help_text="Kept when the rule is deleted.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=32, default="web", help_text="web, admin or load_alert_rules.")
    at = models.DateTimeField()
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    changes = models.JSONField(default=dict, help_text="Field → [before, after]; the comment of an acknowledgement.")

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(action__in=AuditAction.values), name="alertaudit_action_valid"),
        ]
        indexes = [
            # Rule page: a farm's audit trail, newest first.
            models.Index(fields=["farm", "-at"], name="alertaudit_farm_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.rule_name}"
