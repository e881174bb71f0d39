"""One name for a feed row that was not taken: "quarantine", the merchant's word.

``FeedRejection`` becomes ``QuarantinedRow`` (its table with it), ``FeedRun.rows_rejected`` becomes
``rows_quarantined`` and the check that a finished run's rows add up is made again on the new
column. The model's permissions keep their holders: their codenames and names are renamed in
place (``view_feedrejection`` -> ``view_quarantinedrow``), so no group or user loses one.
"""

from django.db import migrations, models

ACTIONS = ("add", "change", "delete", "view")


def _rename_permissions(apps, old: str, new: str, old_name: str, new_name: str) -> None:
    permission = apps.get_model("auth", "Permission")
    for action in ACTIONS:
        existing = permission.objects.filter(content_type__app_label="suppliers", codename=f"{action}_{old}")
        if permission.objects.filter(content_type__app_label="suppliers", codename=f"{action}_{new}").exists():
            continue  # already there: leave both rather than merge their holders behind anyone's back
        existing.update(codename=f"{action}_{new}", name=f"Can {action} {new_name}")


def permissions_forward(apps, schema_editor):
    _rename_permissions(apps, "feedrejection", "quarantinedrow", "feed rejection", "quarantined row")


def permissions_backward(apps, schema_editor):
    _rename_permissions(apps, "quarantinedrow", "feedrejection", "quarantined row", "feed rejection")


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("suppliers", "0005_purchase_orders"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="feedrun", name="feed_run_rows_add_up"),
        migrations.RenameField(model_name="feedrun", old_name="rows_rejected", new_name="rows_quarantined"),
        migrations.AddConstraint(
            model_name="feedrun",
            constraint=models.CheckConstraint(
                condition=models.Q(("status", "running"))
                | models.Q(("rows_read", models.F("rows_accepted") + models.F("rows_quarantined"))),
                name="feed_run_rows_add_up",
            ),
        ),
        migrations.RenameModel(old_name="FeedRejection", new_name="QuarantinedRow"),
        migrations.AlterField(
            model_name="quarantinedrow",
            name="run",
            field=models.ForeignKey(
                on_delete=models.deletion.CASCADE, related_name="quarantined", to="suppliers.feedrun"
            ),
        ),
        migrations.RunPython(permissions_forward, permissions_backward),
    ]
