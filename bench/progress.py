"""What live Spark progress collection adds to a Pi job: the Pi example through a Chidori
server with collection on (the default) and through one with it off
(`CHIDORI_SPARK_PROGRESS=0`), submit -> SUCCEEDED measured by the client, in interleaved
rounds (the order alternates), reported as the median ratio (goal <= 1.02).

    .venv/bin/python bench/progress.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import ChidoriServer  # noqa: E402

from bench.common import median, print_table, write_results  # noqa: E402

PI = "examples/pi.py"


def pi_seconds(server: ChidoriServer, expect_progress: bool) -> float:
    started = time.perf_counter()
    job = server.submit(application=PI, name="bench-pi")
    done = server.wait(job["id"])
    elapsed = time.perf_counter() - started
    if done["state"] != "SUCCEEDED":
        raise RuntimeError(f"job {job['id']} ended {done['state']}: {done['reason']}")
    if (done.get("progress") is not None) != expect_progress:
        raise RuntimeError(f"job {job['id']}: progress {done.get('progress')!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as home_on,
        tempfile.TemporaryDirectory() as home_off,
        ChidoriServer(Path(home_on)) as on,
        ChidoriServer(Path(home_off), env={"CHIDORI_SPARK_PROGRESS": "0"}) as off,
    ):
        print("warming up (one run each, not counted)...", flush=True)
        pi_seconds(on, True)
        pi_seconds(off, False)
        rows = []
        for round_ in range(args.rounds):
            if round_ % 2 == 0:
                with_progress = pi_seconds(on, True)
                without = pi_seconds(off, False)
            else:
                without = pi_seconds(off, False)
                with_progress = pi_seconds(on, True)
            rows.append(
                {
                    "round": round_ + 1,
                    "off_s": without,
                    "on_s": with_progress,
                    "ratio": with_progress / without,
                }
            )
            print(f"round {round_ + 1}: off {without:.2f} s, on {with_progress:.2f} s", flush=True)
    ratio = median([r["ratio"] for r in rows])
    print()
    print_table(
        ["round", "progress off (s)", "progress on (s)", "ratio"],
        [[r["round"], f"{r['off_s']:.2f}", f"{r['on_s']:.2f}", f"{r['ratio']:.3f}"] for r in rows],
    )
    off_median = median([r["off_s"] for r in rows])
    on_median = median([r["on_s"] for r in rows])
    print(
        f"\nmedian: off {off_median:.2f} s, on {on_median:.2f} s, ratio {ratio:.3f} (goal <= 1.02)"
    )
    path = write_results(
        "progress",
        {
            "rounds": rows,
            "median_ratio": ratio,
            "median_off_s": off_median,
            "median_on_s": on_median,
            "goal": 1.02,
            "command": "bench/progress.py",
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
