"""docker/mosquitto.conf as shipped: every client authenticates, and a device may publish only its own topics."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.mqtt_fixtures import BROKER_CONF, Broker, free_port, require_mosquitto, wait_until

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {"furrow-ingest": "ingest-secret", "dev-a": "device-a-secret"}


def production_config(*, port: int, workdir: Path) -> str:
    """The shipped config with only the port and file locations moved into ``workdir``."""
    moved = {
        "listener": f"listener {port} 127.0.0.1",
        "persistence_location": f"persistence_location {workdir}/data/",
        "password_file": f"password_file {workdir}/passwd",
        "acl_file": f"acl_file {workdir}/acl",
    }
    lines = [moved.get(line.split(" ", 1)[0], line) for line in BROKER_CONF.read_text().splitlines()]
    return "\n".join(lines) + "\n"


def _give_to_mosquitto(*paths: Path) -> None:
    if os.geteuid() != 0:
        return
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam("mosquitto")
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)


@pytest.fixture(scope="module")
def secured_broker() -> Iterator[Broker]:
    require_mosquitto()
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="furrow-mosquitto-auth-"))
    workdir.chmod(0o755)
    (workdir / "data").mkdir()
    passwd = workdir / "passwd"
    for user, password in PASSWORDS.items():
        create = ["-c"] if not passwd.exists() else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(passwd), user, password], check=True)
    shutil.copy(ROOT / "docker" / "mosquitto.acl", workdir / "acl")
    _give_to_mosquitto(workdir / "data", passwd, workdir / "acl")
    port = free_port()
    broker = Broker(port=port, workdir=workdir, config=production_config(port=port, workdir=workdir))
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def connect(broker: Broker, user: str | None, password: str | None) -> tuple[mqtt.Client, mqtt.ReasonCode]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:8]}")
    if user is not None:
        client.username_pw_set(user, password)
    answered = threading.Event()
    result: list[mqtt.ReasonCode] = []

    def on_connect(c, userdata, flags, reason_code, properties):
        result.append(reason_code)
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert answered.wait(10), "the broker did not answer CONNECT"
    return client, result[0]


def test_an_anonymous_client_is_refused(secured_broker):
    client, code = connect(secured_broker, None, None)
    client.loop_stop()
    assert code.is_failure


def test_a_wrong_password_is_refused(secured_broker):
    client, code = connect(secured_broker, "dev-a", "not-the-password")
    client.loop_stop()
    assert code.is_failure


def test_a_device_reaches_the_worker_only_on_its_own_topics(secured_broker):
    worker, code = connect(secured_broker, "furrow-ingest", PASSWORDS["furrow-ingest"])
    assert not code.is_failure
    received: list[str] = []
    worker.on_message = lambda c, u, m: received.append(m.topic)
    subscribed = threading.Event()
    worker.on_subscribe = lambda *args: subscribed.set()
    worker.subscribe("farm/+/telemetry", qos=1)
    assert subscribed.wait(10)

    device, code = connect(secured_broker, "dev-a", PASSWORDS["dev-a"])
    assert not code.is_failure
    device.publish("farm/dev-b/telemetry", b'{"soil_moisture": 1}', qos=1).wait_for_publish(10)
    device.publish("farm/dev-a/telemetry", b'{"soil_moisture": 2}', qos=1).wait_for_publish(10)
    wait_until(lambda: received, timeout=10, what="the device's own reading")
    device.loop_stop()
    worker.loop_stop()
    assert received == ["farm/dev-a/telemetry"]
