from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from tests.sites import views as site_views


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("home")


urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("hubspot/", include("hubspot_connect.urls")),
    path("site/async-token/<int:portal_id>/", site_views.async_token, name="async_token"),
    path(
        "site/token-then-fail/<int:portal_id>/",
        site_views.token_then_fail,
        name="token_then_fail",
    ),
]
