from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HubSpotConnectConfig(AppConfig):
    name = "hubspot_connect"
    verbose_name = _("HubSpot")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .connect import disconnect_connection
        from .models import services
        from .refresh import refresh_connection

        # The model's actions call the services; models.py cannot import them (they
        # import it), so they are plugged in here, once every model is loaded.
        services.refresh = refresh_connection
        services.disconnect = disconnect_connection
