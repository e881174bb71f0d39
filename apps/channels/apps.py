from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "apps.channels"
    label = "channels"
    verbose_name = "Channels and sync"

    def ready(self) -> None:
        from apps.catalog.stock.changes import statement_part_register
        from apps.channels import metrics, receivers
        from apps.channels.services.work import STATEMENT_PART

        receivers.connect_configuration_receivers()
        statement_part_register(STATEMENT_PART)
        metrics.register()
