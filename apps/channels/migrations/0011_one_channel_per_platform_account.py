"""One channel per platform account: the account each platform channel imports orders from, and a unique
constraint on it. Existing channels get their account from the connector; where two already share one, the
older keeps it and the other is left blank (logged), so staff can see and fix it."""

from django.db import migrations, models


def accounts_fill(apps, schema_editor):
    from apps.channels.connectors import connector_named

    Channel = apps.get_model("channels", "Channel")
    taken: dict[tuple[str, str], str] = {}
    for channel in Channel.objects.exclude(connector="stockroom").order_by("pk"):
        try:
            account = connector_named(channel.connector).account(channel.settings or {})
        except (LookupError, ImportError):
            continue
        if not account:
            continue
        first = taken.setdefault((channel.connector, account), channel.code)
        if first != channel.code:
            print(
                f"\n  channel {channel.code} imports the orders of {account} like channel {first}: "
                "left without an account; deactivate one of them"
            )
            continue
        Channel.objects.filter(pk=channel.pk).update(platform_account=account)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0011_movement_key_namespace"),
        ("channels", "0010_channel_state"),
    ]

    operations = [
        migrations.AddField(
            model_name="channel",
            name="platform_account",
            field=models.CharField(blank=True, default="", editable=False, max_length=300),
        ),
        migrations.RunPython(accounts_fill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="channel",
            constraint=models.UniqueConstraint(
                condition=models.Q(("platform_account", ""), _negated=True),
                fields=("connector", "platform_account"),
                name="channel_one_per_platform_account",
            ),
        ),
    ]
