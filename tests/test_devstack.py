"""The two-command start: secrets, ports, environments, embedded servers, the Procfile, the demo seed, docker/."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from contextlib import ExitStack
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import psutil
import psycopg
import pytest
import redis
import yaml
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from farm.devstack import embedded
from farm.devstack.__main__ import _parse
from farm.devstack.config import (
    BASE_DIR,
    ConfigError,
    DevstackError,
    PortInUse,
    acquire_var_lock,
    app_environment,
    ensure_port_free,
    free_port,
    mail_destination,
    missing_urls,
    port_in_use,
    port_setting,
    process_selection,
    read_or_create_secret,
    suite_environment,
    var_dir,
)
from farm.devstack.demo import DEMO_DEVICES, DEMO_FIELDS
from farm.devstack.prepare import FINGERPRINT_NAME, check_commands, collect_static
from farm.devstack.procfile import (
    exec_form,
    explain_missing,
    load_procfile,
    manage_commands,
    missing_programs,
    select_processes,
)
from farm.devstack.stack import banner, start_services
from farm.models import Farm, Membership, Role
from farm.services import farm_create, field_create
from sensors.models import Device, DeviceKind, Sensor

DEVEUI = re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def listening_socket():
    """A socket listening on a free loopback port, as another program would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.fixture
def servers():
    """Embedded servers started by a test, stopped (or killed) afterwards whatever happens."""
    started: list[embedded.Embedded] = []
    yield started
    for server in started:
        embedded.stop(server, timeout=10)


def _launch(servers, launch, data: Path, password: str = "s3cret-pw") -> embedded.Embedded:
    server = launch(data, port=free_port(), password=password, log_path=data.parent / f"{data.name}.log")
    servers.append(server)
    embedded.wait_ready(server, timeout=60)
    return server


# --- Secrets, ports, directories ----------------------------------------------------


def test_a_secret_is_created_once_private_and_then_reused(tmp_path):
    path = tmp_path / "nested" / "secret_key"
    first = read_or_create_secret(path, nbytes=50)
    assert len(first) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_secret(path, nbytes=50) == first


def test_an_empty_secret_file_gets_a_new_secret(tmp_path):
    path = tmp_path / "demo_password"
    path.write_text("\n")
    assert read_or_create_secret(path)
    assert path.read_text().strip() == read_or_create_secret(path)


def test_a_listening_port_is_in_use_and_a_closed_one_is_not(listening_socket):
    taken = listening_socket.getsockname()[1]
    assert port_in_use(taken)
    assert not port_in_use(free_port())


def test_a_port_in_use_is_named_with_how_to_change_it(listening_socket):
    taken = listening_socket.getsockname()[1]
    with pytest.raises(PortInUse) as raised:
        ensure_port_free(taken, "web", "start on another one with PORT=8001 make run")
    message = str(raised.value)
    assert f"port {taken} (web)" in message
    assert "PORT=8001 make run" in message
    assert "\n" not in message


def test_a_malformed_port_setting_names_the_variable():
    with pytest.raises(ConfigError, match="FURROW_PG_PORT"):
        port_setting({"FURROW_PG_PORT": "fifteen"}, "FURROW_PG_PORT", 15432)
    assert port_setting({}, "FURROW_PG_PORT", 15432) == 15432
    assert port_setting({"FURROW_PG_PORT": "0"}, "FURROW_PG_PORT", 15432) == 0


def test_var_dir_defaults_to_var_in_the_checkout_and_follows_the_environment(tmp_path):
    assert var_dir({}) == BASE_DIR / "var"
    assert var_dir({"FURROW_VAR_DIR": str(tmp_path / "data")}) == tmp_path / "data"


def test_empty_urls_count_as_unset():
    environ = {"DATABASE_URL": "postgresql://db/furrow", "REDIS_URL": " ", "MQTT_URL": ""}
    assert missing_urls(environ) == ["REDIS_URL", "MQTT_URL"]


def test_a_second_stack_on_the_same_var_dir_is_refused(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from farm.devstack.config import acquire_var_lock; "
        "lock = acquire_var_lock(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)"
    )
    argv = [sys.executable, "-c", code, str(tmp_path)]
    holder = subprocess.Popen(argv, cwd=BASE_DIR, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(DevstackError, match=f"another Furrow stack \\(pid {holder.pid}\\) is using"):
            acquire_var_lock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    acquire_var_lock(tmp_path).close()


def test_everything_after_test_goes_to_pytest_options_included():
    assert _parse(["test", "--", "-k", "seed", "tests/x.py"]).pytest_args == ["-k", "seed", "tests/x.py"]
    assert _parse(["test", "-x", "--create-db"]).pytest_args == ["-x", "--create-db"]
    assert _parse(["test", "--"]).pytest_args == []
    assert _parse(["run"]).command == "run"


# --- Environments -------------------------------------------------------------------


def test_app_environment_has_the_urls_and_safe_local_defaults(tmp_path):
    env = app_environment(
        {"PATH": "/usr/bin", "DJANGO_SETTINGS_MODULE": "farm.settings_test"},
        urls={"DATABASE_URL": "postgresql://x@127.0.0.1:1/furrow"},
        var=tmp_path,
        secret_key="k" * 60,
        port=8123,
    )
    assert env["DATABASE_URL"] == "postgresql://x@127.0.0.1:1/furrow"
    assert env["DEBUG"] == "false"
    assert env["HTTPS"] == "false"
    assert env["ALLOWED_HOSTS"] == "localhost,127.0.0.1,[::1]"
    assert env["SECRET_KEY"] == "k" * 60
    assert env["PORT"] == "8123"
    assert env["FURROW_VAR_DIR"] == str(tmp_path)
    assert env["DJANGO_SETTINGS_MODULE"] == "farm.settings"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_app_environment_keeps_what_the_user_set(tmp_path):
    user = {"DEBUG": "true", "ALLOWED_HOSTS": "farm.local", "SECRET_KEY": "mine" * 20}
    env = app_environment(user, urls={}, var=tmp_path, secret_key="generated" * 10, port=8000)
    assert env["DEBUG"] == "true"
    assert env["ALLOWED_HOSTS"] == "farm.local"
    assert env["SECRET_KEY"] == "mine" * 20


def test_under_make_run_mail_goes_to_a_local_sink_and_links_point_at_the_stack(tmp_path):
    env = app_environment({"PATH": "/usr/bin"}, urls={}, var=tmp_path, secret_key="k" * 60, port=8123)
    assert env["EMAIL_URL"] == (tmp_path / "mail").as_uri()
    assert env["SITE_URL"] == "http://127.0.0.1:8123"
    assert mail_destination(env) == f"written to {tmp_path / 'mail'}/ (nothing is sent; open the newest file)"
    chosen = app_environment(
        {"EMAIL_FILE_PATH": str(tmp_path / "elsewhere")}, urls={}, var=tmp_path, secret_key="k" * 60, port=8123
    )
    assert chosen["EMAIL_URL"] == (tmp_path / "elsewhere").as_uri()


@pytest.mark.parametrize("mine", [{"EMAIL_URL": "smtp://mail.example.com"}, {"EMAIL_HOST": "mail.example.com"}])
def test_a_mail_server_the_user_set_is_used_and_the_banner_says_so(tmp_path, mine):
    env = app_environment(mine, urls={}, var=tmp_path, secret_key="k" * 60, port=8000)
    assert env.get("EMAIL_URL", "") == mine.get("EMAIL_URL", "")
    assert mail_destination(env).startswith("sent through EMAIL_")


def test_the_suite_environment_leaves_the_settings_module_to_pyproject():
    env = suite_environment(
        {"DJANGO_SETTINGS_MODULE": "farm.settings", "REDIS_URL": "redis://mine:6379/0"},
        urls={"DATABASE_URL": "postgresql://embedded/furrow"},
    )
    assert "DJANGO_SETTINGS_MODULE" not in env
    assert env["REDIS_URL"] == "redis://mine:6379/0"
    assert env["DATABASE_URL"] == "postgresql://embedded/furrow"


# --- The Procfile ---------------------------------------------------------------------


def test_the_procfile_runs_web_ingest_worker_beat_and_the_simulator():
    processes = load_procfile(BASE_DIR / "Procfile")
    assert list(processes) == ["web", "ingest", "worker", "beat", "simulator"]
    assert processes["web"].startswith("daphne -b 127.0.0.1 -p $PORT farm.asgi:application")
    assert manage_commands(processes) == {"ingest": "ingest", "simulator": "simulate"}
    assert "$FURROW_VAR_DIR" in processes["beat"]


def test_furrow_processes_selects_entries_and_refuses_unknown_ones():
    processes = {"web": "daphne", "worker": "celery", "beat": "celery"}
    assert process_selection({"FURROW_PROCESSES": " web, beat "}) == ["web", "beat"]
    assert process_selection({}) is None
    assert select_processes(processes, ["beat", "web"]) == {"beat": "celery", "web": "daphne"}
    with pytest.raises(DevstackError, match="webb"):
        select_processes(processes, ["webb"])


def test_simple_commands_replace_their_shell_and_compound_ones_are_left_alone():
    assert exec_form("daphne -b 127.0.0.1 -p $PORT farm.asgi:application") == (
        "exec daphne -b 127.0.0.1 -p $PORT farm.asgi:application"
    )
    assert exec_form("exec celery -A farm beat") == "exec celery -A farm beat"
    assert exec_form("python manage.py migrate && python manage.py ingest") == (
        "python manage.py migrate && python manage.py ingest"
    )


def test_a_missing_program_is_named_with_how_to_start_without_it(tmp_path):
    processes = {"web": "python -c pass", "ingest": "no-such-program-here --flag"}
    missing = missing_programs(processes, os.path.dirname(sys.executable))
    assert missing == {"ingest": "no-such-program-here"}
    message = explain_missing(missing, processes, what="the program")
    assert "'ingest' runs `no-such-program-here --flag`" in message
    assert "FURROW_PROCESSES=web make run" in message


def test_a_procfile_command_django_does_not_have_fails_before_anything_starts():
    processes = {"web": "daphne x", "ingest": "python manage.py no_such_command", "mig": "python manage.py migrate"}
    with pytest.raises(DevstackError) as raised:
        check_commands(processes)
    assert "management command 'no_such_command' does not exist" in str(raised.value)
    assert "FURROW_PROCESSES=web,mig make run" in str(raised.value)
    check_commands({"mig": "python manage.py migrate"})


# --- Service configuration ------------------------------------------------------------


def test_valkey_is_loopback_only_with_a_password_persistence_and_no_eviction(tmp_path):
    config = embedded.valkey_config(data_dir=tmp_path, port=16380, password="pw")
    lines = config.splitlines()
    for expected in ("bind 127.0.0.1", "port 16380", "requirepass pw", "appendonly yes", "maxmemory-policy noeviction"):
        assert expected in lines


def test_amqtt_is_open_on_loopback_only_without_marking_clients_anonymous():
    config: dict = embedded.amqtt_config(port=11884)
    assert config["listeners"] == {"default": {"type": "tcp", "bind": "127.0.0.1:11884"}}
    # amqtt keeps no session for a client its anonymous plugin let in.
    assert "amqtt.plugins.authentication.AnonymousAuthPlugin" not in config["plugins"]
    assert "farm.devstack.mqtt_broker.LoopbackAuthPlugin" in config["plugins"]


def test_the_banner_shows_the_address_and_login_but_no_service_password(tmp_path):
    url = "postgresql://postgres:hunter2@127.0.0.1:15432/furrow"
    server = SimpleNamespace(name="PostgreSQL", url=url, display_url=embedded.without_credentials(url))

    text = banner(url="http://127.0.0.1:8000/", password="pw-123", var=tmp_path, servers={"DATABASE_URL": server},  # type: ignore[dict-item]
                  seconds=4.2)  # fmt: skip
    assert "http://127.0.0.1:8000/" in text
    assert "Login: demo / pw-123" in text
    assert "postgresql://127.0.0.1:15432/furrow" in text
    assert "hunter2" not in text
    mail = banner(url="http://127.0.0.1:8000/", password="pw", var=tmp_path, servers={}, seconds=1,
                  mail=f"written to {tmp_path}/mail/")  # fmt: skip
    assert f"Mail: written to {tmp_path}/mail/" in mail
    assert "http://127.0.0.1:8000/account/notifications/inbox/" in mail


# --- Embedded servers, for real ------------------------------------------------------------


def test_postgres_keeps_its_data_across_restarts_and_stops_cleanly(tmp_path, servers):
    data = tmp_path / "pg"
    server = _launch(servers, embedded.postgres_launch, data)
    embedded.postgres_ensure_database(server.port, "s3cret-pw")
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
    embedded.stop(server)
    assert server.process.returncode == 0
    assert not (data / "postmaster.pid").exists()

    again = _launch(servers, embedded.postgres_launch, data)
    embedded.postgres_ensure_database(again.port, "s3cret-pw")
    with psycopg.connect(again.url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(again.url.replace("s3cret-pw", "wrong"), connect_timeout=5)


def test_valkey_keeps_its_data_across_restarts_and_wants_its_password(tmp_path, servers):
    data = tmp_path / "valkey"
    server = _launch(servers, embedded.valkey_launch, data)
    client = redis.Redis.from_url(server.url)
    client.set("kept", "yes")
    client.close()
    with socket.create_connection(("127.0.0.1", server.port)) as anonymous:
        anonymous.sendall(b"PING\r\n")
        assert anonymous.recv(100).startswith(b"-NOAUTH")
    embedded.stop(server)
    assert server.process.returncode == 0

    again = _launch(servers, embedded.valkey_launch, data)
    client = redis.Redis.from_url(again.url)
    assert client.get("kept") == b"yes"
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    client.close()


def test_amqtt_accepts_mqtt_clients_and_shuts_down_on_sigint(tmp_path, servers):
    server = _launch(servers, embedded.amqtt_launch, tmp_path / "mqtt")
    assert embedded.mqtt_answers(server.port)
    embedded.stop(server)
    assert server.process.returncode == 0
    assert "Broker closed" in (tmp_path / "mqtt.log").read_text()
    assert not embedded.mqtt_answers(server.port)


def _mqtt_client(port: int, client_id: str, *, clean: bool, received: list | None = None) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    if received is not None:
        client.on_message = lambda _client, _userdata, message: received.append(message)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_amqtt_keeps_a_persistent_session_and_its_queue_across_a_restart(tmp_path, servers):
    data = tmp_path / "mqtt"
    server = _launch(servers, embedded.amqtt_launch, data)
    worker = _mqtt_client(server.port, "ingest-test", clean=False)
    subscribed: list = []
    worker.on_subscribe = lambda *args: subscribed.append(args)
    worker.subscribe("farm/+/telemetry", qos=1)
    _until(lambda: subscribed)
    worker.disconnect()
    worker.loop_stop()

    publisher = _mqtt_client(server.port, "sim", clean=True)
    sent = [publisher.publish(f"farm/dev-{n}/telemetry", f'{{"n": {n}}}', qos=1) for n in range(5)]
    for info in sent:
        info.wait_for_publish(10)
    publisher.disconnect()
    publisher.loop_stop()
    embedded.stop(server)
    assert server.process.returncode == 0
    assert "saved 1 persistent session(s) with 5 undelivered message(s)" in (tmp_path / "mqtt.log").read_text()

    again = _launch(servers, embedded.amqtt_launch, data)
    received: list = []
    worker = _mqtt_client(again.port, "ingest-test", clean=False, received=received)
    try:
        _until(lambda: len(received) == 5)
    finally:
        worker.disconnect()
        worker.loop_stop()
    assert [m.payload for m in received] == [f'{{"n": {n}}}'.encode() for n in range(5)]
    # A queued message is delivered as a normal one: the ingest worker dead-letters retained telemetry.
    assert not any(m.retain for m in received)
    assert not (data / embedded.AMQTT_SESSIONS).exists(), "restored once, so a crash cannot replay it twice"


def test_a_server_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    log = tmp_path / "boom.log"
    process = embedded.spawn([sys.executable, "-c", "print('cannot bind'); raise SystemExit(3)"], log_path=log,
                             cwd=tmp_path)  # fmt: skip
    server = embedded.Embedded("Boom", "x://", 1, process, log, probe=lambda: False)
    with pytest.raises(DevstackError) as raised:
        embedded.wait_ready(server, timeout=30)
    assert "Boom exited with code 3" in str(raised.value)
    assert "cannot bind" in str(raised.value)


def test_a_server_that_ignores_its_stop_signal_is_killed(tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    log = tmp_path / "stubborn.log"
    process = embedded.spawn([sys.executable, "-c", code], log_path=log, cwd=tmp_path)
    server = embedded.Embedded("Stubborn", "x://", 1, process, log, probe=lambda: "up" in log.read_text())
    embedded.wait_ready(server, timeout=30)
    embedded.stop(server, timeout=0.5)
    assert process.returncode == -signal.SIGKILL


def _sleeper(tmp_path: Path, argv: list[str] | None = None) -> subprocess.Popen[bytes]:
    return embedded.spawn(argv or ["sleep", "60"], log_path=tmp_path / "sleep.log", cwd=tmp_path)


def test_what_a_killed_stack_left_running_is_stopped_at_the_next_start(tmp_path):
    record = tmp_path / "devstack.pids"
    server = _sleeper(tmp_path)
    # Stands in for the killed stack: supervisor → output reader → app process.
    supervisor = _sleeper(tmp_path, ["sh", "-c", "sh -c 'sleep 61; true' & wait"])
    bystander = _sleeper(tmp_path)
    try:
        while not (apps := [p for p in psutil.Process(supervisor.pid).children(recursive=True) if p.name() == "sleep"]):
            time.sleep(0.01)  # until the reader's child has exec'd sleep
        app = apps[0]
        embedded.record_servers(record, [embedded.Embedded("Sleeper", "x://", 1, server, tmp_path, lambda: True)])
        embedded.record_descendants(record, root=psutil.Process(supervisor.pid))
        entries = json.loads(record.read_text())
        # A pid the kernel has since given to another program: same pid, another start time.
        entries.append({"name": "Recycled", "pid": bystander.pid, "started": 1.0, "role": "app", "signal": 15})
        record.write_text(json.dumps(entries))
        reports: list[str] = []

        embedded.stop_leftovers(record, reports.append)

        assert not app.is_running()
        assert not psutil.pid_exists(server.pid)
        assert bystander.poll() is None
        assert reports == [
            "stopped 1 process(es) left running by an earlier run: sleep 61",
            "stopped 1 process(es) left running by an earlier run: Sleeper",
        ]
        assert not record.exists()
    finally:
        for process in (server, supervisor, bystander):
            process.kill()
            process.wait()


def test_a_fixed_service_port_in_use_stops_start_up_with_the_setting_to_change(tmp_path, listening_socket):
    taken = listening_socket.getsockname()[1]
    with ExitStack() as stack, pytest.raises(PortInUse) as raised:
        start_services(["REDIS_URL"], tmp_path, {"FURROW_REDIS_PORT": str(taken)}, stack, fixed_ports=True)
    assert f"port {taken} (embedded Valkey)" in str(raised.value)
    assert "FURROW_REDIS_PORT" in str(raised.value)
    assert "REDIS_URL" in str(raised.value)


def test_make_run_with_the_web_port_taken_says_so_in_one_line(tmp_path, listening_socket):
    taken = listening_socket.getsockname()[1]
    env = {**os.environ, "PORT": str(taken), "FURROW_VAR_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "farm.devstack", "run"], cwd=BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"furrow: port {taken} (web) is already in use on 127.0.0.1: "
        f"start on another one with PORT={taken + 1} make run"
    )
    assert "Traceback" not in result.stdout


def test_make_test_runs_pytest_on_embedded_services_and_passes_its_exit_code(tmp_path):
    """The ``test`` command with REDIS_URL unset: an embedded Valkey for the run, gone afterwards."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import os, redis\n"
        "def test_redis_is_there():\n"
        "    assert redis.Redis.from_url(os.environ['REDIS_URL']).ping()\n"
        "def test_that_fails():\n"
        "    assert os.environ['MARK'] == 'expected-failure'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"MARK": "x"}
    pytest_args = [
        str(probe),
        "-p",
        "no:django",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "--rootdir",
        str(tmp_path),
    ]
    argv = [sys.executable, "-m", "farm.devstack", "test", "--", *pytest_args, "-q"]
    result = subprocess.run(argv, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    started = re.search(r"Valkey on port (\d+)", result.stdout)
    assert started is not None
    port = int(started.group(1))
    assert not port_in_use(port)


# --- Preparation -------------------------------------------------------------------------


def test_static_files_are_collected_only_when_they_changed(tmp_path, settings):
    source = tmp_path / "static"
    source.mkdir()
    (source / "app.css").write_text("body { color: green }")
    settings.STATICFILES_DIRS = [source]
    settings.STATIC_ROOT = tmp_path / "collected"

    assert collect_static() is True
    assert (tmp_path / "collected" / "app.css").exists()
    assert (tmp_path / "collected" / FINGERPRINT_NAME).exists()
    assert collect_static() is False

    (source / "app.css").write_text("body { color: darkgreen }")
    later = (source / "app.css").stat().st_mtime + 5  # collectstatic compares whole seconds
    os.utime(source / "app.css", (later, later))
    assert collect_static() is True
    assert (tmp_path / "collected" / "app.css").read_text() == "body { color: darkgreen }"


# --- The demo farm -------------------------------------------------------------------------


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "demo_password"
    path.write_text("tractor-orchard-77\n")
    return path


@pytest.mark.django_db
def test_seed_demo_creates_a_farm_with_fields_and_devices_of_several_kinds(password_file):
    out = StringIO()
    call_command("seed_demo", password_file=password_file, stdout=out)

    assert "Created the demo farm 'Brookside Farm'" in out.getvalue()
    farm = Farm.objects.get(slug="brookside")
    assert farm.name == "Brookside Farm"
    assert farm.time_zone == "Europe/London"
    assert sorted(farm.fields.values_list("name", flat=True)) == sorted(name for name, *_ in DEMO_FIELDS)
    devices = Device.objects.filter(farm=farm).select_related("kind", "field")
    assert devices.count() == len(DEMO_DEVICES) >= 8
    assert {d.kind.slug for d in devices} >= {"soil-probe", "air-th", "rain-gauge", "weather-station", "water-level"}
    assert all(d.field is not None and d.field.farm_id == farm.pk for d in devices)
    lorawan = [d.uid for d in devices if DEVEUI.fullmatch(d.uid)]
    assert 2 <= len(lorawan) <= 3
    for device in devices:
        expected = set(device.kind.metrics.values_list("key", flat=True))
        assert set(device.sensors.values_list("key", flat=True)) == expected


@pytest.mark.django_db
def test_seed_demo_creates_the_farm_only_once(password_file):
    call_command("seed_demo", password_file=password_file, stdout=StringIO())
    Device.objects.filter(uid="brookside-rain").delete()

    out = StringIO()
    call_command("seed_demo", password_file=password_file, stdout=out)

    assert "Kept the demo farm" in out.getvalue()
    assert Farm.objects.filter(slug="brookside").count() == 1
    assert Device.objects.filter(farm__slug="brookside").count() == len(DEMO_DEVICES) - 1
    assert Sensor.objects.filter(device__farm__slug="brookside").count() > 0


@pytest.mark.django_db
def test_the_demo_user_is_a_superuser_owning_the_farm_and_can_log_in(password_file):
    call_command("seed_demo", password_file=password_file, stdout=StringIO())

    membership = Membership.objects.select_related("user").get(farm__slug="brookside")
    assert membership.role == Role.OWNER
    assert membership.user.username == "demo"
    assert membership.user.is_superuser
    assert membership.user.is_staff
    assert can_log_in("demo", "tractor-orchard-77")


@pytest.mark.django_db
def test_every_start_makes_the_printed_password_the_one_that_works(password_file):
    call_command("seed_demo", password_file=password_file, stdout=StringIO())
    password_file.write_text("a-new-password-99\n")

    call_command("seed_demo", password_file=password_file, stdout=StringIO())

    assert can_log_in("demo", "a-new-password-99")
    assert not can_log_in("demo", "tractor-orchard-77")


@pytest.mark.django_db
def test_seed_demo_without_the_shipped_kinds_says_to_migrate(password_file):
    DeviceKind.objects.filter(slug="water-level").delete()
    with pytest.raises(CommandError, match=r"water-level are missing; run `python manage.py migrate`"):
        call_command("seed_demo", password_file=password_file, stdout=StringIO())
    assert not Farm.objects.filter(slug="brookside").exists()


@pytest.mark.django_db
def test_farm_and_field_services_validate_before_saving():
    farm = farm_create(name="Hill End", time_zone="Europe/Dublin")
    assert farm.slug == "hill-end"
    assert field_create(farm=farm, name="Top Field").slug == "top-field"
    with pytest.raises(ValidationError, match="IANA time zone"):
        farm_create(name="Nowhere", time_zone="Mars/Olympus")
    with pytest.raises(ValidationError):
        field_create(farm=farm, name="Top Field")
    assert list(Farm.objects.values_list("slug", flat=True)) == ["hill-end"]


# --- docker/ ------------------------------------------------------------------------------------


def _settings_variables() -> set[str]:
    source = (BASE_DIR / "farm" / "settings.py").read_text()
    return set(re.findall(r"env_\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", source))


def test_env_example_lists_every_variable_the_settings_read_with_a_comment():
    lines = (BASE_DIR / "docker" / ".env.example").read_text().splitlines()
    assignment = re.compile(r"#?\s*([A-Z][A-Z0-9_]*)=")
    listed = {match.group(1): number for number, line in enumerate(lines) if (match := assignment.match(line))}
    variables = _settings_variables()
    assert {"DATABASE_URL", "SECRET_KEY", "INGEST_BATCH_SIZE"} <= variables
    assert variables - listed.keys() == set()
    for name, number in listed.items():
        above = number - 1
        while assignment.match(lines[above]):  # a group of related variables shares one comment
            above -= 1
        assert lines[above].startswith("# "), f"{name} has no comment above it"


def test_compose_runs_the_app_on_postgres_redis_without_eviction_and_mosquitto():
    compose = yaml.safe_load((BASE_DIR / "docker" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "mosquitto", "web", "ingest", "worker", "beat"} <= services.keys()
    assert "--maxmemory-policy noeviction" in " ".join(services["redis"]["command"])
    assert any("mosquitto.conf" in volume for volume in services["mosquitto"]["volumes"])
    assert "daphne" in " ".join(services["web"]["command"])
    assert services["ingest"]["command"][-1] == "ingest"


# --- The running stack's settings, for manage.py in another terminal ----------------------------------


def test_the_stack_settings_file_is_private_and_fills_only_unset_variables(tmp_path):
    from farm.devstack.config import SETTINGS_FILE, use_stack_settings, write_stack_settings

    env = {"DATABASE_URL": "postgresql://postgres:pw@127.0.0.1:15432/furrow", "REDIS_URL": "redis://:pw@h:1/0",
           "MQTT_URL": "mqtt://127.0.0.1:11883", "SECRET_KEY": "k" * 50, "DEBUG": "false"}  # fmt: skip
    path = write_stack_settings(tmp_path, env)
    assert path == tmp_path / SETTINGS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "DEBUG" not in path.read_text()

    shell = {"FURROW_VAR_DIR": str(tmp_path), "REDIS_URL": "redis://mine:6379/1", "MQTT_URL": ""}
    filled = use_stack_settings(shell)
    assert sorted(filled) == ["DATABASE_URL", "MQTT_URL", "SECRET_KEY"]
    assert shell["DATABASE_URL"] == env["DATABASE_URL"], "with the password the banner does not print"
    assert shell["REDIS_URL"] == "redis://mine:6379/1", "an exported variable wins"


def test_without_a_running_stack_nothing_is_filled_in(tmp_path):
    from farm.devstack.config import use_stack_settings

    shell = {"FURROW_VAR_DIR": str(tmp_path)}
    assert use_stack_settings(shell) == []
    assert shell == {"FURROW_VAR_DIR": str(tmp_path)}


def can_log_in(username: str, password: str) -> bool:
    """Through the authentication backends as a sign-in request would (django-axes needs the request)."""
    return authenticate(RequestFactory().post("/accounts/login/"), username=username, password=password) is not None
