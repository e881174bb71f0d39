"""Every write to stock goes through these services."""
