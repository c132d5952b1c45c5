"""Log reads and server memory: 10 clients at once read one 200 MiB driver log through each
route, and the server's resident memory is sampled every 20 ms meanwhile.

Routes: REST windows (`/logs`, from offset 0 and `tail`), the REST download, Livy's numbered
lines (`/batches/{id}/log`, at the start and near the end), a share link's download, and a
follow stream of the finished job (the whole log, streamed). Reported per route: the server's
peak RSS growth over its RSS before the route's reads, the bytes the clients received, and the
growth as a share of the log's size (a server that read the log whole per request would show
10 x 200 MiB).

    .venv/bin/python bench/log_memory.py [--mib 200] [--clients 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import ChidoriServer  # noqa: E402

from bench.common import print_table, write_results  # noqa: E402

LINE = 100  # bytes per log line, newline included
WRITER = (
    "import sys\n"
    "line = 'x' * 99 + '\\n'\n"
    "block = line * 10_000\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    sys.stdout.write(block)\n"
    "sys.stdout.flush()\n"
)


def rss_mib(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class PeakSampler:
    """The highest RSS of one process while it runs, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.peak = rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def drain(http: httpx.AsyncClient, path: str, params: dict[str, Any] | None = None) -> int:
    """Read one answer as a stream (the client keeps nothing); returns the bytes received."""
    received = 0
    async with http.stream("GET", path, params=params) as answer:
        answer.raise_for_status()
        async for chunk in answer.aiter_raw():
            received += len(chunk)
    return received


async def windows(http: httpx.AsyncClient, job: int, size: int) -> int:
    """REST windows read one after another from offset 0 to the end."""
    received, offset = 0, 0
    while offset < size:
        answer = await http.get(f"/api/v1/jobs/{job}/logs", params={"offset": offset})
        answer.raise_for_status()
        received += len(answer.content)
        offset = int(answer.headers["X-Log-Offset"])
    return received


async def livy_pages(http: httpx.AsyncClient, job: int, start: int, pages: int) -> int:
    """Livy line windows of 100,000 lines (each capped at a MiB), `pages` in a row."""
    received = 0
    for page in range(pages):
        answer = await http.get(
            f"/batches/{job}/log", params={"from": start + page * 10_000, "size": 100_000}
        )
        answer.raise_for_status()
        received += len(answer.content)
    return received


async def run_route(
    server: ChidoriServer, clients: int, read: Callable[[httpx.AsyncClient], Any]
) -> int:
    headers = {"Authorization": f"Bearer {server.token}"}
    timeout = httpx.Timeout(120)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=timeout) as http:
        totals = await asyncio.gather(*(read(http) for _ in range(clients)))
    return sum(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()
    blocks = args.mib * 1024 * 1024 // (LINE * 10_000)
    with tempfile.TemporaryDirectory(prefix="chidori-bench-") as tmp:
        scratch = Path(tmp)
        scratch.chmod(0o755)
        with ChidoriServer(scratch / "home") as server:
            assert server.process is not None
            pid = server.process.pid
            with server.client() as client:
                app = client.post("/api/v1/uploads", files={"file": ("writer.py", WRITER)})
                made = client.post(
                    "/api/v1/jobs",
                    json={
                        "kind": "python",
                        "application": app.json()["uri"],
                        "args": [str(blocks)],
                    },
                )
                job = made.json()["id"]
                assert server.wait(job, timeout=600)["state"] == "SUCCEEDED"
                size = int(
                    client.get(f"/api/v1/jobs/{job}/logs", params={"tail": 1}).headers["X-Log-Size"]
                )
                token = client.post(f"/api/v1/jobs/{job}/share", json={}).json()["url"]
                token = token.rstrip("/").rsplit("/", 1)[-1]
            lines = size // LINE
            log_path = f"/api/v1/jobs/{job}/logs"
            routes: list[tuple[str, Callable[[httpx.AsyncClient], Any]]] = [
                ("REST windows, offset 0 to the end", lambda h: windows(h, job, size)),
                ("REST tail=1000000", lambda h: drain(h, log_path, {"tail": 1_000_000})),
                ("REST download", lambda h: drain(h, f"{log_path}/download")),
                ("Livy lines, 20 pages from 0", lambda h: livy_pages(h, job, 0, 20)),
                (
                    "Livy lines, 20 pages near the end",
                    lambda h: livy_pages(h, job, max(0, lines - 250_000), 20),
                ),
                ("share link download", lambda h: drain(h, f"/s/{token}/log/download")),
                ("follow (finished job, whole log)", lambda h: drain(h, log_path, {"follow": "1"})),
            ]
            rows: list[list[Any]] = []
            for name, read in routes:
                before = rss_mib(pid)
                started = time.perf_counter()
                with PeakSampler(pid) as sampler:
                    received = asyncio.run(run_route(server, args.clients, read))
                seconds = time.perf_counter() - started
                growth = max(0.0, sampler.peak - before)
                rows.append(
                    [
                        name,
                        f"{received / 2**20:.0f}",
                        f"{seconds:.1f}",
                        f"{before:.0f}",
                        f"{growth:.1f}",
                        f"{growth / (size / 2**20):.3f}",
                    ]
                )
    print(f"log: {size / 2**20:.0f} MiB, {args.clients} clients per route")
    headers = ["route", "MiB received", "s", "RSS before MiB", "peak growth MiB", "growth/log"]
    print_table(headers, rows)
    write_results(
        "log_memory",
        {"log_mib": size / 2**20, "clients": args.clients, "headers": headers, "rows": rows},
    )


if __name__ == "__main__":
    main()
