"""An alert's delivery log, shown on the alert's page through ``alerts.panels`` (alerts never import us).

Who was told, when, on which channel, for which transition, and whether it arrived or why
not. Owners get a link to the farm's undelivered notifications, and anyone whose own
message failed a link to their Notifications page, where the failure stays listed.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from alerts.models import AlertEpisode
from farm.permissions import Action, can
from notifications.alerting import episode_event_keys
from notifications.models import DeliveryState
from notifications.selectors import delivery_log


def delivery_log_panel(request: HttpRequest, episode: AlertEpisode) -> SafeString:
    farm = episode.rule.farm
    rows = delivery_log(event_keys=episode_event_keys(episode))
    failed = [row for row in rows if row.state == DeliveryState.FAILED]
    context = {
        "farm": farm,
        "rows": rows,
        "failed": len(failed),
        "own_failed": any(row.user.pk == request.user.pk for row in failed),
        "farm_failures": can(request.user, farm, Action.MANAGE_TEAM),
    }
    return render_to_string("notifications/_delivery_log.html", context, request=request)
