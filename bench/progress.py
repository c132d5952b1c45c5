"""What live Spark progress collection adds to a Pi job: the Pi example through a Chidori
server with collection on (the default) and through one with it off
(`CHIDORI_SPARK_PROGRESS=0`), in interleaved rounds (the order alternates).

Two figures:
- wall time, submit -> SUCCEEDED measured by the client, as the median ratio on/off;
- the server process's own CPU (utime + stime from /proc/<pid>/stat; the driver is another
  process) spent while each job runs. Collection runs in the server, so its cost is the extra
  CPU the "on" server spends per job, which the machine's noise barely moves. A server spends
  CPU even idle (the scheduler loop, the process sweep, lease renewals), in proportion to the
  time a job takes, which the noise does move: both servers run the whole time, and while one
  runs a job the other is idle, so each server's idle rate is its CPU over all the other's
  job windows (warm-up included). A job's own CPU is the busy server's CPU minus its idle rate
  times the job's wall time. The extra CPU per job (on minus off) is reported as a share of
  the job's wall time: on a saturated machine, an upper bound of what collection can delay
  the job (goal <= 2 %);
- the driver's CPU (the server's cutime + cstime: drivers are its children, reaped when they
  end), since collection also changes the driver's event log (uncompressed, a 4 KB buffer).

    .venv/bin/python bench/progress.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import ChidoriServer  # noqa: E402

from bench.common import median, print_table, write_results  # noqa: E402

PI = "examples/pi.py"
GOAL_SHARE = 0.02
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(server: ChidoriServer) -> tuple[float, float]:
    """The server process's own CPU so far (all its threads), and that of its children it has
    waited for (cutime + cstime: the drivers that ended, with what they waited for)."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return own, (int(fields[13]) + int(fields[14])) / TICKS  # cutime, cstime


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # the busy server's CPU over the job
    other_cpu_s: float  # the other (idle) server's CPU over the same window
    driver_cpu_s: float  # the driver's own CPU (reaped children of the busy server)


def idle_rate(windows: list[Run]) -> float:
    """A server's CPU seconds per second while idle: its CPU over the other's job windows."""
    return sum(r.other_cpu_s for r in windows) / sum(r.wall_s for r in windows)


def pi_run(server: ChidoriServer, idle: ChidoriServer, expect_progress: bool) -> Run:
    (cpu_before, children_before), (idle_before, _) = cpu_seconds(server), cpu_seconds(idle)
    started = time.perf_counter()
    job = server.submit(application=PI, name="bench-pi")
    done = server.wait(job["id"])
    elapsed = time.perf_counter() - started
    (cpu_after, children_after), (idle_after, _) = cpu_seconds(server), cpu_seconds(idle)
    if done["state"] != "SUCCEEDED":
        raise RuntimeError(f"job {job['id']} ended {done['state']}: {done['reason']}")
    if (done.get("progress") is not None) != expect_progress:
        raise RuntimeError(f"job {job['id']}: progress {done.get('progress')!r}")
    return Run(
        elapsed, cpu_after - cpu_before, idle_after - idle_before, children_after - children_before
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    loads = [load_average()]
    with (
        tempfile.TemporaryDirectory() as home_on,
        tempfile.TemporaryDirectory() as home_off,
        ChidoriServer(Path(home_on)) as on,
        ChidoriServer(Path(home_off), env={"CHIDORI_SPARK_PROGRESS": "0"}) as off,
    ):
        print("warming up (one run each, not counted)...", flush=True)
        on_runs = [pi_run(on, off, True)]
        off_runs = [pi_run(off, on, False)]
        pairs = []
        for round_ in range(args.rounds):
            if round_ % 2 == 0:
                with_progress = pi_run(on, off, True)
                without = pi_run(off, on, False)
            else:
                without = pi_run(off, on, False)
                with_progress = pi_run(on, off, True)
            loads.append(load_average())
            on_runs.append(with_progress)
            off_runs.append(without)
            pairs.append((without, with_progress))
            print(
                f"round {round_ + 1}: off {without.wall_s:.2f} s, server CPU {without.cpu_s:.2f} s;"
                f" on {with_progress.wall_s:.2f} s, server CPU {with_progress.cpu_s:.2f} s",
                flush=True,
            )
    # The "on" server idles while the "off" one runs its jobs, and the other way round.
    on_idle, off_idle = idle_rate(off_runs), idle_rate(on_runs)
    rows = []
    for round_, (without, with_progress) in enumerate(pairs):
        on_job = with_progress.cpu_s - on_idle * with_progress.wall_s
        off_job = without.cpu_s - off_idle * without.wall_s
        rows.append(
            {
                "round": round_ + 1,
                "off_s": without.wall_s,
                "on_s": with_progress.wall_s,
                "ratio": with_progress.wall_s / without.wall_s,
                "off_cpu_s": without.cpu_s,
                "on_cpu_s": with_progress.cpu_s,
                "off_job_cpu_s": off_job,
                "on_job_cpu_s": on_job,
                "extra_cpu_s": on_job - off_job,
                "extra_share": (on_job - off_job) / with_progress.wall_s,
                "off_driver_cpu_s": without.driver_cpu_s,
                "on_driver_cpu_s": with_progress.driver_cpu_s,
                "load_average": loads[round_ + 1],
            }
        )
    print()
    print_table(
        [
            "round",
            "off (s)",
            "on (s)",
            "ratio",
            "job's server CPU off (s)",
            "job's server CPU on (s)",
            "extra CPU (s)",
            "extra / on wall",
            "driver CPU off (s)",
            "driver CPU on (s)",
        ],
        [
            [
                r["round"],
                f"{r['off_s']:.2f}",
                f"{r['on_s']:.2f}",
                f"{r['ratio']:.3f}",
                f"{r['off_job_cpu_s']:.3f}",
                f"{r['on_job_cpu_s']:.3f}",
                f"{r['extra_cpu_s']:.3f}",
                f"{100 * r['extra_share']:.2f} %",
                f"{r['off_driver_cpu_s']:.2f}",
                f"{r['on_driver_cpu_s']:.2f}",
            ]
            for r in rows
        ],
    )
    ratio = median([r["ratio"] for r in rows])
    off_median = median([r["off_s"] for r in rows])
    on_median = median([r["on_s"] for r in rows])
    extra_median = median([r["extra_cpu_s"] for r in rows])
    share_median = median([r["extra_share"] for r in rows])
    share_max = max(r["extra_share"] for r in rows)
    driver_off = median([r["off_driver_cpu_s"] for r in rows])
    driver_on = median([r["on_driver_cpu_s"] for r in rows])
    print(
        f"\nwall time median: off {off_median:.2f} s, on {on_median:.2f} s, ratio {ratio:.3f}"
        f"\nextra server CPU per job: median {extra_median:.3f} s, "
        f"{100 * share_median:.2f} % of the job's wall time (largest {100 * share_max:.2f} %; "
        f"goal <= {100 * GOAL_SHARE:.0f} %: {'met' if share_max <= GOAL_SHARE else 'not met'})"
        f"\ndriver CPU per job (median): off {driver_off:.2f} s, on {driver_on:.2f} s, "
        f"ratio {driver_on / driver_off:.3f}"
        f"\nidle server CPU: on {1000 * on_idle:.1f} ms/s, off {1000 * off_idle:.1f} ms/s"
        f"\nload average (1 min) {min(loads):.1f} to {max(loads):.1f}"
    )
    path = write_results(
        "progress",
        {
            "rounds": rows,
            "median_ratio": ratio,
            "median_off_s": off_median,
            "median_on_s": on_median,
            "median_extra_cpu_s": extra_median,
            "median_extra_share": share_median,
            "idle_cpu_per_s": {"on": on_idle, "off": off_idle},
            "median_driver_cpu_s": {"on": driver_on, "off": driver_off},
            "runs": {"on": [asdict(r) for r in on_runs], "off": [asdict(r) for r in off_runs]},
            "max_extra_share": share_max,
            "load_average": [min(loads), max(loads)],
            "goal": {"ratio": 1 + GOAL_SHARE, "extra_share": GOAL_SHARE},
            "command": f"bench/progress.py --rounds {args.rounds}",
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
