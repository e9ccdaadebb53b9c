"""SQLite journal and outbox."""
