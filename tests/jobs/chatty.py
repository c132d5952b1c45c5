"""Test job: prints N numbered lines (default 2000), a little at a time."""

import sys
import time

count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
for i in range(count):
    print(f"line {i:05d}", flush=True)
    if i % 500 == 0:
        time.sleep(0.2)
