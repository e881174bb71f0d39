"""Celery task names in one style, "<app>.<what it does>": scheduled jobs already stored follow."""

from django.db import migrations

OLD, NEW = "apps.suppliers.tasks.", "suppliers."
NAMES = ("supplier_poll", "feed_runs_abandon", "mappings_validate", "suppliers_staleness", "supplier_order_check")


def rename(apps, schema_editor, *, frm: str, to: str) -> None:
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name in NAMES:
        PeriodicTask.objects.filter(task=frm + name).update(task=to + name)


class Migration(migrations.Migration):
    dependencies = [
        ("suppliers", "0002_feed_run_heartbeat_abandoned"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(
            lambda apps, editor: rename(apps, editor, frm=OLD, to=NEW),
            lambda apps, editor: rename(apps, editor, frm=NEW, to=OLD),
        )
    ]
