from django.apps import AppConfig


class SuppliersConfig(AppConfig):
    name = "apps.suppliers"
    label = "suppliers"
    verbose_name = "Suppliers"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.orders.signals import order_reserved
        from apps.suppliers import metrics
        from apps.suppliers.models import Supplier
        from apps.suppliers.receivers import forget_checked_locations, order_reserved_check

        order_reserved.connect(order_reserved_check, dispatch_uid="suppliers.order_reserved_check")
        post_save.connect(forget_checked_locations, sender=Supplier, dispatch_uid="suppliers.forget_checked")
        post_delete.connect(forget_checked_locations, sender=Supplier, dispatch_uid="suppliers.forget_checked_del")
        metrics.register_collectors()
