"""A test-only app: a batch writer that puts one outbox message per new reading, and its handler."""
