"""Dispatch: 500 cheap jobs (a Python process that prints a time stamp and exits) with a limit
of 2 running jobs, through Chidori, against the same 500 commands run 2 at a time with no
queue at all. Reports jobs per second as a ratio to the no-queue run, and the gap from a slot
freeing to the next job's process printing its first line (p50, p99), for both.

    .venv/bin/python bench/dispatch.py [--jobs 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import TERMINAL, ChidoriServer  # noqa: E402

from bench.common import percentile, print_table, write_results  # noqa: E402

STAMP = "bench/jobs/stamp.py"


def gaps(starts: list[float], ends: list[float]) -> list[float]:
    """For each start after the first two: start minus the latest end before it (the slot it
    took was freed then)."""
    ends = sorted(ends)
    result = []
    for start in sorted(starts)[2:]:
        before = [end for end in ends if end <= start]
        if before:
            result.append(start - before[-1])
    return result


def no_queue(jobs: int) -> tuple[float, list[float]]:
    starts: list[float] = []
    ends: list[float] = []
    lock = threading.Lock()

    def run(_: int) -> None:
        out = subprocess.run(
            [sys.executable, STAMP], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        with lock:
            ends.append(time.time())
            starts.append(float(out.split()[1]))

    began = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, range(jobs)))
    return jobs / (time.perf_counter() - began), gaps(starts, ends)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_chidori(jobs: int, isolation: str) -> tuple[float, list[float], float]:
    """Jobs per second, slot->start gaps, and the server's CPU milliseconds per job.
    `isolation`: `auto` (each job in its sandbox, when run as root) or `none`."""
    config = Path(tempfile.mkdtemp()) / "dispatch.yaml"
    config.write_text(
        "limits:\n  max_running_jobs: 2\nsecurity:\n  submit_rate_per_second: 0\n"
        f"isolation: {isolation}\n"
    )
    with tempfile.TemporaryDirectory() as home, ChidoriServer(Path(home), config=config) as server:
        with server.client() as client:
            # Hold admission while the queue fills, so we time dispatch, not submission.
            client.put(
                "/api/v1/admin/limits",
                json={"max_running_jobs": 0, "max_memory": None, "max_cores": None, "clusters": {}},
            )
            ids = [
                client.post("/api/v1/jobs", json={"kind": "python", "application": STAMP}).json()[
                    "id"
                ]
                for _ in range(jobs)
            ]
            assert server.process is not None
            cpu_before = cpu_seconds(server.process.pid)
            began = time.time()
            client.put(
                "/api/v1/admin/limits",
                json={"max_running_jobs": 2, "max_memory": None, "max_cores": None, "clusters": {}},
            )
            # Look rarely, so watching does not take CPU from the run it watches; the time
            # taken is read from the recorded end of the last job, not from when we looked.
            while client.get(f"/api/v1/jobs/{ids[-1]}").json()["state"] not in TERMINAL:
                time.sleep(0.5)
            cpu_ms = (cpu_seconds(server.process.pid) - cpu_before) * 1000 / jobs
            done = [server.wait(job_id, timeout=600) for job_id in ids]
            starts = [float(server.log(job_id).split()[1]) for job_id in ids]
        ends = [datetime.fromisoformat(job["finished_at"]).timestamp() for job in done]
        assert all(job["state"] == "SUCCEEDED" for job in done)
    return jobs / (max(ends) - began), gaps(starts, ends), cpu_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args()
    raw_rate, raw_gaps = no_queue(args.jobs)
    rate, chidori_gaps, cpu_ms = through_chidori(args.jobs, "none")
    sandboxed = os.geteuid() == 0
    if sandboxed:
        boxed_rate, boxed_gaps, boxed_cpu_ms = through_chidori(args.jobs, "auto")

    def ms(values: list[float], share: float) -> str:
        return f"{percentile(values, share) * 1000:.1f}"

    rows = [
        ["no queue (2 at a time)", f"{raw_rate:.1f}", "1.00", ms(raw_gaps, 0.5),
         ms(raw_gaps, 0.99)],
        ["Chidori, isolation: none (limit 2)", f"{rate:.1f}", f"{rate / raw_rate:.2f}",
         ms(chidori_gaps, 0.5), ms(chidori_gaps, 0.99)],
    ]  # fmt: skip
    if sandboxed:
        rows.append(
            ["Chidori, sandboxed (limit 2)", f"{boxed_rate:.1f}", f"{boxed_rate / raw_rate:.2f}",
             ms(boxed_gaps, 0.5), ms(boxed_gaps, 0.99)]
        )  # fmt: skip
    print_table(["setup", "jobs/s", "ratio", "slot->start p50 ms", "p99 ms"], rows)
    print("goals: ratio >= 0.8; slot->start p50 <= 10 ms, p99 <= 100 ms (includes Python start-up)")
    print(f"server CPU per job: {cpu_ms:.1f} ms (user + system, from the release to the last end)")
    if sandboxed:
        print(f"server CPU per job, sandboxed: {boxed_cpu_ms:.1f} ms")
    path = write_results(
        "dispatch",
        {
            "jobs": args.jobs,
            "no_queue_jobs_per_second": raw_rate,
            "chidori_jobs_per_second": rate,
            "ratio": rate / raw_rate,
            "server_cpu_ms_per_job": cpu_ms,
            "sandboxed": {
                "jobs_per_second": boxed_rate,
                "ratio": boxed_rate / raw_rate,
                "server_cpu_ms_per_job": boxed_cpu_ms,
                "gap_ms": {
                    "p50": percentile(boxed_gaps, 0.5) * 1000,
                    "p99": percentile(boxed_gaps, 0.99) * 1000,
                },
            }
            if sandboxed
            else None,
            "no_queue_gap_ms": {
                "p50": percentile(raw_gaps, 0.5) * 1000,
                "p99": percentile(raw_gaps, 0.99) * 1000,
            },
            "chidori_gap_ms": {
                "p50": percentile(chidori_gaps, 0.5) * 1000,
                "p99": percentile(chidori_gaps, 0.99) * 1000,
            },
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
