"""The alerts pages: what each role may see and do, the rule form's errors, presets, acknowledging."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alerts.models import AlertAudit, AlertEpisode, AlertRule
from farm.models import Farm, Membership
from sensors.models import Sensor
from tests.alert_fixtures import make_rule
from tests.factories import FarmFactory, MembershipFactory, SensorFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def farm() -> Farm:
    return cast(Farm, FarmFactory(slug="brookside"))


@pytest.fixture
def sensor(farm: Farm) -> Sensor:
    return cast(Sensor, SensorFactory(device__farm=farm))


def client_as(farm: Farm, role: str | None) -> Client:
    client = Client()
    if role == "staff":
        client.force_login(cast(User, UserFactory(is_staff=True)))
    elif role == "outsider":
        client.force_login(cast(User, UserFactory()))
    elif role is not None:
        client.force_login(cast(Membership, MembershipFactory(farm=farm, role=role)).user)
    return client


def open_episode(rule: AlertRule, sensor: Sensor) -> AlertEpisode:
    return AlertEpisode.objects.create(
        rule=rule, sensor=sensor, started_at=timezone.now() - timedelta(minutes=5), first_value=10, worst_value=8
    )


def rule_post(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Soil too dry",
        "metric": "soil_moisture",
        "kind": "below",
        "threshold": "20",
        "clear": "23",
        "for_minutes": "30",
        "clear_for_minutes": "0",
        "scope": "farm",
        "severity": "warning",
        "enabled": "on",
        "notify_roles": ["owner", "manager"],  # the form's defaults, checked
        "notify_resolved": "on",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("role", "status"),
    [("viewer", 200), ("manager", 200), ("owner", 200), ("staff", 200), ("outsider", 404), (None, 302)],
)
def test_who_may_see_the_alerts_page_and_the_rules(farm, role, status):
    client = client_as(farm, role)
    assert client.get(reverse("alerts-page", args=[farm.slug])).status_code == status
    assert client.get(reverse("alerts-rules", args=[farm.slug])).status_code == status


@pytest.mark.parametrize(
    ("role", "status"), [("viewer", 403), ("manager", 302), ("owner", 302), ("staff", 302), ("outsider", 404)]
)
def test_only_managers_owners_and_staff_create_rules(farm, sensor, role, status):
    response = client_as(farm, role).post(reverse("alerts-rule-new", args=[farm.slug]), rule_post())
    assert response.status_code == status
    assert AlertRule.objects.filter(farm=farm).exists() is (status == 302)


@pytest.mark.parametrize(("role", "acknowledged"), [("viewer", False), ("manager", True), ("owner", True)])
def test_only_managers_and_owners_acknowledge(farm, sensor, role, acknowledged):
    episode = open_episode(make_rule(farm), sensor)
    url = reverse("alerts-acknowledge", args=[farm.slug, episode.pk])
    client_as(farm, role).post(url, {"comment": "valve 3 opened"})
    episode.refresh_from_db()
    assert (episode.acknowledged_at is not None) is acknowledged
    if acknowledged:
        assert episode.ack_comment == "valve 3 opened"
        audit = AlertAudit.objects.get(action="acknowledged")
        assert (audit.actor, audit.changes) == (episode.acknowledged_by, {"comment": "valve 3 opened"})


def test_the_alerts_page_lists_firing_then_acknowledged_then_resolved(farm, sensor):
    rule = make_rule(farm, note="open valve 3")
    resolved = open_episode(rule, sensor)
    AlertEpisode.objects.filter(pk=resolved.pk).update(ended_at=timezone.now(), end_reason="cleared")
    acknowledged = open_episode(make_rule(farm, name="Other"), sensor)
    AlertEpisode.objects.filter(pk=acknowledged.pk).update(acknowledged_at=timezone.now())
    firing = AlertEpisode.objects.create(rule=rule, sensor=sensor, started_at=timezone.now(), worst_value=4)
    html = client_as(farm, "viewer").get(reverse("alerts-page", args=[farm.slug])).content.decode()
    positions = [html.index(f'data-episode="{e.pk}"') for e in (firing, acknowledged, resolved)]
    assert positions == sorted(positions)
    assert "open valve 3" in html
    assert "Acknowledge</button>" not in html  # a viewer gets no button


def test_filters_narrow_the_list(farm, sensor):
    open_episode(make_rule(farm, severity="critical"), sensor)
    page = client_as(farm, "manager").get(reverse("alerts-page", args=[farm.slug]), {"severity": "info"})
    assert page.context["alerts"].firing == []


def test_a_preset_fills_the_form(farm, sensor):
    page = client_as(farm, "manager").get(reverse("alerts-rule-new", args=[farm.slug]), {"preset": "frost-risk"})
    form = page.context["form"]
    assert (form.initial["threshold"], form.initial["clear"], form.initial["kind"]) == (2.0, 3.0, "below")


def test_the_form_shows_each_error_beside_its_field(farm, sensor):
    make_rule(farm, name="Taken")
    client = client_as(farm, "manager")
    page = client.post(reverse("alerts-rule-new", args=[farm.slug]), rule_post(name="Taken", clear="15", scope="field"))
    assert page.status_code == 200
    errors = page.context["form"].errors
    assert set(errors) >= {"name", "clear", "field"}
    assert "clears at or above" in errors["clear"][0]


def test_editing_a_rule_records_what_changed(farm, sensor):
    rule = make_rule(farm)
    client = client_as(farm, "owner")
    response = client.post(reverse("alerts-rule-edit", args=[farm.slug, rule.pk]), rule_post(threshold="18"))
    assert response.status_code == 302
    audit = AlertAudit.objects.get(action="updated")
    assert audit.changes["threshold"] == [20.0, 18.0]
    assert "for_seconds" in audit.changes  # 0 → 30 minutes


def test_disabling_a_firing_rule_closes_its_episode(farm, sensor):
    rule = make_rule(farm)
    episode = open_episode(rule, sensor)
    post = rule_post()
    del post["enabled"]
    client_as(farm, "manager").post(reverse("alerts-rule-edit", args=[farm.slug, rule.pk]), post)
    episode.refresh_from_db()
    assert episode.end_reason == "rule disabled"


def test_a_viewer_cannot_open_the_edit_form_or_delete(farm, sensor):
    rule = make_rule(farm)
    client = client_as(farm, "viewer")
    assert client.get(reverse("alerts-rule-edit", args=[farm.slug, rule.pk])).status_code == 403
    assert client.post(reverse("alerts-rule-delete", args=[farm.slug, rule.pk])).status_code == 403
    assert AlertRule.objects.filter(pk=rule.pk).exists()


def test_a_rule_of_another_farm_is_not_found(farm, sensor):
    other = make_rule(cast(Farm, FarmFactory()))
    client = client_as(farm, "owner")
    assert client.get(reverse("alerts-rule-edit", args=[farm.slug, other.pk])).status_code == 404


def test_an_admin_edit_is_audited_and_disabling_there_closes_the_episode(farm, sensor):
    rule = make_rule(farm)
    episode = open_episode(rule, sensor)
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(cast(User, admin))
    url = reverse("admin:alerts_alertrule_change", args=[rule.pk])
    form = client.get(url).context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items() if k in form.fields}
    data.pop("enabled")  # an unchecked box
    data.update(threshold="18", muted_until_0="", muted_until_1="")
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    audit = AlertAudit.objects.get(source="admin")
    assert audit.changes["threshold"] == [20.0, 18.0]
    assert audit.actor == admin
    episode.refresh_from_db()
    assert episode.end_reason == "rule disabled"


def test_the_who_is_told_section_starts_with_managers_and_owners_and_lists_the_farms_members(farm, sensor):
    viewer = cast(Membership, MembershipFactory(farm=farm, role="viewer", user__first_name="Vera")).user
    MembershipFactory(role="owner", user__username="stranger")  # another farm's
    page = client_as(farm, "manager").get(reverse("alerts-rule-new", args=[farm.slug]))
    html = page.content.decode()
    assert "Who is told" in html
    form = page.context["form"]
    assert [str(r) for r in form["notify_roles"].value()] == ["owner", "manager"]
    assert form["notify_resolved"].value() is True
    members = dict(form.fields["notify_users"].choices)
    assert any(label == "Vera (viewer)" for label in members.values())
    assert viewer.pk in [int(str(value)) for value in members]
    assert "stranger" not in html


def test_nobody_to_tell_and_a_non_member_are_errors_beside_their_fields(farm, sensor):
    stranger = cast(Membership, MembershipFactory(role="owner")).user  # a member of another farm
    client = client_as(farm, "manager")
    url = reverse("alerts-rule-new", args=[farm.slug])
    html = client.post(url, rule_post(notify_roles=[])).content.decode()
    assert 'id="id_notify_roles_error"' in html
    assert "Choose at least one role or a named member" in html
    assert 'id="id_escalate_minutes_error"' in client.post(url, rule_post(escalate_minutes="0")).content.decode()
    page = client.post(reverse("alerts-rule-new", args=[farm.slug]), rule_post(notify_users=[str(stranger.pk)]))
    assert "notify_users" in page.context["form"].errors
    assert 'id="id_notify_users_error"' in page.content.decode()
    assert not AlertRule.objects.exists()


def test_a_rule_saves_its_recipients_escalation_and_resolve_choice_and_the_change_is_audited(farm, sensor):
    viewer = cast(Membership, MembershipFactory(farm=farm, role="viewer")).user
    client = client_as(farm, "owner")
    post = rule_post(notify_roles=["owner"], notify_users=[str(viewer.pk)], escalate_minutes="45")
    del post["notify_resolved"]  # an unchecked box
    assert client.post(reverse("alerts-rule-new", args=[farm.slug]), post).status_code == 302
    rule = AlertRule.objects.get()
    assert (rule.notify_roles, rule.escalate_seconds, rule.notify_resolved) == (["owner"], 2700, False)
    assert list(rule.notify_users.all()) == [viewer]
    created = AlertAudit.objects.get(action="created")
    assert created.changes["notify_users"] == [None, [viewer.pk]]
    edit = client.get(reverse("alerts-rule-edit", args=[farm.slug, rule.pk])).context["form"]
    assert (edit["escalate_minutes"].value(), edit["notify_resolved"].value()) == (45, False)
    post.update(notify_roles=["owner", "manager"], notify_users=[])
    assert client.post(reverse("alerts-rule-edit", args=[farm.slug, rule.pk]), post).status_code == 302
    updated = AlertAudit.objects.get(action="updated")
    assert updated.changes == {"notify_roles": [["owner"], ["owner", "manager"]], "notify_users": [[viewer.pk], []]}
    assert list(rule.notify_users.all()) == []


def test_the_rules_list_says_whom_each_rule_tells(farm, sensor):
    rule = make_rule(farm, notify_roles=["manager"], escalate_seconds=1800, notify_resolved=False)
    rule.notify_users.add(cast(Membership, MembershipFactory(farm=farm, role="viewer")).user)
    make_rule(farm, name="Plain")
    html = client_as(farm, "viewer").get(reverse("alerts-rules", args=[farm.slug])).content.decode()
    plain, dry = (cell.split("</td>")[0] for cell in html.split('data-role="tells">')[1:])
    assert " ".join(plain.split()) == "owners, managers"
    assert " ".join(dry.split()).startswith("managers + 1 named")
    assert "owners after 30 min" in dry
    assert "not when resolved" in dry


def test_the_admin_sets_who_is_told_with_checkboxes_and_audits_it(farm, sensor):
    rule = make_rule(farm)
    viewer = cast(Membership, MembershipFactory(farm=farm, role="viewer")).user
    client = Client()
    client.force_login(cast(User, UserFactory(is_staff=True, is_superuser=True)))
    url = reverse("admin:alerts_alertrule_change", args=[rule.pk])
    form = client.get(url).context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items() if k in form.fields}
    data.update(notify_roles=["owner"], notify_users=[str(viewer.pk)], muted_until_0="", muted_until_1="")
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert (rule.notify_roles, list(rule.notify_users.all())) == (["owner"], [viewer])
    changes = AlertAudit.objects.get(source="admin").changes
    assert changes == {"notify_roles": [["owner", "manager"], ["owner"]], "notify_users": [[], [viewer.pk]]}
