"""The Merchant, Store staff and Viewer groups (apps/staff/roles.py holds what each may do).

Permissions are made after migrations (post_migrate), so on a fresh database they are made here
first; every later migrate applies the roles again (apps/staff/receivers.py).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def make_roles(apps, schema_editor):
    from apps.staff.roles import roles_apply

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None
    roles_apply(group_model=apps.get_model("auth", "Group"), permission_model=apps.get_model("auth", "Permission"))


def remove_roles(apps, schema_editor):
    from apps.staff.roles import roles_remove

    roles_remove(group_model=apps.get_model("auth", "Group"))


class Migration(migrations.Migration):
    # The top layer besides the demo: every app whose permissions the roles hand out comes first.
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("core", "0002_api_token_name"),
        ("catalog", "0009_location_members"),
        ("channels", "0005_listing_updated_at"),
        ("orders", "0002_no_redundant_foreign_key_indexes"),
        ("suppliers", "0003_task_names"),
        ("forecasting", "0001_initial"),
        ("staff", "0001_initial"),
    ]

    operations = [migrations.RunPython(make_roles, remove_roles)]
