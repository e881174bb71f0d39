"""The availability cache's epoch kept by PostgreSQL (``apps.channels.availability_cache``): a sequence
a writer advances when it could not invalidate Redis, read by every cached read."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("channels", "0012_catalog_read")]

    operations = [
        migrations.RunSQL(
            # CACHE 1 (each advance is seen by every session at once); called once, so that the first
            # advance already moves last_value.
            sql=[
                "CREATE SEQUENCE IF NOT EXISTS channels_availability_epoch AS bigint CACHE 1",
                "SELECT nextval('channels_availability_epoch')",
            ],
            reverse_sql=["DROP SEQUENCE IF EXISTS channels_availability_epoch"],
        )
    ]
