"""A job that prints when its process started and exits at once (dispatch benchmark)."""

import time

print(f"started {time.time():.6f}", flush=True)
