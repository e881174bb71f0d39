from django.apps import AppConfig


class SuppliersConfig(AppConfig):
    name = "apps.suppliers"
    label = "suppliers"
    verbose_name = "Suppliers"

    def ready(self) -> None:
        from apps.orders.signals import order_reserved
        from apps.suppliers import metrics
        from apps.suppliers.receivers import order_reserved_check

        order_reserved.connect(order_reserved_check, dispatch_uid="suppliers.order_reserved_check")
        metrics.register_collectors()
