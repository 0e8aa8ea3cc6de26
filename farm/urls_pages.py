"""Login, logout, farm list and health check."""

from django.urls import URLPattern, URLResolver, path

from farm import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.farm_list, name="farm-list"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    # No trailing slash: SECURE_REDIRECT_EXEMPT matches "^healthz$" so probes over plain HTTP work.
    path("healthz", views.healthz, name="healthz"),
]
