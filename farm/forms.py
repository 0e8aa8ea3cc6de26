"""Forms of the team, settings and account pages. Widgets carry the product's classes."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import UserCreationForm, UsernameField
from django.contrib.auth.models import User
from django.core.validators import MaxValueValidator, MinValueValidator

from farm.models import Farm, Field, Role

CONTROL = {"class": "form-control"}


def style_controls(form: forms.BaseForm) -> None:
    """Every control gets the product's class and says which error describes it."""
    for name, field in form.fields.items():
        field.widget.attrs.setdefault("class", "form-control")
        # _errors, not errors: reading errors would validate the form before __init__ ends.
        errors = getattr(form, "_errors", None)
        if errors and name in errors:
            field.widget.attrs["aria-invalid"] = "true"
            field.widget.attrs["aria-describedby"] = f"id_{form.add_prefix(name)}_error"


class StyledForm(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        style_controls(self)

    def full_clean(self) -> None:
        super().full_clean()
        style_controls(self)


class StyledModelForm(forms.ModelForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        style_controls(self)

    def full_clean(self) -> None:
        super().full_clean()
        style_controls(self)


class InviteForm(StyledForm):
    email = forms.EmailField(label="Email address", widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(StyledForm):
    role = forms.ChoiceField(choices=Role.choices, label="Role")


class TransferForm(StyledForm):
    membership = forms.TypedChoiceField(coerce=int, label="New owner")

    def __init__(self, *args: Any, candidates: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["membership"].choices = candidates  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def _time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


class FarmSettingsForm(StyledModelForm):
    time_zone = forms.ChoiceField(choices=_time_zone_choices, help_text="Times on the farm's pages are shown in it.")

    class Meta:
        model = Farm
        fields = ["name", "location", "time_zone"]


class FieldForm(StyledModelForm):
    class Meta:
        model = Field
        fields = ["name", "crop", "area_ha", "season_start", "gdd_base_c"]
        widgets = {"season_start": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")}

    def __init__(self, *args: Any, farm: Farm, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.farm = farm
        # The database's check constraints, said beside the field instead of above the form.
        self.fields["area_ha"].validators.append(MinValueValidator(0))
        self.fields["gdd_base_c"].validators += [MinValueValidator(-10), MaxValueValidator(40)]

    def validate_unique(self) -> None:
        # farm is not a form field, so ModelForm would skip the (farm, name) constraint.
        try:
            self.instance.validate_unique(exclude=["slug"])
            self.instance.validate_constraints(exclude=["slug", "id"])
        except forms.ValidationError as e:
            self._update_errors(e)  # type: ignore[attr-defined]


class ProfileForm(StyledModelForm):
    class Meta:
        model = get_user_model()
        fields = ["first_name", "last_name", "email"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True
        self.fields["email"].help_text = "Invitations and password resets are sent here."

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"].strip()
        others = get_user_model().objects.filter(email__iexact=email).exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError("Another account already uses this address.")
        return email


class InvitedAccountForm(UserCreationForm):
    """A new account for an invitee; the email is the invitation's and not asked for."""

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name"]
        field_classes = {"username": UsernameField}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        style_controls(self)
        self.fields["password1"].help_text = password_validation.password_validators_help_text_html()

    def full_clean(self) -> None:
        super().full_clean()
        style_controls(self)
