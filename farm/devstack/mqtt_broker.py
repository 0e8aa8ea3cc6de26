"""The embedded MQTT broker: amqtt, with persistent sessions that survive a restart of the broker.

``make run`` starts this as ``python -m farm.devstack.mqtt_broker CONFIG STATE``.
Plain amqtt loses the ingest worker's messages in three ways, each fixed here:

* its anonymous-auth plugin marks every client anonymous, and amqtt keeps no
  session (nor queued messages) for anonymous clients — ``LoopbackAuthPlugin``
  lets every loopback client in without that mark;
* it forgets every session when it stops — ``PersistentBroker`` writes the
  persistent sessions (subscriptions and undelivered QoS 1/2 messages) to
  ``STATE`` on a clean stop and restores them before it listens again;
* it replays a session's queued messages with the retain flag set, which the
  ingest worker rightly dead-letters as "retained telemetry" — MQTT 3.1.1
  §3.3.1.3 sets retain only for retained messages sent on a new subscription,
  so the replay here clears it.

A broker that is killed outright still loses what it held (it has no
write-ahead log): a demo broker, not a production one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session
from amqtt.utils import read_yaml_config

logger = logging.getLogger("farm.devstack.mqtt_broker")


class LoopbackAuthPlugin(BaseAuthPlugin):
    """Let every client in (the broker listens on loopback only), without marking it anonymous."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Session) -> bool:
        return True


def _message(topic: str, data: bytes | bytearray, qos: int | None) -> dict[str, Any]:
    return {"topic": topic, "data": base64.b64encode(bytes(data)).decode("ascii"), "qos": qos or 0}


class PersistentBroker(Broker):
    """amqtt's broker, keeping persistent sessions across a clean restart in a JSON file."""

    def __init__(self, config: dict[str, Any], *, state_path: Path) -> None:
        super().__init__(config, loop=asyncio.get_running_loop())
        self.state_path = state_path

    def persistent_sessions(self) -> list[dict[str, Any]]:
        """Each non-clean session: its subscriptions, and its undelivered messages in order."""
        saved = []
        for client_id, (session, _) in self._sessions.items():
            if session.clean_session is not False:
                continue
            subscriptions = [[topic, qos] for topic, subscribers in self._subscriptions.items()
                             for subscriber, qos in subscribers if subscriber.client_id == client_id]  # fmt: skip
            # Sent but unacknowledged first: they are older than anything still queued.
            messages = [_message(m.topic, m.data, m.qos) for m in session.inflight_out.values()]
            while not session.retained_messages.empty():
                queued = session.retained_messages.get_nowait()
                messages.append(_message(queued.topic, queued.data, queued.qos))
            saved.append({"client_id": client_id, "subscriptions": subscriptions, "messages": messages})
        return saved

    def save(self) -> None:
        sessions = self.persistent_sessions()
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"sessions": sessions}))
        os.replace(temporary, self.state_path)  # never a half-written file
        queued = sum(len(s["messages"]) for s in sessions)
        logger.info("saved %d persistent session(s) with %d undelivered message(s)", len(sessions), queued)

    async def restore(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        queued = 0
        for saved in state.get("sessions", []):
            handler, session = self.create_offline_session(saved["client_id"])
            session.clean_session = False
            self._sessions[session.client_id] = (session, handler)
            for topic, qos in saved["subscriptions"]:
                await self.add_subscription((topic, qos), session)
            for message in saved["messages"]:
                data = base64.b64decode(message["data"])
                queued_message = RetainedApplicationMessage(None, message["topic"], data, message["qos"])
                session.retained_messages.put_nowait(queued_message)
                queued += 1
        # Restored once: should the broker now be killed, a stale copy must not be replayed on top of newer state.
        self.state_path.unlink()
        logger.info("restored %d persistent session(s) with %d undelivered message(s)", len(state["sessions"]), queued)

    async def _start_listeners(self) -> None:
        # start() clears the sessions before this and accepts clients after it: the one safe point to restore.
        await self.restore()
        await super()._start_listeners()

    async def _publish_session_retained_messages(self, session: Session) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        publishing = []
        while not session.retained_messages.empty():
            queued = await session.retained_messages.get()
            # A queued message is a normal delivery, not a retained one (MQTT 3.1.1 §3.3.1.3).
            delivery = handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)
            publishing.append(asyncio.ensure_future(delivery))
        if publishing:
            await asyncio.wait(publishing)

    async def drain_broadcasts(self, timeout: float = 5.0) -> None:
        """Let messages already acknowledged to their publisher reach their sessions' queues."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            busy = not self._broadcast_queue.empty() or any(not task.done() for task in self._tasks_queue)
            if not busy:
                break
            await asyncio.sleep(0.01)
        # The loop takes a message off the queue before it queues it for a session.
        await asyncio.sleep(0.1)

    async def shutdown(self) -> None:
        for server in self._servers.values():
            server.instance.close()  # no new messages while the queues are saved
        await self.drain_broadcasts()
        # Before the parent's shutdown, which drops every session.
        self.save()
        await super().shutdown()


async def serve(config_path: Path, state_path: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    broker = PersistentBroker(read_yaml_config(config_path), state_path=state_path)
    await broker.start()
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m farm.devstack.mqtt_broker CONFIG STATE", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s - %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)
    asyncio.run(serve(Path(argv[0]), Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
