"""The farm's devices for its managers: names and fields, edited in the app (the admin stays for staff)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from dashboard.forms_devices import DeviceForm
from farm.models import Farm
from farm.permissions import Action, abilities, farm_action_required
from sensors.models import Device
from sensors.selectors import farm_devices
from sensors.services import device_rename


@require_GET
@farm_action_required(Action.EDIT_DEVICES)
def device_list(request: HttpRequest, farm: Farm) -> HttpResponse:
    return _page(request, farm, None, None)


@require_http_methods(["GET", "POST"])
@farm_action_required(Action.EDIT_DEVICES)
def device_edit(request: HttpRequest, farm: Farm, device_id: int) -> HttpResponse:
    device = farm_devices(farm=farm).filter(pk=device_id).first()
    if device is None:
        raise Http404("No such device on this farm.")
    initial = {"name": device.name, "field": device.field_id}
    form = DeviceForm(request.POST or None, farm=farm, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            device_rename(device=device, name=form.cleaned_data["name"], field=form.cleaned_data["field"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Device {device.uid} saved.")
            return redirect("farm-devices", farm.slug)
    return _page(request, farm, device, form)


def _page(request: HttpRequest, farm: Farm, editing: Device | None, form: DeviceForm | None) -> HttpResponse:
    context = {
        "farm": farm,
        "can": abilities(request.user, farm),
        "devices": farm_devices(farm=farm),
        "editing": editing,
        "form": form,
    }
    return render(request, "dashboard/devices.html", context, status=400 if form is not None and form.errors else 200)
