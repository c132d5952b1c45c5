"""Programs Chidori runs inside drivers (stdlib and pyspark only, no chidori imports)."""
