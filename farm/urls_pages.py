"""Login, logout, farm list, health check; the team, settings and fields pages; accounts.

Every URL here (and in every other URLconf) has a row in tests/test_permission_matrix.py.
"""

from django.urls import URLPattern, URLResolver, path

from farm import views, views_account, views_settings, views_team

team = "farms/<slug:farm_ref>/team/"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.farm_list, name="farm-list"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    # No trailing slash: SECURE_REDIRECT_EXEMPT matches "^healthz$" so probes over plain HTTP work.
    path("healthz", views.healthz, name="healthz"),
    # The farm's team.
    path(team, views_team.team_page, name="farm-team"),
    path(team + "invite", views_team.team_invite, name="farm-team-invite"),
    path(team + "invitations/<int:invitation_id>/resend", views_team.invitation_resend, name="farm-invitation-resend"),
    path(team + "invitations/<int:invitation_id>/revoke", views_team.invitation_revoke, name="farm-invitation-revoke"),
    path(team + "members/<int:membership_id>/role", views_team.member_role, name="farm-member-role"),
    path(team + "members/<int:membership_id>/remove", views_team.member_remove, name="farm-member-remove"),
    path(team + "ownership", views_team.ownership_transfer, name="farm-ownership-transfer"),
    path(team + "leave", views_team.team_leave, name="farm-team-leave"),
    path("invitations/<str:token>/", views_team.invitation_accept, name="invitation-accept"),
    # The farm's settings and fields.
    path("farms/<slug:farm_ref>/settings/", views_settings.farm_settings, name="farm-settings"),
    path("farms/<slug:farm_ref>/fields/", views_settings.field_list, name="farm-fields"),
    path("farms/<slug:farm_ref>/fields/<int:field_id>/", views_settings.field_edit, name="farm-field-edit"),
    path("farms/<slug:farm_ref>/fields/<int:field_id>/delete", views_settings.field_delete, name="farm-field-delete"),
    # The person's own account.
    path("account/", views_account.profile, name="account-profile"),
    path("account/password/", views_account.PasswordChangeView.as_view(), name="password-change"),
    path("account/password-reset/", views_account.PasswordResetView.as_view(), name="password-reset"),
    path("account/password-reset/sent/", views_account.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path(
        "account/reset/<uidb64>/<token>/",
        views_account.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path("account/reset/done/", views_account.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
]
