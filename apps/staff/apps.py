from django.apps import AppConfig


class StaffConfig(AppConfig):
    """Staff web pages under /staff/: dashboard, safety stock, item pages. No models: it reads the other apps."""

    name = "apps.staff"
    label = "staff"
