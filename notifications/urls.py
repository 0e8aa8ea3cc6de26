"""The Notifications page, the inbox and a farm's failed deliveries.

Each URL has a row in tests/test_permission_matrix.py.
"""

from django.urls import URLPattern, path

from notifications import views

channel = "account/notifications/channels/<int:channel_id>/"

urlpatterns: list[URLPattern] = [
    path("account/notifications/", views.notifications_page, name="account-notifications"),
    path("account/notifications/channels/add", views.channel_add, name="notification-channel-add"),
    path(channel, views.channel_edit, name="notification-channel-edit"),
    path(channel + "delete", views.channel_delete, name="notification-channel-delete"),
    path(channel + "test", views.channel_send_test, name="notification-channel-test"),
    path("account/notifications/inbox/", views.inbox_page, name="notifications-inbox"),
    path("account/notifications/inbox/<int:item_id>/", views.inbox_open, name="notifications-inbox-open"),
    path("account/notifications/inbox/read-all", views.inbox_read_all, name="notifications-inbox-read-all"),
    path("farms/<slug:farm_ref>/notifications/failed/", views.farm_failed_deliveries, name="farm-failed-deliveries"),
]
