from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    name = "endpoints"
    verbose_name = "Webhook endpoints"

    def ready(self) -> None:
        from accounts import limits
        from endpoints.models import Endpoint

        limits.register("webhooks", "webhooks", lambda m: Endpoint.objects.filter(merchant=m))
