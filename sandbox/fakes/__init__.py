"""Local fakes of sales platforms, for tests, the demo and the bench."""
