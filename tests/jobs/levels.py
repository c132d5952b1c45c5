"""Test job: a log with INFO, WARN and ERROR lines, a needle on some of them, then (with the
argument `fail`) a traceback from this file; with `ok` it ends well."""

import sys


def main(outcome: str) -> None:
    for n in range(1, 31):
        level = "WARN" if n % 10 == 0 else "INFO"
        needle = " needle" if n % 3 == 0 else ""
        print(f"26/12/07 10:00:{n:02d} {level} Step: step {n}{needle}", flush=True)
    print("26/12/07 10:01:00 ERROR Step: step 31 went wrong needle", flush=True)
    if outcome == "fail":
        explode()


def explode() -> None:
    raise ValueError("levels.py failed on purpose")


main(sys.argv[1] if len(sys.argv) > 1 else "ok")
