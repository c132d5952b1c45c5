"""The store: Chidori's source of truth, on SQLite (default) or PostgreSQL."""

from chidori.store.sql import Store, open_store

__all__ = ["Store", "open_store"]
