"""Invitations to a farm: create, resend, revoke, accept — and the signed link they travel in.

The link's token is ``{"i": id, "n": nonce}`` signed with SECRET_KEY (Django's signing, with
a timestamp): it cannot be forged or edited, stops working after FARM_INVITATION_DAYS, once
used (``accepted_at``), once revoked, and once resent (a resend draws a new nonce). An
invitation is for one email address: only an account with that address can accept it.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from farm.models import Farm, Invitation, Membership, Role, TeamEventKind
from farm.services import team_event_record
from farm.team import TeamError

SALT = "farm.invitation"


class InvitationProblem(StrEnum):
    INVALID = "This invitation link is not valid. Check that you copied all of it."
    EXPIRED = "This invitation has expired. Ask the farm's owner to send a new one."
    USED = "This invitation has already been used."
    REVOKED = "This invitation was withdrawn by the farm's owner."
    WRONG_ACCOUNT = "This invitation was sent to another email address than your account's."


class InvitationError(Exception):
    def __init__(self, problem: InvitationProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps({"i": invitation.pk, "n": invitation.nonce}, salt=SALT, compress=True)


def invitation_url(invitation: Invitation, *, base_url: str) -> str:
    return base_url.rstrip("/") + reverse("invitation-accept", args=[invitation_token(invitation)])


def invitation_for_token(token: str) -> Invitation:
    """The open invitation the token names, or ``InvitationError`` saying why not."""
    max_age = timedelta(days=settings.FARM_INVITATION_DAYS)
    try:
        data = signing.loads(token, salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise InvitationError(InvitationProblem.EXPIRED) from None
    except signing.BadSignature:
        raise InvitationError(InvitationProblem.INVALID) from None
    invitation = Invitation.objects.select_related("farm").filter(pk=data.get("i")).first()
    if invitation is None or invitation.nonce != data.get("n"):
        # Revoked and then deleted with its farm, or superseded by a resend.
        raise InvitationError(InvitationProblem.INVALID)
    if invitation.revoked_at is not None:
        raise InvitationError(InvitationProblem.REVOKED)
    if invitation.accepted_at is not None:
        raise InvitationError(InvitationProblem.USED)
    if invitation.expires_at <= timezone.now():
        raise InvitationError(InvitationProblem.EXPIRED)
    return invitation


def _issue(invitation: Invitation) -> None:
    invitation.nonce = secrets.token_urlsafe(16)
    invitation.sent_at = timezone.now()
    invitation.expires_at = invitation.sent_at + timedelta(days=settings.FARM_INVITATION_DAYS)


def _send_after_commit(invitation: Invitation, *, base_url: str, inviter: str) -> None:
    context = {
        "farm": invitation.farm,
        "role": invitation.get_role_display(),
        "inviter": inviter,
        "url": invitation_url(invitation, base_url=base_url),
        "days": settings.FARM_INVITATION_DAYS,
    }
    subject = f"You are invited to {invitation.farm.name} on Furrow"
    body = render_to_string("farm/email/invitation.txt", context)
    transaction.on_commit(lambda: send_mail(subject, body, None, [invitation.email]))


def _display(user: User) -> str:
    return user.get_full_name() or user.get_username()


def _already_member(farm: Farm, email: str) -> bool:
    return Membership.objects.filter(farm=farm, user__email__iexact=email).exists()


@transaction.atomic
def invitation_create(*, farm: Farm, email: str, role: Role, actor: User, base_url: str) -> Invitation:
    """Invite ``email`` with ``role``; inviting an address with an open invitation resends it."""
    email = email.strip()
    if _already_member(farm, email):
        raise TeamError(f"{email} is already a member of {farm.name}.", code="member")
    invitation = (
        Invitation.objects.select_for_update()
        .filter(farm=farm, email__iexact=email, accepted_at=None, revoked_at=None)
        .first()
    ) or Invitation(farm=farm, email=email, invited_by=actor)
    resend = invitation.pk is not None
    invitation.role = role
    _issue(invitation)
    invitation.save()
    kind = TeamEventKind.RESENT if resend else TeamEventKind.INVITED
    team_event_record(farm=farm, actor=actor, kind=kind, subject=email, detail=invitation.get_role_display())
    _send_after_commit(invitation, base_url=base_url, inviter=_display(actor))
    return invitation


def _open(farm: Farm, invitation_id: int) -> Invitation:
    invitation = (
        Invitation.objects.select_for_update()
        .filter(farm=farm, pk=invitation_id, accepted_at=None, revoked_at=None)
        .first()
    )
    if invitation is None:
        raise TeamError("That invitation is no longer open.")
    return invitation


@transaction.atomic
def invitation_resend(*, farm: Farm, invitation_id: int, actor: User, base_url: str) -> Invitation:
    """A new link with a fresh expiry; the old link stops working."""
    invitation = _open(farm, invitation_id)
    _issue(invitation)
    invitation.save(update_fields=["nonce", "sent_at", "expires_at"])
    team_event_record(farm=farm, actor=actor, kind=TeamEventKind.RESENT, subject=invitation.email)
    _send_after_commit(invitation, base_url=base_url, inviter=_display(actor))
    return invitation


@transaction.atomic
def invitation_revoke(*, farm: Farm, invitation_id: int, actor: User) -> None:
    invitation = _open(farm, invitation_id)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    team_event_record(farm=farm, actor=actor, kind=TeamEventKind.REVOKED, subject=invitation.email)


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Join the farm as the invitation says. Single use: the row lock makes a double click one join."""
    found = invitation_for_token(token)
    Invitation.objects.select_for_update().filter(pk=found.pk).get()
    invitation = invitation_for_token(token)  # again, under the lock: a concurrent accept has committed
    if (getattr(user, "email", "") or "").lower() != invitation.email.lower():
        raise InvitationError(InvitationProblem.WRONG_ACCOUNT)
    membership, created = Membership.objects.get_or_create(
        farm=invitation.farm, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at, invitation.accepted_by = timezone.now(), user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    if created:
        team_event_record(
            farm=invitation.farm, actor=user, kind=TeamEventKind.JOINED, detail=invitation.get_role_display()
        )
    return membership


@transaction.atomic
def invitation_accept_new_account(
    *, token: str, username: str, password: str, first_name: str = "", last_name: str = ""
) -> tuple[User, Membership]:
    """Create the invitee's account (with the invited address) and join the farm."""
    invitation = invitation_for_token(token)
    user = User.objects.create_user(
        username=username, email=invitation.email, password=password, first_name=first_name, last_name=last_name
    )
    return user, invitation_accept(token=token, user=user)
