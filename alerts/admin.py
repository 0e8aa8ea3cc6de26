from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from alerts.models import NOTIFY_ROLES, AlertAudit, AlertEpisode, AlertRule
from alerts.services import rule_admin_saved, rule_delete


class AlertRuleAdminForm(ModelForm):
    # Checkboxes rather than the array's comma-separated text: only real roles can be saved.
    # No Meta: the admin supplies the model and its fields (modelform_factory).
    notify_roles = forms.MultipleChoiceField(
        choices=[(role, role) for role in NOTIFY_ROLES], required=False, widget=forms.CheckboxSelectMultiple
    )


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleAdminForm
    list_display = ("name", "farm", "metric", "kind", "severity", "enabled", "muted_until", "updated_at")
    list_filter = ("farm", "kind", "severity", "enabled")
    search_fields = ("name", "metric")
    readonly_fields = ("created_by", "updated_by", "created_at", "updated_at")
    filter_horizontal = ("notify_users",)

    # Admin edits are audited and reset states like edits in the app (alerts.services).
    def save_model(self, request: HttpRequest, obj: AlertRule, form: ModelForm, change: bool) -> None:
        initial: dict[str, Any] = dict(form.initial)
        obj.updated_by = request.user  # type: ignore[assignment]
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        rule_admin_saved(
            rule=obj,
            actor=request.user,  # type: ignore[arg-type]  # the admin requires a staff user
            initial=initial,
            cleaned=form.cleaned_data,
            changed=list(form.changed_data),
            created=not change,
        )

    def delete_model(self, request: HttpRequest, obj: AlertRule) -> None:
        rule_delete(rule=obj, actor=request.user, source="admin")  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        for rule in queryset:
            rule_delete(rule=rule, actor=request.user, source="admin")  # type: ignore[arg-type]


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
