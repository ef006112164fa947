from django.urls import path

from example_project.urls import urlpatterns as example_urlpatterns
from tests.sites import views

urlpatterns = [
    *example_urlpatterns,
    path("site/async-token/<int:portal_id>/", views.async_token, name="async_token"),
]
