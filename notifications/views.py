"""The Notifications page (a person's channels, quiet hours, cap, failures), the in-app inbox, and a farm's
failed deliveries."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from farm.models import Farm
from farm.permissions import Action, abilities, farm_action_required, signed_in
from notifications import inbox, selectors
from notifications.forms import ChannelForm, PrefsForm
from notifications.models import NotificationChannel
from notifications.sending import channel_test


def _page(request: HttpRequest, *, channel_form: ChannelForm, prefs_form: PrefsForm, status: int) -> HttpResponse:
    user = signed_in(request)
    context = {
        "channels": selectors.channels_of(user),
        "channel_form": channel_form,
        "prefs_form": prefs_form,
        "failed": selectors.failed_deliveries_of_user(user),
    }
    return render(request, "notifications/page.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def notifications_page(request: HttpRequest) -> HttpResponse:
    """GET: the page. POST: save quiet hours and the cap."""
    user = signed_in(request)
    prefs_form = PrefsForm(request.POST or None, instance=selectors.prefs_of(user), prefix="prefs")
    if request.method == "POST" and prefs_form.is_valid():
        prefs_form.save()
        messages.success(request, "Notification settings saved.")
        return redirect("account-notifications")
    status = 400 if prefs_form.errors else 200
    channel_form = ChannelForm(prefix="channel", initial={"target": user.email})  # email is preselected
    return _page(request, channel_form=channel_form, prefs_form=prefs_form, status=status)


@login_required
@require_POST
def channel_add(request: HttpRequest) -> HttpResponse:
    user = signed_in(request)
    form = ChannelForm(request.POST, instance=NotificationChannel(user=user), prefix="channel")
    if form.is_valid():
        channel = form.save()
        messages.success(request, f"Channel {channel} added. Send a test to check it works.")
        return redirect("account-notifications")
    prefs_form = PrefsForm(instance=selectors.prefs_of(user), prefix="prefs")
    return _page(request, channel_form=form, prefs_form=prefs_form, status=400)


def _own_channel(request: HttpRequest, channel_id: int) -> NotificationChannel:
    channel = selectors.channels_of(signed_in(request)).filter(pk=channel_id).first()
    if channel is None:
        raise Http404("No such channel of yours.")
    return channel


@login_required
@require_http_methods(["GET", "POST"])
def channel_edit(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = _own_channel(request, channel_id)
    form = ChannelForm(request.POST or None, instance=channel, prefix="channel")
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Channel {channel} saved.")
        return redirect("account-notifications")
    context = {"channel": channel, "form": form}
    return render(request, "notifications/channel_edit.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def channel_delete(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = _own_channel(request, channel_id)
    channel.delete()
    messages.success(request, f"Channel {channel} removed.")
    return redirect("account-notifications")


@login_required
@require_POST
def channel_send_test(request: HttpRequest, channel_id: int) -> HttpResponse:
    """Sends now, in the request, so the person sees what the service really answered."""
    channel = _own_channel(request, channel_id)
    error = channel_test(channel=channel)
    if error:
        messages.error(request, f"The test to {channel} failed: {error}")
    else:
        messages.success(request, f"Test sent to {channel}. Check that it arrived.")
    return redirect("account-notifications")


@require_http_methods(["GET"])
@farm_action_required(Action.MANAGE_TEAM)
def farm_failed_deliveries(request: HttpRequest, farm: Farm) -> HttpResponse:
    """For the farm's owners: messages about this farm that could not be delivered to someone."""
    context = {"farm": farm, "can": abilities(request.user, farm), "failed": selectors.failed_deliveries_of_farm(farm)}
    return render(request, "notifications/farm_failed.html", context)


@login_required
@require_http_methods(["GET"])
def inbox_page(request: HttpRequest) -> HttpResponse:
    """The person's in-app notifications, newest first; unread ones stand out."""
    user = signed_in(request)
    items = list(selectors.inbox_of(user))
    context = {
        "items": items,
        "unread": sum(1 for i in items if i.read_at is None),
        "has_app_channel": selectors.has_app_channel(user),
    }
    return render(request, "notifications/inbox.html", context)


@login_required
@require_http_methods(["GET"])
def inbox_open(request: HttpRequest, item_id: int) -> HttpResponse:
    """Opening a notification marks it read and goes where it points (its alert), else back to the list.

    A GET because it is a plain link a person follows; it only ever marks their own item read.
    """
    item = inbox.inbox_item_read(user=signed_in(request), item_id=item_id)
    if item is None:
        raise Http404("No such notification of yours.")
    return redirect(item.link or "notifications-inbox")


@login_required
@require_POST
def inbox_read_all(request: HttpRequest) -> HttpResponse:
    count = inbox.inbox_all_read(user=signed_in(request))
    messages.success(request, f"{count} notification{'s' if count != 1 else ''} marked read.")
    return redirect("notifications-inbox")
