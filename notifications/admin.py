from django.contrib import admin
from django.http import HttpRequest

from notifications.models import Delivery, InboxItem, NotificationChannel, NotificationPrefs


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "kind", "min_severity", "enabled", "last_test_ok"]
    list_filter = ["kind", "enabled", "min_severity"]
    exclude = ["secret", "target"]  # credentials: an Apprise URL carries tokens
    readonly_fields = ["user", "kind", "last_test_at", "last_test_ok", "last_test_error"]


@admin.register(NotificationPrefs)
class NotificationPrefsAdmin(admin.ModelAdmin):
    list_display = ["user", "quiet_start", "quiet_end", "critical_breaks_through", "hourly_cap"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["subject", "user", "channel_label", "kind", "state", "attempts", "created_at", "sent_at"]
    list_filter = ["state", "kind", "severity"]
    search_fields = ["key", "subject", "user__username"]
    readonly_fields = [f.name for f in Delivery._meta.fields]


@admin.register(InboxItem)
class InboxItemAdmin(admin.ModelAdmin):
    """What a person was told in the app, and whether they read it: for support, read-only."""

    list_display = ["subject", "user", "severity", "created_at", "read_at"]
    list_filter = ["severity"]
    search_fields = ["key", "subject", "user__username"]
    readonly_fields = [f.name for f in InboxItem._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
