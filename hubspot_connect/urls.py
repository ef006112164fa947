from django.urls import path

from .views import CallbackView, ConnectView

app_name = "hubspot_connect"

urlpatterns = [
    path("connect/", ConnectView.as_view(), name="connect"),
    path("callback/", CallbackView.as_view(), name="callback"),
]
