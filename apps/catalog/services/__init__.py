"""Catalog use cases: products and items, stock movements staff record, incidents, reconciliation.

Levels and ledger rows are written by the stock owner (``apps.catalog.stock``) only.
"""
