"""The farm dashboard socket, ``/ws/farms/<farm_id>/``, and what every signed-in socket shares (``UserSocket``).

It authorizes, joins groups and forwards what ``dashboard.live`` sends —
nothing else. The message protocol is in the README ("Live protocol").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import timezone

from . import live, payloads, protocol, selectors

logger = logging.getLogger(__name__)

# Signals close revoked sockets at once; this timer is the backstop for what
# no signal reports (a session deleted in the database, an expired session, a
# lost channel-layer message) and re-joins the groups (harmless twice; a layer that
# expires memberships gets them back).
ACCESS_RECHECK_SECONDS = 60.0
MAX_UPDATES_PER_FRAME = 50


class UserSocket(AsyncWebsocketConsumer):
    """What every socket of a signed-in person shares: its groups, the re-check timer, revocation.

    A subclass says which groups it joins (``join``/``leave``) and what access it re-checks
    (``recheck_access``); this class makes sure that however the socket ends, it leaves them.
    """

    user_id: int
    session_key: str | None
    joined = False
    recheck_task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Channels runs disconnect() only for a websocket.disconnect from the client: an
        # exception in a handler ended the consumer with the groups joined and the re-check
        # timer re-adding this dead channel to them every minute. Whatever ends the consumer
        # (a close, a bug, a cancellation by daphne) ends here, and so does our work.
        try:
            await super().__call__(scope, receive, send)
        except Exception:
            logger.exception("%s of user %s failed; closing it", type(self).__name__, getattr(self, "user_id", None))
            with contextlib.suppress(Exception):  # the client may be gone already
                await self.close(code=protocol.CLOSE_INTERNAL)
        finally:
            await self.release()

    async def join(self) -> None:
        raise NotImplementedError

    async def leave(self) -> None:
        raise NotImplementedError

    async def recheck_access(self) -> None:
        raise NotImplementedError

    async def join_and_watch(self) -> None:
        """Join the groups and start the re-check timer (after accept)."""
        self.joined = True  # before the join: a join cut short may still have added us
        await self.join()
        self.recheck_task = asyncio.create_task(self.recheck_forever())

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Once we close, the socket is done: leave at once rather than when the client
        # completes the closing handshake, which a broken or hostile one may never do --
        # and before the close frame goes out, so whoever sees the close sees us gone.
        await self.release()
        await super().close(code=code, reason=reason)

    async def release(self) -> None:
        """Stop the re-check timer, then leave the groups; safe to call more than once."""
        task, self.recheck_task = self.recheck_task, None
        if task is not None and task is not asyncio.current_task():  # the timer itself ends on `joined`
            task.cancel()
            # Wait for it: a re-check caught mid-join must not re-add us after we left.
            await asyncio.gather(task, return_exceptions=True)
        if self.joined:
            self.joined = False
            try:
                await self.leave()
            except Exception:
                # Redis is unreachable: the subscription went with the connection.
                logger.exception("socket of user %s could not leave its groups", self.user_id)

    async def disconnect(self, code: int) -> None:
        await self.release()

    async def recheck_forever(self) -> None:
        while self.joined:
            await asyncio.sleep(ACCESS_RECHECK_SECONDS * random.uniform(0.9, 1.1))  # noqa: S311 - jitter
            try:
                await self.recheck_access()
            except Exception:
                # A database or Redis blip must not end the backstop; the next round retries.
                logger.exception("access re-check failed for socket of user %s", self.user_id)

    # Channel-layer events from dashboard.live, to every socket of the user.

    async def socket_close(self, event: dict[str, Any]) -> None:
        if event.get("session") in (None, live.session_fingerprint(self.session_key)):
            await self.close(code=event["code"])

    async def access_recheck(self, event: dict[str, Any]) -> None:
        await self.recheck_access()


class FarmConsumer(UserSocket):
    farm_id: int

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close()
            return
        self.farm_id = int(self.scope["url_route"]["kwargs"]["farm_id"])
        self.user_id = user.pk
        self.session_key = self.scope["session"].session_key
        self.bucket = protocol.TokenBucket()
        allowed = await database_sync_to_async(selectors.user_can_view_farm)(user, self.farm_id)
        await self.accept()
        if not allowed:
            await self.close(code=live.CLOSE_FORBIDDEN)
            return
        await self.join_and_watch()
        await self.send_snapshot()

    async def join(self) -> None:
        await live.socket_join(self.channel_name, farm_id=self.farm_id, user_id=self.user_id)

    async def leave(self) -> None:
        await live.socket_leave(self.channel_name, farm_id=self.farm_id, user_id=self.user_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.bucket.allow():
            await self.close(code=protocol.CLOSE_POLICY)
            return
        verdict = protocol.read_frame(text_data)
        if isinstance(verdict, protocol.Close):
            await self.close(code=verdict.code)
        elif verdict is protocol.ClientMessage.PING:
            seq = await sync_to_async(live.farm_sequence, thread_sensitive=False)(self.farm_id)
            await self.send(text_data=payloads.pong_text(seq=seq, now=timezone.now()))
        elif verdict is protocol.ClientMessage.SNAPSHOT:
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        await self.send(text_data=await database_sync_to_async(live.farm_snapshot)(self.farm_id))

    async def recheck_access(self) -> None:
        verdict = await database_sync_to_async(selectors.socket_access)(
            session_key=self.session_key, user_id=self.user_id, farm_id=self.farm_id
        )
        if verdict != "ok":
            await self.close(code=live.CLOSE_SIGNED_OUT if verdict == "signed_out" else live.CLOSE_FORBIDDEN)
        elif self.joined:
            await self.join()

    # Channel-layer events from dashboard.live.

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler: a hop to the one
        # thread-sensitive sync thread. A farm.update only forwards text and touches no
        # database, and with a thousand sockets on one farm those hops, not the sends, held
        # the fan-out back by seconds (bench/dashboard_latency.py, docs/benchmarks.md).
        if message["type"] == "farm.update":
            await self.farm_update(message)
        else:
            await super().dispatch(message)

    async def farm_update(self, event: dict[str, Any]) -> None:
        # Updates already waiting for this socket go out with this one as one frame: a process
        # that falls behind sends fewer, bigger frames and catches up, instead of falling
        # further behind one frame at a time (a frame costs daphne ~0.15 ms whatever its size).
        texts, after = [event["text"]], None
        for waiting in live.waiting_messages(self.channel_layer, self.channel_name):
            if waiting["type"] != "farm.update" or len(texts) >= MAX_UPDATES_PER_FRAME:
                after = waiting
                break
            texts.append(waiting["text"])
        await self.send(text_data=payloads.frames_text(texts))
        if after is not None:
            await self.dispatch(after)
