from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Events and deliveries"

    def ready(self) -> None:
        # Connects the operational webhooks' receivers to the engine's signals.
        from deliveries import operational  # noqa: F401
