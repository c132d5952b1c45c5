"""Use cases, shared by the REST API, the CLI-facing endpoints and (later) the UI."""
