"""The team page and its actions, and accepting an invitation. Views translate HTTP only."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from farm import invitations, selectors, team
from farm.forms import InvitedAccountForm, InviteForm, RoleForm, TransferForm
from farm.models import Farm, Role
from farm.permissions import Action, abilities, farm_action_required, signed_in


def _team_url(farm: Farm) -> str:
    return reverse("farm-team", args=[farm.slug])


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


def _team_page(
    request: HttpRequest, farm: Farm, invite_form: InviteForm | None = None, status: int = 200
) -> HttpResponse:
    members = list(selectors.team_members(farm))
    candidates = [(m.pk, m.user.get_full_name() or m.user.get_username()) for m in members if m.role != Role.OWNER]
    context = {
        "farm": farm,
        "can": abilities(request.user, farm),
        "members": members,
        "owner_count": sum(m.role == Role.OWNER for m in members),
        "me": next((m for m in members if m.user_id == request.user.pk), None),
        "invitations": selectors.open_invitations(farm),
        "events": selectors.team_events(farm),
        "invite_form": invite_form or InviteForm(),
        "transfer_form": TransferForm(candidates=candidates),
        "roles": Role.choices,
    }
    return render(request, "farm/team.html", context, status=status)


@require_safe
@farm_action_required(Action.VIEW_FARM)
def team_page(request: HttpRequest, farm: Farm) -> HttpResponse:
    return _team_page(request, farm)


@require_POST
@farm_action_required(Action.MANAGE_TEAM)
def team_invite(request: HttpRequest, farm: Farm) -> HttpResponse:
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _team_page(request, farm, form, status=400)
    try:
        invitations.invitation_create(
            farm=farm, email=form.cleaned_data["email"], role=Role(form.cleaned_data["role"]),
            actor=signed_in(request), base_url=_base_url(request),
        )  # fmt: skip
    except team.TeamError as e:
        form.add_error("email", e)
        return _team_page(request, farm, form, status=400)
    messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
    return redirect(_team_url(farm))


def _team_action(request: HttpRequest, farm: Farm, done: str, action: object) -> HttpResponseRedirect:
    try:
        action()  # type: ignore[operator]
    except team.TeamError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, done)
    return redirect(_team_url(farm))


@require_POST
@farm_action_required(Action.MANAGE_TEAM)
def invitation_resend(request: HttpRequest, farm: Farm, invitation_id: int) -> HttpResponse:
    def act() -> None:
        invitations.invitation_resend(
            farm=farm, invitation_id=invitation_id, actor=signed_in(request), base_url=_base_url(request)
        )

    return _team_action(request, farm, "Invitation sent again; the earlier link no longer works.", act)


@require_POST
@farm_action_required(Action.MANAGE_TEAM)
def invitation_revoke(request: HttpRequest, farm: Farm, invitation_id: int) -> HttpResponse:
    def act() -> None:
        invitations.invitation_revoke(farm=farm, invitation_id=invitation_id, actor=signed_in(request))

    return _team_action(request, farm, "Invitation withdrawn.", act)


@require_POST
@farm_action_required(Action.MANAGE_TEAM)
def member_role(request: HttpRequest, farm: Farm, membership_id: int) -> HttpResponse:
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose owner, manager or viewer.")
        return redirect(_team_url(farm))

    def act() -> None:
        team.membership_role_change(
            farm=farm, membership_id=membership_id, role=Role(form.cleaned_data["role"]), actor=signed_in(request)
        )

    return _team_action(request, farm, "Role changed.", act)


@require_POST
@farm_action_required(Action.MANAGE_TEAM)
def member_remove(request: HttpRequest, farm: Farm, membership_id: int) -> HttpResponse:
    def act() -> None:
        team.membership_remove(farm=farm, membership_id=membership_id, actor=signed_in(request))

    return _team_action(request, farm, "Member removed. Their open pages lost access at once.", act)


@require_POST
@farm_action_required(Action.MANAGE_TEAM)
def ownership_transfer(request: HttpRequest, farm: Farm) -> HttpResponse:
    members = [(m.pk, str(m.pk)) for m in selectors.team_members(farm)]
    form = TransferForm(request.POST, candidates=members)
    if not form.is_valid():
        messages.error(request, "Choose a member to hand ownership to.")
        return redirect(_team_url(farm))

    def act() -> None:
        team.ownership_transfer(farm=farm, to_membership_id=form.cleaned_data["membership"], actor=signed_in(request))

    return _team_action(request, farm, "Ownership handed over.", act)


@require_POST
@farm_action_required(Action.VIEW_FARM)
def team_leave(request: HttpRequest, farm: Farm) -> HttpResponse:
    me = selectors.team_members(farm).filter(user_id=signed_in(request).pk).first()
    if me is None:
        messages.error(request, "You are not a member of this farm.")
        return redirect(_team_url(farm))
    try:
        team.membership_remove(farm=farm, membership_id=me.pk, actor=signed_in(request))
    except team.TeamError as e:
        messages.error(request, " ".join(e.messages))
        return redirect(_team_url(farm))
    messages.success(request, f"You left {farm.name}.")
    return redirect("farm-list")


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Signed in: accept (POST). Signed out: set up an account (POST) or sign in first."""
    try:
        invitation = invitations.invitation_for_token(token)
    except invitations.InvitationError as e:
        return render(request, "farm/invitation.html", {"problem": e.problem.value}, status=410)
    if request.user.is_authenticated:
        return _accept_signed_in(request, token, invitation)
    return _accept_new_account(request, token, invitation)


def _accept_signed_in(request: HttpRequest, token: str, invitation: object) -> HttpResponse:
    context = {"invitation": invitation, "token": token}
    if request.method == "POST":
        try:
            membership = invitations.invitation_accept(token=token, user=signed_in(request))
        except invitations.InvitationError as e:
            return render(request, "farm/invitation.html", {**context, "problem": e.problem.value}, status=403)
        messages.success(request, f"Welcome to {membership.farm.name}.")
        return redirect("farm-dashboard", membership.farm.slug)
    return render(request, "farm/invitation.html", context)


def _accept_new_account(request: HttpRequest, token: str, invitation: object) -> HttpResponse:
    form = InvitedAccountForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        user, membership = invitations.invitation_accept_new_account(
            token=token, username=data["username"], password=data["password1"],
            first_name=data["first_name"], last_name=data["last_name"],
        )  # fmt: skip
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to {membership.farm.name}.")
        return redirect("farm-dashboard", membership.farm.slug)
    context = {"invitation": invitation, "token": token, "form": form, "login_url": redirect_to_login(request.path).url}
    return render(request, "farm/invitation.html", context, status=400 if form.errors else 200)
