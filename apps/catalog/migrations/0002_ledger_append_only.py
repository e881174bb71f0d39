"""The ledger is append-only in the database itself, not only by convention."""

from django.db import migrations

FORBID = """
CREATE OR REPLACE FUNCTION catalog_movement_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the stock ledger is append-only: % of movement % refused', TG_OP, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER catalog_movement_append_only
    BEFORE UPDATE OR DELETE ON catalog_movement
    FOR EACH ROW EXECUTE FUNCTION catalog_movement_append_only();
"""

ALLOW = """
DROP TRIGGER IF EXISTS catalog_movement_append_only ON catalog_movement;
DROP FUNCTION IF EXISTS catalog_movement_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunSQL(FORBID, ALLOW)]
