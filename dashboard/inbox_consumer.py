"""The bell socket, ``/ws/inbox/``: a signed-in person's unread notification count, live.

Every signed-in page opens one (static/js/bell.js). It joins the person's inbox and user groups
(``dashboard.live``) and sends ``{"type": "inbox", "unread": N}`` on connect and after each
``inbox.changed`` nudge, reading N from the database then: a reconnect is a refetch, and a
nudge lost by the channel layer is mended by the next one or the next page. The browser sends
nothing; its frames are only rate-limited. Logout and revocation close it like a farm socket
(``UserSocket``).
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async

from notifications.selectors import inbox_unread_count

from . import live, protocol, selectors
from .consumers import UserSocket


class InboxConsumer(UserSocket):
    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close()
            return
        self.user_id = user.pk
        self.session_key = self.scope["session"].session_key
        self.bucket = protocol.TokenBucket()
        await self.accept()
        await self.join_and_watch()
        await self.send_count()

    async def join(self) -> None:
        await live.inbox_socket_join(self.channel_name, user_id=self.user_id)

    async def leave(self) -> None:
        await live.inbox_socket_leave(self.channel_name, user_id=self.user_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.bucket.allow():
            await self.close(code=protocol.CLOSE_POLICY)

    async def send_count(self) -> None:
        unread = await database_sync_to_async(inbox_unread_count)(self.user_id)
        await self.send(text_data=json.dumps({"type": "inbox", "unread": unread}))

    async def recheck_access(self) -> None:
        user = await database_sync_to_async(selectors.session_user)(session_key=self.session_key, user_id=self.user_id)
        if user is None:
            await self.close(code=live.CLOSE_SIGNED_OUT)
        elif self.joined:
            await self.join()  # idempotent; mends a layer that expires memberships

    # Channel-layer events from dashboard.live.

    async def inbox_changed(self, event: dict[str, Any]) -> None:
        await self.send_count()
