"""Test job for fault injection: appends a timestamp to DIR/job-<id>-attempt-<n> every 0.1 s
while it runs, for SECONDS, so tests can tell whether two attempts ever ran at once.

Usage: ticker.py SECONDS DIR
"""

import os
import sys
import time

seconds, directory = float(sys.argv[1]), sys.argv[2]
name = f"job-{os.environ['CHIDORI_JOB_ID']}-attempt-{os.environ['CHIDORI_ATTEMPT']}"
deadline = time.time() + seconds
with open(os.path.join(directory, name), "a") as marker:
    while True:
        marker.write(f"{time.time():.3f}\n")
        marker.flush()
        if time.time() >= deadline:
            break
        time.sleep(0.1)
print("ticker done", flush=True)
