"""The HTTP API (FastAPI). Route handlers only call services."""
