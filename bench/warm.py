"""Warm starts: the Pi example through Chidori with a warm pool (a driver started ahead of
time takes the job) against plain `spark-submit`, then the same with the pool off, each
interleaved in pairs (the order alternates) and reported as the median ratio; and the memory
an idle warm driver holds.

    .venv/bin/python bench/warm.py [--pairs 5] [--memory-only]

While the pool is on, every measurement (spark-submit's too) starts only once the pool shows
an idle driver again: the replacement driver takes about 8 s of CPU to start after each job,
and neither side should be measured against it. Each measured Chidori job must report
`start_type` warm (pool on) or cold (pool off), or the benchmark stops.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from chidori.domain.units import parse_memory_mib  # noqa: E402

PI = "examples/pi.py"
CLUSTER = "local"
GOALS = {"warm": 0.25, "cold": 1.05}
IDLE_TIMEOUT = 180.0


class BenchError(RuntimeError):
    """The benchmark did not measure what it claims to (a job ran cold, a pool never idled)."""


@dataclass(frozen=True)
class ChidoriRun:
    job_id: int
    elapsed: float
    start_type: str | None
    start_note: str | None
    queue_wait: float | None
    startup: float | None
    run: float | None


# -- the pool --------------------------------------------------------------------------------


def pool(server: ChidoriServer) -> dict[str, Any]:
    with server.client() as client:
        response = client.get("/api/v1/warm-pool")
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
    return next(p for p in items if p["cluster"] == CLUSTER)


def set_size(server: ChidoriServer, size: int | None) -> None:
    with server.client() as client:
        response = client.put(f"/api/v1/admin/warm-pool/{CLUSTER}", json={"size": size})
        response.raise_for_status()


def wait_for_pool(server: ChidoriServer, *, idle: bool) -> tuple[float, dict[str, Any] | None]:
    """Wait until the pool has an idle driver (`idle`) or no driver at all (not `idle`).
    Returns the seconds waited and the idle driver."""
    started = time.perf_counter()
    while time.perf_counter() - started < IDLE_TIMEOUT:
        drivers = pool(server)["drivers"]
        ready = [d for d in drivers if d["state"] == "idle"]
        if idle and ready:
            return time.perf_counter() - started, ready[0]
        if not idle and not drivers:
            return time.perf_counter() - started, None
        time.sleep(0.1)
    wanted = "an idle warm driver" if idle else "the pool to empty"
    raise BenchError(f"waited {IDLE_TIMEOUT:g} s for {wanted}:\n{server.server_log()}")


# -- memory ----------------------------------------------------------------------------------


def proc_memory(pid: int, field: int) -> tuple[int, int]:
    """(RSS, PSS) in MiB of every process whose /proc/PID/stat `field` (2: process group,
    3: session) equals `pid`, read from /proc directly (PSS counts shared pages once)."""
    rss_kb = pss_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[field]) != pid:
                continue
            rollup = (entry / "smaps_rollup").read_text().splitlines()
        except (OSError, IndexError, ValueError):
            continue
        for line in rollup:
            key, _, value = line.partition(":")
            if key == "Rss":
                rss_kb += int(value.split()[0])
            elif key == "Pss":
                pss_kb += int(value.split()[0])
    return rss_kb // 1024, pss_kb // 1024


def idle_memory(driver: dict[str, Any]) -> dict[str, Any]:
    """The API's `memory_in_use` (RSS of the driver's process group) against /proc: the
    group, and the whole session (PySpark's worker daemon runs in a process group of its
    own, in the driver's session)."""
    api = driver.get("memory_in_use")
    pid = int(driver["pid"]) if driver.get("pid") else 0
    group = proc_memory(pid, 2) if pid else (0, 0)
    session = proc_memory(pid, 3) if pid else (0, 0)
    return {
        "driver_id": driver["id"],
        "reserved": driver["memory"],
        "memory_in_use": api,
        "memory_in_use_mib": parse_memory_mib(api) if api else None,
        "proc_group_rss_mib": group[0],
        "proc_group_pss_mib": group[1],
        "proc_session_rss_mib": session[0],
        "proc_session_pss_mib": session[1],
    }


def print_memory(memory: dict[str, Any]) -> None:
    print(
        f"idle warm driver ({memory['reserved']} reserved): memory_in_use "
        f"{memory['memory_in_use']} (API, process group); /proc: process group RSS "
        f"{memory['proc_group_rss_mib']} MiB (PSS {memory['proc_group_pss_mib']}), whole "
        f"session RSS {memory['proc_session_rss_mib']} MiB (PSS "
        f"{memory['proc_session_pss_mib']})"
    )


def measure_idle(server: ChidoriServer) -> dict[str, Any]:
    waited, driver = wait_for_pool(server, idle=True)
    print(f"first warm driver idle {waited:.1f} s after the server was ready", flush=True)
    assert driver is not None
    time.sleep(2.0)  # let its Python worker settle before reading its memory
    return idle_memory(next(d for d in pool(server)["drivers"] if d["id"] == driver["id"]))


# -- one measurement -------------------------------------------------------------------------


def through_chidori(server: ChidoriServer, expected: str) -> ChidoriRun:
    """Submit -> SUCCEEDED, timed by the client; the job must have started `expected`."""
    started = time.perf_counter()
    job = server.submit(application=PI, name=f"bench-pi-{expected}")
    done = server.wait(job["id"])
    elapsed = time.perf_counter() - started
    if done["state"] != "SUCCEEDED":
        raise BenchError(f"job {job['id']} ended {done['state']}: {done['reason']}")
    if done.get("start_type") != expected:
        raise BenchError(
            f"job {job['id']} started {done.get('start_type')!r}, not {expected!r}: "
            f"{done.get('start_note')}"
        )
    return ChidoriRun(
        job["id"],
        elapsed,
        done.get("start_type"),
        done.get("start_note"),
        done.get("queue_wait_seconds"),
        done.get("startup_seconds"),
        done.get("run_seconds"),
    )


class Phase:
    """Interleaved pairs of spark-submit and Chidori with the pool on (`warm`) or off."""

    def __init__(self, server: ChidoriServer, submit: list[str], env: dict[str, str]) -> None:
        self.server = server
        self.submit = submit
        self.env = env
        self.waits: list[float] = []

    def settle(self, expected: str) -> None:
        """Before any measurement with the pool on: an idle driver, nothing starting."""
        if expected == "warm":
            waited, _ = wait_for_pool(self.server, idle=True)
            self.waits.append(waited)

    def raw(self, expected: str) -> float:
        self.settle(expected)
        return timed_command(self.submit, self.env, REPO)

    def chidori(self, expected: str) -> ChidoriRun:
        self.settle(expected)
        return through_chidori(self.server, expected)

    def pairs(self, expected: str, count: int) -> list[dict[str, Any]]:
        print(f"[{expected}] warming up (one run each, not counted)...", flush=True)
        self.raw(expected)
        self.chidori(expected)
        self.waits.clear()
        rows = []
        for pair in range(count):
            if pair % 2 == 0:
                raw = self.raw(expected)
                run = self.chidori(expected)
            else:
                run = self.chidori(expected)
                raw = self.raw(expected)
            rows.append(row(expected, pair + 1, raw, run))
            print(
                f"[{expected}] pair {pair + 1}: spark-submit {raw:.2f} s, "
                f"chidori {run.elapsed:.2f} s (job {run.job_id}, {run.start_type})",
                flush=True,
            )
        return rows


def row(expected: str, pair: int, raw: float, run: ChidoriRun) -> dict[str, Any]:
    return {
        "pool": "on" if expected == "warm" else "off",
        "pair": pair,
        "spark_submit_s": raw,
        "chidori_s": run.elapsed,
        "ratio": run.elapsed / raw,
        "job_id": run.job_id,
        "start_type": run.start_type,
        "start_note": run.start_note,
        "queue_wait_s": run.queue_wait,
        "startup_s": run.startup,
        "run_s": run.run,
    }


# -- report ----------------------------------------------------------------------------------


def seconds(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_rows(rows: list[dict[str, Any]]) -> None:
    print_table(
        ["pool", "pair", "spark-submit (s)", "chidori (s)", "ratio", "start", "start-up (s)",
         "run (s)"],
        [
            [
                r["pool"],
                r["pair"],
                seconds(r["spark_submit_s"]),
                seconds(r["chidori_s"]),
                seconds(r["ratio"], 3),
                r["start_type"],
                seconds(r["startup_s"]),
                seconds(r["run_s"]),
            ]
            for r in rows
        ],
    )  # fmt: skip


def summary(rows: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return {
        "spark_submit_median_s": median([r["spark_submit_s"] for r in rows]),
        "chidori_median_s": median([r["chidori_s"] for r in rows]),
        "median_ratio": median([r["ratio"] for r in rows]),
        "goal": GOALS[kind],
    }


def print_summary(name: str, figures: dict[str, Any]) -> None:
    met = "met" if figures["median_ratio"] <= figures["goal"] else "NOT met"
    print(
        f"{name}: spark-submit {figures['spark_submit_median_s']:.2f} s, chidori "
        f"{figures['chidori_median_s']:.2f} s, median ratio {figures['median_ratio']:.3f} "
        f"(goal <= {figures['goal']}: {met})"
    )


# -- main ------------------------------------------------------------------------------------


def measure(pairs: int, submit: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Idle memory first; then, unless `pairs` is 0, the pool-on and the pool-off pairs."""
    with tempfile.TemporaryDirectory() as home:
        server_env = {"CHIDORI_WARM_POOL": "1"}
        with ChidoriServer(Path(home), env=server_env) as server:
            memory = measure_idle(server)
            if pairs == 0:
                return {"warm_rows": [], "cold_rows": [], "idle_waits_s": [], "idle_memory": memory}
            on = Phase(server, submit, env)
            warm_rows = on.pairs("warm", pairs)
            set_size(server, 0)
            emptied, _ = wait_for_pool(server, idle=False)
            print(f"pool set to 0; drivers gone after {emptied:.1f} s", flush=True)
            cold_rows = Phase(server, submit, env).pairs("cold", pairs)
    return {
        "warm_rows": warm_rows,
        "cold_rows": cold_rows,
        "idle_waits_s": on.waits,
        "idle_memory": memory,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument(
        "--memory-only", action="store_true", help="only the idle warm driver's memory"
    )
    args = parser.parse_args()
    env = spark_env()
    submit = [f"{env['SPARK_HOME']}/bin/spark-submit", "--master", "local[*]", PI]
    found = measure(0 if args.memory_only else max(1, args.pairs), submit, env)
    if args.memory_only:
        print_memory(found["idle_memory"])
        return 0
    rows = found["warm_rows"] + found["cold_rows"]
    warm, cold = summary(found["warm_rows"], "warm"), summary(found["cold_rows"], "cold")
    waits, memory = found["idle_waits_s"], found["idle_memory"]
    print()
    print_rows(rows)
    print()
    print_summary("pool on ", warm)
    print_summary("pool off", cold)
    print(
        f"waits for an idle warm driver before each pool-on measurement: median "
        f"{median(waits):.1f} s, max {max(waits):.1f} s ({len(waits)} waits)"
    )
    print_memory(memory)
    path = write_results(
        "warm",
        {
            "pairs": rows,
            "pool_on": warm,
            "pool_off": cold,
            "idle_waits_s": waits,
            "idle_memory": memory,
            "command": " ".join(submit),
            "chidori_env": {"CHIDORI_WARM_POOL": "1"},
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
