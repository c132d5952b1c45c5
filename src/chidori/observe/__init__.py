"""What operators watch: Prometheus metrics (`metrics.py`, the store-derived gauges in
`metrics_gauges.py`, per-attempt timings in `metrics_jobs.py`) and structured logs
(`logs.py`). Nothing here reads settings or the store itself: what it needs is passed in."""
