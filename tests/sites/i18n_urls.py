from django.conf.urls.i18n import i18n_patterns
from django.contrib import admin
from django.urls import include, path

from tests.sites import views
from tests.urls import home

urlpatterns = [
    *i18n_patterns(
        path("", home, name="home"),
        path("admin/", admin.site.urls),
        path("hubspot/", include("hubspot_connect.urls")),
        path("site/async-token/<int:portal_id>/", views.async_token, name="async_token"),
        path(
            "site/token-then-fail/<int:portal_id>/", views.token_then_fail, name="token_then_fail"
        ),
    )
]
