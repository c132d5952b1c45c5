"""What the live UI views cost the server: its CPU while 100 short Python jobs run, with no
page open, and with 50 open job pages and 20 open jobs lists polling as the browser does.

A job page (job_live.js) fetches `/ui/jobs/{id}/live` every 2 s until its job is final, then
once more, and its log viewer follows the log (`/api/v1/jobs/{id}/logs?follow=true`); a list
(jobs.js) fetches `/ui?fragment=1` every 3 s. Each simulated page opens the page once first,
with a real UI session (signed in through the login form). The 50 pages watch 50 of the 100
jobs. CPU is the server process's own (utime + stime in /proc/<pid>/stat; the jobs' drivers
are other processes), from the first submission until every job has finished.

    python bench/live_views.py                    # 100 jobs, 50 pages, 20 lists, 2 rounds
    python bench/live_views.py --jobs 20 --pages 10 --lists 5 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.server import ChidoriServer

from bench.common import percentile, print_table, write_results

PAGE_PERIOD = 2.0  # job_live.js
LIST_PERIOD = 3.0  # jobs.js (data-period)
JOB_SECONDS = 3.0
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


@dataclass
class Latencies:
    live: list[float] = field(default_factory=list)
    fragment: list[float] = field(default_factory=list)
    errors: int = 0


def sign_in(server: ChidoriServer) -> httpx.Cookies:
    with httpx.Client(base_url=server.url) as client:
        form = client.get("/ui/login")
        match = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert match, "no CSRF field on the login page"
        answer = client.post(
            "/ui/login", data={"token": server.token, "csrf": match.group(1), "next": "/ui"}
        )
        assert answer.status_code == 303, answer.text
        return client.cookies


async def job_page(
    client: httpx.AsyncClient, job_id: int, seen: Latencies, stop: asyncio.Event
) -> None:
    await client.get(f"/ui/jobs/{job_id}")

    async def follow() -> None:
        url = f"/api/v1/jobs/{job_id}/logs"
        async with client.stream("GET", url, params={"follow": "true", "offset": 0}) as stream:
            async for _ in stream.aiter_bytes():
                pass

    follower = asyncio.create_task(follow())
    final = False
    while not stop.is_set():
        started = time.perf_counter()
        answer = await client.get(f"/ui/jobs/{job_id}/live")
        seen.live.append(time.perf_counter() - started)
        if answer.status_code != 200:
            seen.errors += 1
        elif answer.json()["final"]:
            if final:
                break
            final = True  # one more fetch after the end, as the page does
        await asyncio.sleep(PAGE_PERIOD)
    follower.cancel()


async def jobs_list(client: httpx.AsyncClient, seen: Latencies, stop: asyncio.Event) -> None:
    await client.get("/ui")
    while not stop.is_set():
        started = time.perf_counter()
        answer = await client.get("/ui", params={"fragment": "1"})
        seen.fragment.append(time.perf_counter() - started)
        if answer.status_code != 200:
            seen.errors += 1
        await asyncio.sleep(LIST_PERIOD)


async def run_batch(
    server: ChidoriServer, cookies: httpx.Cookies, jobs: int, pages: int, lists: int
) -> dict[str, Any]:
    assert server.process is not None
    pid = server.process.pid
    headers = {"Authorization": f"Bearer {server.token}"}
    limits = httpx.Limits(max_connections=pages * 2 + lists + 10)
    seen = Latencies()
    stop = asyncio.Event()
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as api,
        httpx.AsyncClient(
            base_url=server.url, cookies=cookies, timeout=120, limits=limits
        ) as browser,
    ):
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        ids = []
        for n in range(jobs):
            spec = {
                "kind": "python",
                "name": f"live-bench-{n}",
                "application": "tests/jobs/sleeper.py",
                "args": [str(JOB_SECONDS)],
            }
            answer = await api.post("/api/v1/jobs", json=spec)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        viewers = [asyncio.create_task(job_page(browser, i, seen, stop)) for i in ids[:pages]]
        viewers += [asyncio.create_task(jobs_list(browser, seen, stop)) for _ in range(lists)]
        states = {}
        for job_id in ids:
            while True:
                answer = await api.get(f"/api/v1/jobs/{job_id}/wait", params={"timeout": 30})
                state = answer.json()["state"]
                if state in TERMINAL:
                    states[job_id] = state
                    break
        wall = time.perf_counter() - wall_before
        cpu = cpu_seconds(pid) - cpu_before
        stop.set()
        for viewer in viewers:
            viewer.cancel()
        await asyncio.gather(*viewers, return_exceptions=True)
    failed = [i for i, s in states.items() if s != "SUCCEEDED"]
    assert not failed, f"jobs did not succeed: {failed}"
    return {
        "pages": pages,
        "lists": lists,
        "jobs": jobs,
        "wall_seconds": round(wall, 2),
        "server_cpu_seconds": round(cpu, 2),
        "server_cpu_percent": round(100 * cpu / wall, 1),
        "live_requests": len(seen.live),
        "fragment_requests": len(seen.fragment),
        "live_p50_ms": round(1000 * percentile(seen.live, 0.5), 1) if seen.live else None,
        "live_p95_ms": round(1000 * percentile(seen.live, 0.95), 1) if seen.live else None,
        "fragment_p50_ms": (
            round(1000 * percentile(seen.fragment, 0.5), 1) if seen.fragment else None
        ),
        "fragment_p95_ms": (
            round(1000 * percentile(seen.fragment, 0.95), 1) if seen.fragment else None
        ),
        "errors": seen.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--lists", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    runs = []
    with (
        tempfile.TemporaryDirectory(prefix="chidori-live-bench-") as home,
        ChidoriServer(Path(home)) as server,
    ):
        cookies = sign_in(server)
        for round_ in range(options.rounds):
            # Interleaved, the order alternating (quiet then watched, then watched then quiet),
            # so the store's growth from round to round weighs on both alike.
            order = [(0, 0), (options.pages, options.lists)]
            for pages, lists in order if round_ % 2 == 0 else order[::-1]:
                result = asyncio.run(run_batch(server, cookies, options.jobs, pages, lists))
                result["round"] = round_ + 1
                runs.append(result)
                print(f"round {round_ + 1}: {pages} pages, {lists} lists: {result}")
    headers = ["round", "pages", "lists", "wall s", "server CPU s", "CPU %", "live req",
               "live p50/p95 ms", "list req", "list p50/p95 ms", "errors"]  # fmt: skip
    rows = [
        [
            r["round"],
            r["pages"],
            r["lists"],
            r["wall_seconds"],
            r["server_cpu_seconds"],
            r["server_cpu_percent"],
            r["live_requests"],
            f"{r['live_p50_ms']}/{r['live_p95_ms']}" if r["live_requests"] else "-",
            r["fragment_requests"],
            f"{r['fragment_p50_ms']}/{r['fragment_p95_ms']}" if r["fragment_requests"] else "-",
            r["errors"],
        ]
        for r in runs
    ]
    print_table(headers, rows)
    quiet = [r["server_cpu_seconds"] for r in runs if r["pages"] == 0]
    watched = [r["server_cpu_seconds"] for r in runs if r["pages"] > 0]
    summary = {
        "quiet_cpu_seconds_mean": round(sum(quiet) / len(quiet), 2),
        "watched_cpu_seconds_mean": round(sum(watched) / len(watched), 2),
    }
    summary["extra_cpu_seconds"] = round(
        summary["watched_cpu_seconds_mean"] - summary["quiet_cpu_seconds_mean"], 2
    )
    requests = [r["live_requests"] + r["fragment_requests"] for r in runs if r["pages"] > 0]
    mean_requests = sum(requests) / len(requests)
    summary["extra_cpu_ms_per_request"] = (
        round(1000 * summary["extra_cpu_seconds"] / mean_requests, 2) if mean_requests else None
    )
    print(summary)
    path = write_results(
        "live_views",
        {
            "command": "python bench/live_views.py " + " ".join(sys.argv[1:]),
            "job_seconds": JOB_SECONDS,
            "page_period_seconds": PAGE_PERIOD,
            "list_period_seconds": LIST_PERIOD,
            "runs": runs,
            **summary,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
