"""Test job: prints LINES numbered lines of WIDTH bytes each (newline included), fast.

Usage: big_log.py LINES WIDTH
"""

import sys

lines, width = int(sys.argv[1]), int(sys.argv[2])
filler = "x" * (width - 10)
out = sys.stdout
for number in range(lines):
    out.write(f"{number:08d} {filler}\n")
out.flush()
