"""The farm's team: invitations, roles, removal, hand-over, the last owner, and the activity log."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, cast

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from farm.invitations import InvitationProblem, invitation_create, invitation_token
from farm.models import Farm, Invitation, Membership, Role, TeamEvent, TeamEventKind
from tests.factories import FarmFactory, MembershipFactory, UserFactory


def a_member(**kwargs: Any) -> Membership:
    return cast(Membership, MembershipFactory(**kwargs))


def a_user(**kwargs: Any) -> User:
    return cast(User, UserFactory(**kwargs))


def a_farm() -> Farm:
    return cast(Farm, FarmFactory())


PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.django_db


@pytest.fixture
def owner() -> Membership:
    return a_member(role=Role.OWNER)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def invite(owner, email="newcomer@example.com", role=Role.VIEWER) -> str:
    """Invite through the page as the owner; the link from the email that was sent."""
    with_commit = client_for(owner.user)
    response = with_commit.post(reverse("farm-team-invite", args=[owner.farm.slug]), {"email": email, "role": role})
    assert response.status_code == 302, response.content.decode()[:2000]
    return link_in(str(mail.outbox[-1].body))


def link_in(body: str) -> str:
    match = re.search(r"http://testserver(/invitations/[^/\s]+/)", body)
    assert match, body
    return match.group(1)


@pytest.fixture(autouse=True)
def _commit_each_request(django_capture_on_commit_callbacks, monkeypatch):
    """Invitations are mailed after the commit: run each request's on-commit callbacks as it ends."""
    original = Client.request

    def request(self, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return original(self, **kwargs)

    monkeypatch.setattr(Client, "request", request)


def test_an_owner_invites_by_email_and_the_invitee_sets_up_an_account(owner):
    link = invite(owner)
    assert mail.outbox[-1].to == ["newcomer@example.com"]
    assert owner.farm.name in mail.outbox[-1].subject

    newcomer = Client()
    page = newcomer.get(link)
    assert page.status_code == 200
    assert b"Create account and join" in page.content
    response = newcomer.post(
        link, {"username": "newcomer", "first_name": "Nia", "last_name": "Ward", "password1": "a field of barley 42",
               "password2": "a field of barley 42"},
    )  # fmt: skip
    assert response.status_code == 302
    assert response["Location"] == reverse("farm-dashboard", args=[owner.farm.slug])
    membership = Membership.objects.get(farm=owner.farm, user__username="newcomer")
    assert membership.role == Role.VIEWER
    assert membership.user.email == "newcomer@example.com"
    assert newcomer.get(reverse("farm-dashboard", args=[owner.farm.slug])).status_code == 200


def test_an_invitee_with_an_account_accepts_after_signing_in(owner):
    existing = a_user(email="newcomer@example.com")
    link = invite(owner, role=Role.MANAGER)
    page = Client().get(link)
    assert b"Sign in" in page.content
    assert b"/login/?next=" in page.content

    client = client_for(existing)
    assert b"Accept and open the farm" in client.get(link).content
    assert client.post(link).status_code == 302
    assert Membership.objects.get(farm=owner.farm, user=existing).role == Role.MANAGER


def test_an_invitation_works_once(owner):
    existing = a_user(email="newcomer@example.com")
    link = invite(owner)
    client = client_for(existing)
    client.post(link)
    again = client.post(link)
    assert again.status_code == 410
    assert escape(InvitationProblem.USED.value) in again.content.decode()


def test_an_expired_invitation_is_refused(owner):
    existing = a_user(email="newcomer@example.com")
    link = invite(owner)
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        response = client_for(existing).post(link)
    assert response.status_code == 410
    assert escape(InvitationProblem.EXPIRED.value) in response.content.decode()
    assert not Membership.objects.filter(user=existing).exists()


def test_an_invitation_for_another_address_is_refused(owner):
    someone_else = a_user(email="someone@example.com")
    link = invite(owner)
    response = client_for(someone_else).post(link)
    assert response.status_code == 403
    assert escape(InvitationProblem.WRONG_ACCOUNT.value) in response.content.decode()
    assert not Membership.objects.filter(user=someone_else, farm=owner.farm).exists()


def test_a_revoked_invitation_is_refused(owner):
    link = invite(owner)
    invitation = Invitation.objects.get(farm=owner.farm)
    client_for(owner.user).post(reverse("farm-invitation-revoke", args=[owner.farm.slug, invitation.pk]))
    response = Client().get(link)
    assert response.status_code == 410
    assert escape(InvitationProblem.REVOKED.value) in response.content.decode()


def test_resending_sends_a_new_link_and_the_old_one_stops_working(owner):
    old = invite(owner)
    invitation = Invitation.objects.get(farm=owner.farm)
    client_for(owner.user).post(reverse("farm-invitation-resend", args=[owner.farm.slug, invitation.pk]))
    new = link_in(str(mail.outbox[-1].body))
    assert new != old
    assert Client().get(old).status_code == 410
    assert Client().get(new).status_code == 200


def test_a_tampered_link_is_refused(owner):
    link = invite(owner)
    response = Client().get(link[:-3] + "xx/")
    assert response.status_code == 410
    assert escape(InvitationProblem.INVALID.value) in response.content.decode()


def test_inviting_a_member_again_is_an_error_beside_the_field(owner):
    viewer = a_member(farm=owner.farm, role=Role.VIEWER)
    response = client_for(owner.user).post(
        reverse("farm-team-invite", args=[owner.farm.slug]), {"email": viewer.user.email.upper(), "role": "viewer"}
    )
    assert response.status_code == 400
    assert b"is already a member" in response.content
    assert b'class="form-row has-error"' in response.content


def test_the_last_owner_cannot_leave_or_step_down(owner):
    client = client_for(owner.user)
    client.post(reverse("farm-team-leave", args=[owner.farm.slug]))
    client.post(reverse("farm-member-role", args=[owner.farm.slug, owner.pk]), {"role": "viewer"})
    owner.refresh_from_db()
    assert owner.role == Role.OWNER
    page = client.get(reverse("farm-team", args=[owner.farm.slug]))
    assert b"hand over ownership" in page.content


def test_an_owner_may_leave_once_there_is_another_owner(owner):
    other = a_member(farm=owner.farm, role=Role.OWNER)
    response = client_for(owner.user).post(reverse("farm-team-leave", args=[owner.farm.slug]))
    assert response["Location"] == reverse("farm-list")
    assert list(Membership.objects.filter(farm=owner.farm)) == [other]


def test_handing_over_ownership_makes_the_old_owner_a_manager(owner):
    viewer = a_member(farm=owner.farm, role=Role.VIEWER)
    client_for(owner.user).post(reverse("farm-ownership-transfer", args=[owner.farm.slug]), {"membership": viewer.pk})
    owner.refresh_from_db()
    viewer.refresh_from_db()
    assert (owner.role, viewer.role) == (Role.MANAGER, Role.OWNER)


def test_an_owner_changes_a_role_and_removes_a_member(owner):
    viewer = a_member(farm=owner.farm, role=Role.VIEWER)
    client = client_for(owner.user)
    client.post(reverse("farm-member-role", args=[owner.farm.slug, viewer.pk]), {"role": "manager"})
    viewer.refresh_from_db()
    assert viewer.role == Role.MANAGER
    client.post(reverse("farm-member-remove", args=[owner.farm.slug, viewer.pk]))
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    assert client_for(viewer.user).get(reverse("farm-dashboard", args=[owner.farm.slug])).status_code == 404


def test_every_team_change_is_in_the_log_with_who_did_it(owner):
    owner.user.first_name = "Olive"
    owner.user.save()
    joiner = a_user(email="newcomer@example.com", first_name="Nia")
    client_for(joiner).post(invite(owner))
    member = Membership.objects.get(user=joiner)
    client = client_for(owner.user)
    client.post(reverse("farm-member-role", args=[owner.farm.slug, member.pk]), {"role": "manager"})
    client.post(reverse("farm-member-remove", args=[owner.farm.slug, member.pk]))
    kinds = list(TeamEvent.objects.filter(farm=owner.farm).order_by("at", "id").values_list("kind", "actor_name"))
    assert kinds == [
        (TeamEventKind.INVITED, "Olive"),
        (TeamEventKind.JOINED, "Nia"),
        (TeamEventKind.ROLE_CHANGED, "Olive"),
        (TeamEventKind.REMOVED, "Olive"),
    ]
    page = client.get(reverse("farm-team", args=[owner.farm.slug])).content.decode()
    assert "changed the role of" in page
    assert "Viewer → Manager" in page
    assert "removed" in page


def test_a_viewer_sees_the_team_but_no_controls(owner):
    viewer = a_member(farm=owner.farm, role=Role.VIEWER)
    invitation_create(farm=owner.farm, email="x@example.com", role=Role.VIEWER, actor=owner.user, base_url="http://t/")
    page = client_for(viewer.user).get(reverse("farm-team", args=[owner.farm.slug])).content.decode()
    assert viewer.user.username in page
    assert owner.user.username in page
    hidden = ('name="role"', "Invite a colleague", "x@example.com", "Remove", ">Fields<", ">Settings<", "Activity")
    for control in hidden:
        assert control not in page


def test_a_visit_is_recorded_for_the_team_page(owner):
    viewer = a_member(farm=owner.farm, role=Role.VIEWER)
    from django.core.cache import cache

    cache.delete(f"farm-visit:{viewer.user.pk}:{owner.farm.slug}")
    client_for(viewer.user).get(reverse("farm-dashboard", args=[owner.farm.slug]))
    viewer.refresh_from_db()
    assert viewer.last_visit is not None
    assert timezone.now() - viewer.last_visit < timedelta(minutes=1)


def test_a_token_names_one_invitation_only(owner):
    a = invitation_create(farm=owner.farm, email="a@example.com", role=Role.VIEWER, actor=owner.user, base_url="/")
    b = invitation_create(farm=a_farm(), email="a@example.com", role=Role.OWNER, actor=owner.user, base_url="/")
    assert invitation_token(a) != invitation_token(b)
