"""Scaffolding outside the product: platform fakes, the channel simulator, the demo, and their commands.

Installed by the local and test settings only (``SANDBOX_APPS``); production settings never list it and
the image leaves this folder out. No product app imports it (the import-linter contract "sandbox").
"""
