"""Backends ("Spark masters"): one interface in `base`, one module per kind."""
