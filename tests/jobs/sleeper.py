"""Test job: prints, optionally starts a child process, sleeps, exits 0.

Usage: sleeper.py SECONDS [--child] [--detached-child] [--marker DIR]
--detached-child starts the child in a session of its own (out of the driver's group).
With --marker, writes DIR/job-<CHIDORI_JOB_ID>-attempt-<CHIDORI_ATTEMPT>-<pid> first, so
tests can count runs.
"""

import os
import subprocess
import sys
import time

seconds = float(sys.argv[1])
if "--marker" in sys.argv:
    directory = sys.argv[sys.argv.index("--marker") + 1]
    job = os.environ.get("CHIDORI_JOB_ID")
    name = f"job-{job}-attempt-{os.environ.get('CHIDORI_ATTEMPT')}-{os.getpid()}"
    with open(os.path.join(directory, name), "w") as handle:
        handle.write("started\n")
if "--child" in sys.argv or "--detached-child" in sys.argv:
    child = subprocess.Popen(
        ["sleep", str(int(seconds) + 600)], start_new_session="--detached-child" in sys.argv
    )
    print(f"child {child.pid} uid {os.getuid()}", flush=True)
print("sleeper started", flush=True)
time.sleep(seconds)
print("sleeper done", flush=True)
