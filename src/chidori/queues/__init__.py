"""Dispatch queues between the API and the schedulers: one interface (`base`), one module per
implementation; the non-default ones import their client library only inside their module."""
