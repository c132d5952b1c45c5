"""Chidori's overhead on one Spark job: the Pi example submitted through Chidori (submit ->
SUCCEEDED, measured by the client) against the same job run by plain `spark-submit`,
interleaved in pairs (the order alternates), reported as the median ratio.

    .venv/bin/python bench/overhead.py [--pairs 5]
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

from bench.common import (  # noqa: E402
    median,
    print_table,
    spark_env,
    timed_command,
    write_results,
)

PI = "examples/pi.py"


def through_chidori(server: ChidoriServer) -> tuple[float, float]:
    """(client-measured submit -> SUCCEEDED, of which Chidori's own share: the total minus
    the driver process's lifetime as the server recorded it)."""
    started = time.perf_counter()
    job = server.submit(application=PI, name="bench-pi")
    done = server.wait(job["id"])
    elapsed = time.perf_counter() - started
    if done["state"] != "SUCCEEDED":
        raise RuntimeError(f"job {job['id']} ended {done['state']}: {done['reason']}")
    return elapsed, elapsed - float(done["duration_seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    env = spark_env()
    submit = [f"{env['SPARK_HOME']}/bin/spark-submit", "--master", "local[*]", PI]
    with tempfile.TemporaryDirectory() as home, ChidoriServer(Path(home)) as server:
        print("warming up (one run each, not counted)...", flush=True)
        timed_command(submit, env, REPO)
        through_chidori(server)
        rows = []
        for pair in range(args.pairs):
            if pair % 2 == 0:
                raw = timed_command(submit, env, REPO)
                chidori, own = through_chidori(server)
            else:
                chidori, own = through_chidori(server)
                raw = timed_command(submit, env, REPO)
            rows.append(
                {
                    "pair": pair + 1,
                    "spark_submit_s": raw,
                    "chidori_s": chidori,
                    "chidori_own_s": own,
                    "ratio": chidori / raw,
                }
            )
            print(f"pair {pair + 1}: spark-submit {raw:.2f} s, chidori {chidori:.2f} s", flush=True)
    ratio = median([r["ratio"] for r in rows])
    print()
    print_table(
        ["pair", "spark-submit (s)", "chidori (s)", "chidori's own (s)", "ratio"],
        [
            [
                r["pair"],
                f"{r['spark_submit_s']:.2f}",
                f"{r['chidori_s']:.2f}",
                f"{r['chidori_own_s']:.3f}",
                f"{r['ratio']:.3f}",
            ]
            for r in rows
        ],
    )
    raw_median = median([r["spark_submit_s"] for r in rows])
    chidori_median = median([r["chidori_s"] for r in rows])
    own_median = median([r["chidori_own_s"] for r in rows])
    print(
        f"\nmedian: spark-submit {raw_median:.2f} s, chidori {chidori_median:.2f} s, "
        f"ratio {ratio:.3f} (goal <= 1.05); Chidori's own {own_median:.3f} s"
    )
    path = write_results(
        "overhead",
        {"pairs": rows, "median_ratio": ratio, "goal": 1.05, "command": " ".join(submit)},
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
