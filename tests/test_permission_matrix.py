"""The role matrix: every URL of the project, as every role, against a declared table.

Each cell runs in its own transaction. A URL pattern without a row fails
``test_every_url_pattern_has_a_row``, so a new endpoint cannot ship unchecked. The admin is
one row (``admin:index``): Django's admin lets staff in and sends everyone else to its login.

Cells: ``ok`` 200 · ``login`` a redirect to a sign-in page with ``next`` · ``redirect`` any
other redirect (an action done, or refused with a message) · ``403`` may see the farm but not
do this · ``404`` may not see the farm (looks like no farm at all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from alerts.models import AlertEpisode
from farm.invitations import invitation_create, invitation_token
from farm.models import Farm, Role
from farm.permissions import MINIMUM_ROLE, Action, can
from notifications.models import InboxItem, NotificationChannel
from sensors.models import Sensor
from tests.alert_fixtures import make_rule
from tests.factories import (
    DeviceFactory,
    FarmFactory,
    FieldFactory,
    MembershipFactory,
    SensorFactory,
    UserFactory,
)

ROLES = ("anonymous", "outsider", "viewer", "manager", "owner", "staff")


@dataclass
class World:
    farm: Any
    users: dict[str, Any]
    field: Any
    sensor: Any
    invitation: Any
    second_viewer: Any  # the membership that role changes and removals act on
    manager: Any
    rule: Any
    episode: Any


def make_world() -> World:
    farm = FarmFactory()
    other = FarmFactory()
    users = {role: UserFactory() for role in ("outsider", "viewer", "manager", "owner")}
    users["staff"] = UserFactory(is_staff=True)
    MembershipFactory(farm=other, user=users["outsider"], role=Role.OWNER)
    MembershipFactory(farm=farm, user=users["viewer"], role=Role.VIEWER)
    manager = MembershipFactory(farm=farm, user=users["manager"], role=Role.MANAGER)
    MembershipFactory(farm=farm, user=users["owner"], role=Role.OWNER)
    second_viewer = MembershipFactory(farm=farm, role=Role.VIEWER)
    field = FieldFactory(farm=farm)
    sensor = SensorFactory(device=DeviceFactory(farm=farm, field=field))
    invitation = invitation_create(
        farm=cast(Farm, farm),
        email="invited@example.com",
        role=Role.VIEWER,
        actor=cast(User, users["owner"]),
        base_url="/",
    )
    invitation.token = invitation_token(invitation)  # type: ignore[attr-defined]
    rule = make_rule(cast(Farm, farm))
    episode = AlertEpisode.objects.create(
        rule=rule, sensor=cast(Sensor, sensor), started_at=timezone.now(), worst_value=4
    )
    return World(farm, users, field, sensor, invitation, second_viewer, manager, rule, episode)


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    args: Callable[[World], list[Any]]
    expect: tuple[str, str, str, str, str, str]  # in the order of ROLES
    data: Callable[[World], dict[str, Any]] = lambda w: {}


def farm(w: World) -> list[Any]:
    return [w.farm.slug]


def none(w: World) -> list[Any]:
    return []


# anonymous, outsider, viewer, manager, owner, staff
PUBLIC = ("ok",) * 6
SIGNED_IN = ("login", "ok", "ok", "ok", "ok", "ok")
FARM_VIEW = ("login", "404", "ok", "ok", "ok", "ok")
OWNER_ACT = ("login", "404", "403", "403", "redirect", "redirect")
MANAGER_PAGE = ("login", "404", "403", "ok", "ok", "ok")
MANAGER_ACT = ("login", "404", "403", "redirect", "redirect", "redirect")
OWNER_PAGE = ("login", "404", "403", "403", "ok", "ok")
ADMIN = ("login", "login", "login", "login", "login", "ok")

OWN_CHANNEL_PAGE = ("login", "404", "ok", "404", "404", "404")  # the viewer's channel
OWN_CHANNEL_ACT = ("login", "404", "redirect", "404", "404", "404")
CHANNEL_FORM = {"channel-kind": "email", "channel-target": "me@example.com", "channel-min_severity": "warning"}


def viewer_inbox_item(w: World) -> list[Any]:
    item = InboxItem.objects.create(
        key=f"matrix-{w.farm.pk}", user=w.users["viewer"], farm=w.farm, severity="warning",
        subject="Frost risk", link=f"/farms/{w.farm.slug}/alerts/", created_at=timezone.now(),
    )  # fmt: skip
    return [item.pk]


def viewer_channel(w: World) -> list[Any]:
    channel = NotificationChannel.objects.create(user=w.users["viewer"], kind="email", target="viewer@example.com")
    return [channel.pk]


ROWS = [
    Row("farm-list", "get", none, SIGNED_IN),
    Row("login", "get", none, ("ok", "redirect", "redirect", "redirect", "redirect", "redirect")),
    Row("logout", "post", none, ("redirect",) * 6),
    Row("healthz", "get", none, PUBLIC),
    Row("admin:index", "get", none, ADMIN),
    # The dashboard and its JSON.
    Row("farm-dashboard", "get", farm, FARM_VIEW),
    Row("farm-sensor-series", "get", lambda w: [w.farm.slug, w.sensor.pk], FARM_VIEW),
    Row("farm-sparklines", "get", farm, FARM_VIEW),
    # The team.
    Row("farm-team", "get", farm, FARM_VIEW),
    Row("farm-team-invite", "post", farm, OWNER_ACT, lambda w: {"email": "new@example.com", "role": "viewer"}),
    Row("farm-invitation-resend", "post", lambda w: [w.farm.slug, w.invitation.pk], OWNER_ACT),
    Row("farm-invitation-revoke", "post", lambda w: [w.farm.slug, w.invitation.pk], OWNER_ACT),
    Row(
        "farm-member-role",
        "post",
        lambda w: [w.farm.slug, w.second_viewer.pk],
        OWNER_ACT,
        lambda w: {"role": "manager"},
    ),
    Row("farm-member-remove", "post", lambda w: [w.farm.slug, w.second_viewer.pk], OWNER_ACT),
    Row("farm-ownership-transfer", "post", farm, OWNER_ACT, lambda w: {"membership": w.manager.pk}),
    Row("farm-team-leave", "post", farm, ("login", "404", "redirect", "redirect", "redirect", "redirect")),
    Row("invitation-accept", "get", lambda w: [w.invitation.token], PUBLIC),
    # Settings and fields.
    Row("farm-settings", "get", farm, OWNER_PAGE),
    Row("farm-fields", "get", farm, MANAGER_PAGE),
    Row("farm-field-edit", "get", lambda w: [w.farm.slug, w.field.pk], MANAGER_PAGE),
    Row(
        "farm-field-delete",
        "post",
        lambda w: [w.farm.slug, w.field.pk],
        ("login", "404", "403", "redirect", "redirect", "redirect"),
    ),
    # Devices: managers rename them and move them between fields.
    Row("farm-devices", "get", farm, MANAGER_PAGE),
    Row("farm-device-edit", "get", lambda w: [w.farm.slug, w.sensor.device.pk], MANAGER_PAGE),
    # Alerts: viewers read; managers and owners acknowledge and edit rules.
    Row("alerts-page", "get", farm, FARM_VIEW),
    Row("alerts-episode", "get", lambda w: [w.farm.slug, w.episode.pk], FARM_VIEW),
    Row("alerts-acknowledge", "post", lambda w: [w.farm.slug, w.episode.pk], MANAGER_ACT),
    Row("alerts-rules", "get", farm, FARM_VIEW),
    Row("alerts-rule-new", "get", farm, MANAGER_PAGE),
    Row("alerts-rule-backtest", "post", farm, ("login", "404", "403", "400", "400", "400")),
    Row("alerts-rule-edit", "get", lambda w: [w.farm.slug, w.rule.pk], MANAGER_PAGE),
    Row("alerts-rule-delete", "post", lambda w: [w.farm.slug, w.rule.pk], MANAGER_ACT),
    # History: members read and export.
    Row("history-page", "get", farm, FARM_VIEW),
    Row("history-data", "get", farm, ("login", "404", "400", "400", "400", "400")),
    Row("history-summaries", "get", farm, FARM_VIEW),
    Row("history-export", "get", farm, ("login", "404", "400", "400", "400", "400")),
    # The person's own account.
    Row("account-profile", "get", none, SIGNED_IN),
    Row("password-change", "get", none, SIGNED_IN),
    Row("password-reset", "get", none, PUBLIC),
    Row("password-reset-done", "get", none, PUBLIC),
    Row("password-reset-confirm", "get", lambda w: ["MQ", "not-a-token"], PUBLIC),
    Row("password-reset-complete", "get", none, PUBLIC),
    # Notifications: a person's own page; channels are reachable by their owner only (404 otherwise).
    Row("account-notifications", "get", none, SIGNED_IN),
    Row("notification-channel-add", "post", none, ("login",) + ("redirect",) * 5, lambda w: CHANNEL_FORM),
    Row("notification-channel-edit", "get", viewer_channel, OWN_CHANNEL_PAGE),
    Row("notification-channel-delete", "post", viewer_channel, OWN_CHANNEL_ACT),
    Row("notification-channel-test", "post", viewer_channel, OWN_CHANNEL_ACT),
    Row("farm-failed-deliveries", "get", farm, OWNER_PAGE),
    # The in-app inbox: a person's own list; an item opens (and is marked read) for its owner only.
    Row("notifications-inbox", "get", none, SIGNED_IN),
    Row("notifications-inbox-open", "get", viewer_inbox_item, OWN_CHANNEL_ACT),
    Row("notifications-inbox-read-all", "post", none, ("login",) + ("redirect",) * 5),
]


def url_names(patterns: list[URLPattern | URLResolver], namespace: str = "") -> Iterator[str]:
    for p in patterns:
        if isinstance(p, URLResolver):
            inner = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from url_names(p.url_patterns, inner)
        else:
            yield f"{namespace}{p.name}" if p.name else f"{namespace}<unnamed {p.pattern}>"


def test_every_url_pattern_has_a_row():
    declared = {row.name for row in ROWS}
    names = set(url_names(get_resolver().url_patterns))
    missing = sorted(n for n in names if not n.startswith("admin:") and n not in declared)
    assert not missing, f"URL patterns without a row in the permission matrix: {missing}"
    assert not declared - names, f"rows for URLs that no longer exist: {sorted(declared - names)}"


def outcome(response: Any) -> str:
    if response.status_code in (301, 302):
        return "login" if "next=" in response["Location"] else "redirect"
    return "ok" if response.status_code == 200 else str(response.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_matrix_cell(row: Row, role: str):
    world = make_world()
    client = Client()
    if role != "anonymous":
        client.force_login(world.users[role])
    url = reverse(row.name, args=row.args(world))
    response = getattr(client, row.method)(url, row.data(world))
    assert outcome(response) == row.expect[ROLES.index(role)], f"{row.method.upper()} {url} as {role}"


# --- The action table itself, as every role ------------------------------------------------------

ACTIONS_BY_ROLE = {
    "anonymous": set(),
    "outsider": set(),
    "viewer": {Action.VIEW_FARM, Action.EXPORT_DATA},
    "manager": {
        Action.VIEW_FARM,
        Action.EXPORT_DATA,
        Action.ACKNOWLEDGE_ALERTS,
        Action.EDIT_RULES,
        Action.EDIT_DEVICES,
        Action.EDIT_FIELDS,
    },
    "owner": set(Action),
    "staff": set(Action),
}


def test_every_action_has_a_minimum_role():
    assert set(MINIMUM_ROLE) == set(Action)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_take_exactly_its_actions(role: str):
    from django.contrib.auth.models import AnonymousUser

    world = make_world()
    user = AnonymousUser() if role == "anonymous" else world.users[role]
    allowed = {action for action in Action if can(user, world.farm, action)}
    assert allowed == ACTIONS_BY_ROLE[role]
    assert {a for a in Action if user.has_perm(a.value, world.farm)} == ACTIONS_BY_ROLE[role]
