"""The owner of stock: what can be promised (``atp``) and the only writer of levels and ledger rows.

- ``atp``: the one definition of available-to-promise, rendered as SQL, as an ORM expression
  and in Python from the same rule;
- ``ledger``: per-movement writes (receipts, counts, orders' locked path, releases);
- ``bulk``: absolute targets for many items at a supplier location (feeds);
- ``statement``: the stock part of single-statement writers (an order's fast path);
- ``changes``: the change rows every write leaves for others to consume (the outbox).
"""
