"""Test job: fails on its first attempt, succeeds on the next (CHIDORI_ATTEMPT says which).

Each attempt prints a line naming itself, so tests can tell the attempts' logs apart.
"""

import os
import sys

attempt = int(os.environ.get("CHIDORI_ATTEMPT", "1"))
print(f"flaky attempt {attempt} speaking", flush=True)
if attempt == 1:
    sys.exit("flaky.py fails its first attempt on purpose")
print("flaky succeeded", flush=True)
