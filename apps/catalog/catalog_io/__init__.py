"""Catalog import and export: items, products with their make-up, locations and listings as CSV or XLSX.

``read_catalog`` turns files into tables, ``catalog_import`` plans and writes them through the
services, ``write_catalog`` exports. The admin (django-import-export) and the
``import_catalog`` / ``export_catalog`` commands both sit on these.
"""
