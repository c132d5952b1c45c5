"""Test job: prints a line, then fails with a clear exception."""

print("about to crash", flush=True)
raise RuntimeError("crash.py failed on purpose")
