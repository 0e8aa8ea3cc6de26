"""A person's own account: profile, password change and password reset (Django's views, our pages)."""

from __future__ import annotations

from typing import Any

from axes.utils import reset as axes_reset
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from farm.forms import ProfileForm, style_controls


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Profile saved.")
        return redirect("account-profile")
    return render(request, "registration/profile.html", {"form": form}, status=400 if form.errors else 200)


class StyledFormMixin:
    def get_form(self, form_class: Any = None) -> Any:
        form = super().get_form(form_class)  # type: ignore[misc]
        style_controls(form)
        return form


class PasswordChangeView(StyledFormMixin, auth_views.PasswordChangeView):
    template_name = "registration/password_change.html"
    success_url = reverse_lazy("account-profile")

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, "Password changed. Your other sessions were signed out.")
        return super().form_valid(form)

    def form_invalid(self, form: Any) -> HttpResponse:
        style_controls(form)
        return super().form_invalid(form)


class PasswordResetView(StyledFormMixin, auth_views.PasswordResetView):
    template_name = "registration/password_reset_form.html"
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("password-reset-done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"


class PasswordResetConfirmView(StyledFormMixin, auth_views.PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("password-reset-complete")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        # Whoever can read the account's mail may sign in again at once, lockout or not.
        axes_reset(username=form.user.get_username())
        return response

    def form_invalid(self, form: Any) -> HttpResponse:
        style_controls(form)
        return super().form_invalid(form)


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"
