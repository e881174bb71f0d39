from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "apps.channels"
    label = "channels"
    verbose_name = "Channels and sync"

    def ready(self) -> None:
        from apps.channels import metrics, receivers  # noqa: F401 - connects the signal receivers

        metrics.register()
