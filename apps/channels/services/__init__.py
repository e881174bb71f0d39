"""Writes of channel sync: sync work, pushing, reconciliation, and channel/listing settings."""
