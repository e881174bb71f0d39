from django.apps import AppConfig


class StaffConfig(AppConfig):
    """Staff web pages under /staff/ (dashboard, safety stock, item pages), and staff notifications by e-mail."""

    name = "apps.staff"
    label = "staff"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from apps.staff import receivers  # noqa: F401  (connects the incident mail)
