"""The rename to quarantined rows keeps every run's counts, every kept row and every grant of their permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.suppliers.models import FeedRun

BEFORE = [("suppliers", "0005_purchase_orders")]


@pytest.mark.django_db(transaction=True)
def test_the_quarantine_rename_keeps_runs_rows_and_permission_holders():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    location = old.get_model("catalog", "Location").objects.create(code="mig", name="Mig", kind="supplier")
    supplier = old.get_model("suppliers", "Supplier").objects.create(
        code="mig", name="Mig", connector="folder", location=location
    )
    run = old.get_model("suppliers", "FeedRun").objects.create(
        supplier=supplier, status="succeeded", rows_read=3, rows_accepted=1, rows_rejected=2
    )
    old.get_model("suppliers", "FeedRejection").objects.create(run=run, row_number=2, reason="negative quantity")
    permission = old.get_model("auth", "Permission").objects.get(codename="view_feedrejection")
    old.get_model("auth", "Group").objects.create(name="Feed readers").permissions.add(permission)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    migrated = FeedRun.objects.get(pk=run.pk)
    assert migrated.rows_quarantined == 2
    assert [row.reason for row in migrated.quarantined.all()] == ["negative quantity"]
    held = Group.objects.get(name="Feed readers").permissions.values_list("codename", "name")
    assert list(held) == [("view_quarantinedrow", "Can view quarantined row")]
