"""Dispatch: 500 cheap jobs (a Python process that prints a time stamp and exits) with a limit
of 2 running jobs, through Chidori, against the same 500 commands run 2 at a time with no
queue at all, and against the Celery + RabbitMQ peer harness (`../shared/peers/celery`: a
durable queue, acks_late, prefork, concurrency 2, `python -c pass` jobs) with its own
no-queue baseline, in the same sitting. Reports jobs per second, the ratio to each one's
no-queue run, and the gap from a slot freeing to the next job's process starting (p50, p99).
With `--rounds R` the whole sequence runs R times, interleaved, and medians are reported.

    .venv/bin/python bench/dispatch.py [--jobs 500] [--rounds 3] [--no-celery]

The Celery harness runs in its own virtual environment (`make bench` creates
`.venv-celery` from the harness's requirements; or set CHIDORI_CELERY_PYTHON) and needs
RabbitMQ on 127.0.0.1:5672 (CHIDORI_CELERY_BROKER).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

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


CELERY_HARNESS = REPO.parent / "shared" / "peers" / "celery" / "bench.py"


def through_celery(jobs: int) -> dict[str, float] | None:
    """The Celery peer's jobs/s, ratio to its own no-queue run (the same `python -c pass`
    commands 2 at a time), slot gap p50/p99 and CPU per job; None when it cannot run here."""
    python = Path(os.environ.get("CHIDORI_CELERY_PYTHON", REPO / ".venv-celery" / "bin" / "python"))
    harness = Path(os.environ.get("CHIDORI_CELERY_HARNESS", CELERY_HARNESS))
    if not python.exists() or not harness.exists():
        print(f"celery peer skipped: no {python} or no {harness}", file=sys.stderr)
        return None
    broker = os.environ.get("CHIDORI_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
    argv = [str(python), str(harness), "--jobs", str(jobs), "--concurrency", "2",
            "--command", "cheap", "--plain-baseline", "--plain-jobs", str(jobs),
            "--broker", broker]  # fmt: skip
    done = subprocess.run(argv, cwd=harness.parent, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("DJQ_RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"celery peer failed ({done.returncode}): {done.stderr[-2000:]}", file=sys.stderr)
        return None
    median = json.loads(lines[-1].removeprefix("DJQ_RESULT "))["median"]
    return {
        "jobs_per_second": median["completed_per_s"],
        "ratio": 1 / median["ratio_wall_per_job"],
        "no_queue_jobs_per_second": median["plain_jobs_per_s"],
        "gap_p50_ms": median["slot_gap_p50_ms"],
        "gap_p99_ms": median["slot_gap_p99_ms"],
        "cpu_ms_per_job": median["cpu_per_job_ms"],
    }


def one_round(jobs: int, sandboxed: bool, celery: bool) -> dict[str, Any]:
    raw_rate, raw_gaps = no_queue(jobs)
    rate, chidori_gaps, cpu_ms = through_chidori(jobs, "none")
    result: dict[str, Any] = {
        "no_queue": {"jobs_per_second": raw_rate, **_gap_ms(raw_gaps)},
        "chidori": {"jobs_per_second": rate, "ratio": rate / raw_rate, **_gap_ms(chidori_gaps),
                    "server_cpu_ms_per_job": cpu_ms},
    }  # fmt: skip
    if sandboxed:
        boxed_rate, boxed_gaps, boxed_cpu_ms = through_chidori(jobs, "auto")
        result["sandboxed"] = {
            "jobs_per_second": boxed_rate,
            "ratio": boxed_rate / raw_rate,
            **_gap_ms(boxed_gaps),
            "server_cpu_ms_per_job": boxed_cpu_ms,
        }
    if celery:
        peer = through_celery(jobs)
        if peer is not None:
            result["celery"] = peer
    return result


def _gap_ms(gaps_s: list[float]) -> dict[str, float]:
    return {
        "gap_p50_ms": percentile(gaps_s, 0.5) * 1000,
        "gap_p99_ms": percentile(gaps_s, 0.99) * 1000,
    }


def _median(rounds: list[dict[str, Any]], setup: str, key: str) -> float:
    return float(statistics.median(r[setup][key] for r in rounds if setup in r))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery peer")
    args = parser.parse_args()
    sandboxed = os.geteuid() == 0
    rounds = [one_round(args.jobs, sandboxed, not args.no_celery) for _ in range(args.rounds)]
    setups = [
        ("no queue (2 at a time)", "no_queue"),
        ("Chidori, isolation: none (limit 2)", "chidori"),
        ("Chidori, sandboxed (limit 2)", "sandboxed"),
        ("Celery + RabbitMQ peer (concurrency 2)", "celery"),
    ]
    rows = []
    for label, setup in setups:
        if not any(setup in r for r in rounds):
            continue
        ratio = "1.00" if setup == "no_queue" else f"{_median(rounds, setup, 'ratio'):.2f}"
        rows.append([label, f"{_median(rounds, setup, 'jobs_per_second'):.1f}", ratio,
                     f"{_median(rounds, setup, 'gap_p50_ms'):.1f}",
                     f"{_median(rounds, setup, 'gap_p99_ms'):.1f}"])  # fmt: skip
    if any("celery" in r for r in rounds):
        peer_raw = _median(rounds, "celery", "no_queue_jobs_per_second")
        rows.append(["  (its own no-queue run: python -c pass)", f"{peer_raw:.1f}", "1.00", "", ""])
    print(f"{args.jobs} jobs, {args.rounds} round(s), medians")
    print_table(["setup", "jobs/s", "ratio", "slot->start p50 ms", "p99 ms"], rows)
    print(
        "goals: ratio >= 0.8 and more jobs/s than Celery; slot->start p50 <= 10 ms, p99 <= 100 ms"
    )
    cpu = _median(rounds, "chidori", "server_cpu_ms_per_job")
    print(f"server CPU per job: {cpu:.2f} ms (user + system, from the release to the last end)")
    if sandboxed:
        boxed = _median(rounds, "sandboxed", "server_cpu_ms_per_job")
        print(f"server CPU per job, sandboxed: {boxed:.2f} ms")
    if any("celery" in r for r in rounds):
        peer_cpu = _median(rounds, "celery", "cpu_ms_per_job")
        print(f"Celery harness CPU per job (worker, client and the jobs): {peer_cpu:.1f} ms")
    path = write_results("dispatch", {"jobs": args.jobs, "rounds": rounds})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
