from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="home"),
    path("call/<int:portal_id>/", views.call_hubspot, name="call_hubspot"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("hubspot/", include("hubspot_connect.urls")),
]

if getattr(settings, "HUBSPOT_FAKE", False):
    # Development only: HubSpot's consent screen and OAuth API, served by FakeHubSpot.
    urlpatterns.append(path("fake-hubspot/", include("hubspot_connect.fake_server")))
