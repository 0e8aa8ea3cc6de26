"""The bell's unread count for the header of every signed-in page (templates/base.html)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from notifications.selectors import inbox_unread_count


def bell(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: a page that does not render the header (an error page, JSON) does not count.
    return {"bell_unread": SimpleLazyObject(lambda: inbox_unread_count(user.pk))}
