"""A compressed trading day, replayed against Stockroom and against a naive baseline.

The same seeded event stream (online orders per channel, store sales, receipts, supplier
feeds that are late, inflated and sometimes broken) drives both. Stockroom is driven
through its real HTTP API and services on the real PostgreSQL; the baseline is the approach
the merchant had before: a scheduled full sync every few minutes and check-then-decrement
without a lock, on a PostgreSQL table of its own.
"""
