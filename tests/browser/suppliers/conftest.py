"""The supplier tests' fixtures (apps/suppliers/tests/conftest.py), for the supplier pages' browser tests: each
test reads folder feeds below a drop root of its own (autouse). Imported, not copied."""

from apps.suppliers.tests.conftest import drop_root, on_hand, sellable  # noqa: F401 (fixtures)
