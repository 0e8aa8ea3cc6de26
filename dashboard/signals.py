"""Revocation: who loses access closes their open dashboard sockets within seconds.

Channels fixes ``scope["user"]`` at connect (docs/architecture.md §6), so these receivers
tell the user's sockets, after commit, through ``dashboard.live``. Receivers
only route; the consumer re-checks access with ``selectors.socket_access``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from farm.models import Membership

from . import live

User = get_user_model()


@receiver(user_logged_out, dispatch_uid="dashboard.close_sockets_on_logout")
def close_sockets_on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None or request is None:
        return
    session_key = request.session.session_key
    if session_key:
        transaction.on_commit(
            partial(live.user_sockets_close, user_id=user.pk, code=live.CLOSE_SIGNED_OUT, session_key=session_key)
        )


@receiver(post_save, sender=User, dispatch_uid="dashboard.recheck_sockets_on_user_save")
def recheck_sockets_on_user_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    # Every login saves last_login; nothing about access changes then.
    if kwargs.get("created") or (update_fields is not None and set(update_fields) == {"last_login"}):
        return
    if not instance.is_active:
        transaction.on_commit(partial(live.user_sockets_close, user_id=instance.pk, code=live.CLOSE_SIGNED_OUT))
    else:
        transaction.on_commit(partial(live.user_access_recheck, user_id=instance.pk))


@receiver(post_delete, sender=User, dispatch_uid="dashboard.close_sockets_on_user_delete")
def close_sockets_on_user_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    transaction.on_commit(partial(live.user_sockets_close, user_id=instance.pk, code=live.CLOSE_SIGNED_OUT))


@receiver(post_delete, sender=Membership, dispatch_uid="dashboard.recheck_sockets_on_membership_delete")
@receiver(post_save, sender=Membership, dispatch_uid="dashboard.recheck_sockets_on_membership_save")
def recheck_sockets_on_membership_change(sender: Any, instance: Membership, **kwargs: Any) -> None:
    # A membership moved to another farm is a removal for the old one.
    if not kwargs.get("created"):
        transaction.on_commit(partial(live.user_access_recheck, user_id=instance.user_id))
