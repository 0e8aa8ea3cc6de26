"""Farm settings (owners) and the farm's fields (managers and owners)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from farm import selectors, services
from farm.forms import FarmSettingsForm, FieldForm
from farm.models import Farm, Field
from farm.permissions import Action, abilities, farm_action_required, signed_in


@require_http_methods(["GET", "POST"])
@farm_action_required(Action.EDIT_FARM)
def farm_settings(request: HttpRequest, farm: Farm) -> HttpResponse:
    form = FarmSettingsForm(request.POST or None, instance=Farm.objects.get(pk=farm.pk))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        services.farm_settings_update(
            farm=farm, actor=signed_in(request), name=data["name"], location=data["location"],
            time_zone=data["time_zone"],
        )  # fmt: skip
        messages.success(request, "Farm settings saved.")
        return redirect("farm-settings", farm.slug)
    context = {"farm": farm, "can": abilities(request.user, farm), "form": form}
    return render(request, "farm/settings.html", context, status=400 if form.errors else 200)


def _fields_page(request: HttpRequest, farm: Farm, form: FieldForm, editing: Field | None, status: int) -> HttpResponse:
    context = {
        "farm": farm,
        "can": abilities(request.user, farm),
        "fields": selectors.farm_fields_for_settings(farm),
        "form": form,
        "editing": editing,
    }
    return render(request, "farm/fields.html", context, status=status)


@require_http_methods(["GET", "POST"])
@farm_action_required(Action.EDIT_FIELDS)
def field_list(request: HttpRequest, farm: Farm) -> HttpResponse:
    """The fields, and a form adding one."""
    form = FieldForm(request.POST or None, farm=farm)
    if request.method == "POST" and form.is_valid():
        services.field_save(field=form.instance, actor=signed_in(request))
        messages.success(request, f"Field {form.instance.name} added.")
        return redirect("farm-fields", farm.slug)
    return _fields_page(request, farm, form, None, 400 if form.errors else 200)


def _field(farm: Farm, field_id: int) -> Field:
    field = Field.objects.filter(farm=farm, pk=field_id).first()
    if field is None:
        raise Http404("No such field on this farm.")
    return field


@require_http_methods(["GET", "POST"])
@farm_action_required(Action.EDIT_FIELDS)
def field_edit(request: HttpRequest, farm: Farm, field_id: int) -> HttpResponse:
    field = _field(farm, field_id)
    form = FieldForm(request.POST or None, instance=field, farm=farm)
    if request.method == "POST" and form.is_valid():
        services.field_save(field=form.instance, actor=signed_in(request))
        messages.success(request, f"Field {field.name} saved.")
        return redirect("farm-fields", farm.slug)
    return _fields_page(request, farm, form, field, 400 if form.errors else 200)


@require_POST
@farm_action_required(Action.EDIT_FIELDS)
def field_delete(request: HttpRequest, farm: Farm, field_id: int) -> HttpResponse:
    field = _field(farm, field_id)
    services.field_delete(field=field, actor=signed_in(request))
    messages.success(request, f"Field {field.name} deleted; its devices are now unassigned.")
    return redirect("farm-fields", farm.slug)
