from django.apps import AppConfig


class StaffConfig(AppConfig):
    """Staff web pages under /staff/ (dashboard, safety stock, item pages), and staff notifications by e-mail."""

    name = "apps.staff"
    label = "staff"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from apps.staff import receivers  # (connects the incident mail)

        # After auth made this app's permissions (apps before this one have theirs already).
        post_migrate.connect(receivers.roles_after_migrate, sender=self, dispatch_uid="staff.roles")
