"""Every write of the suppliers app goes through these services."""
