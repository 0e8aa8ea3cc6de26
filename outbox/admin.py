from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from outbox.models import OutboxMessage
from outbox.services import outbox_retry


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("pending", "Pending"), ("failed", "Failed"), ("processed", "Processed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> QuerySet[OutboxMessage]:
        value = self.value()
        if value == "pending":
            return queryset.filter(processed_at__isnull=True, failed_at__isnull=True)
        if value == "failed":
            return queryset.filter(failed_at__isnull=False)
        if value == "processed":
            return queryset.filter(processed_at__isnull=False)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "topic", "state", "attempts", "created_at", "available_at", "processed_at", "last_error")
    list_filter = (StateFilter, "topic")
    search_fields = ("topic", "key")
    ordering = ("-id",)
    actions = ["retry"]
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OutboxMessage | None = None) -> bool:
        return False

    @admin.action(description="Retry the selected failed messages")
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        count = outbox_retry(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} failed message(s) will be retried.", messages.SUCCESS)
