from __future__ import annotations

from django.contrib import admin

from alerts.models import AlertAudit, AlertEpisode, AlertRule


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "farm", "metric", "kind", "severity", "enabled", "muted_until", "updated_at")
    list_filter = ("farm", "kind", "severity", "enabled")
    search_fields = ("name", "metric")
    readonly_fields = ("created_by", "updated_by", "created_at", "updated_at")


@admin.register(AlertEpisode)
class AlertEpisodeAdmin(admin.ModelAdmin):
    list_display = ("rule", "sensor", "started_at", "ended_at", "worst_value", "acknowledged_by", "acknowledged_at")
    list_filter = ("rule__farm", "rule__severity")
    list_select_related = ("rule", "sensor", "sensor__device", "acknowledged_by")
    readonly_fields = [f.name for f in AlertEpisode._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(AlertAudit)
class AlertAuditAdmin(admin.ModelAdmin):
    list_display = ("at", "farm", "rule_name", "action", "actor", "source")
    list_filter = ("farm", "action")
    readonly_fields = [f.name for f in AlertAudit._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
