from django.apps import AppConfig


class ToolingConfig(AppConfig):
    name = "tooling"
    verbose_name = "Merchant tooling"

    def ready(self) -> None:
        from accounts import limits
        from tooling.models import Inspector

        limits.register("inspectors", "inspectors", lambda m: Inspector.objects.filter(merchant=m))
