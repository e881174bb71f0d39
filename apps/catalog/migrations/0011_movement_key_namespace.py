"""Clients' idempotency keys and Stockroom's own document references in separate namespaces.

A movement's key is now unique per ``key_scope``: "" for the references Stockroom writes for its
documents (counts, transfers, receipts), ``staff:<user id>`` (or ``channel:<id>``) for a key a
client sent. Existing client keys (a recorded movement's reference is ``<kind>:<key>``) move to
their sender's scope, so a key that looked like a document reference no longer blocks it.
"""

from django.conf import settings
from django.db import migrations, models

# The ledger refuses UPDATEs (0002); the trigger is off only for this one statement.
CLIENT_KEYS_TO_SCOPE = """
ALTER TABLE catalog_movement DISABLE TRIGGER catalog_movement_append_only;
UPDATE catalog_movement AS m
   SET key_scope = COALESCE(
           (SELECT 'staff:' || u.id FROM auth_user AS u
             WHERE u.username = CASE WHEN m.actor LIKE 'staff:%' THEN substr(m.actor, 7) ELSE m.actor END),
           'legacy')
 WHERE m.idempotency_key IS NOT NULL
   AND m.kind IN ('receipt', 'count', 'adjustment', 'pos_sale')
   AND m.reference = m.kind || ':' || m.idempotency_key;
ALTER TABLE catalog_movement ENABLE TRIGGER catalog_movement_append_only;
"""

CLIENT_KEYS_BACK = """
ALTER TABLE catalog_movement DISABLE TRIGGER catalog_movement_append_only;
UPDATE catalog_movement SET key_scope = '' WHERE key_scope <> '';
ALTER TABLE catalog_movement ENABLE TRIGGER catalog_movement_append_only;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0010_incident_unreadable_secret"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="movement",
            name="key_scope",
            field=models.CharField(blank=True, db_default="", default="", max_length=60),
        ),
        migrations.RunSQL(CLIENT_KEYS_TO_SCOPE, CLIENT_KEYS_BACK),
        migrations.RemoveConstraint(
            model_name="movement",
            name="movement_unique_idempotency_key",
        ),
        migrations.AddConstraint(
            model_name="movement",
            constraint=models.UniqueConstraint(
                fields=("key_scope", "idempotency_key"), name="movement_unique_scoped_key"
            ),
        ),
    ]
