"""Per-job Python environments: what preparing one costs, and what it adds to a job.

1. Preparation (the builder itself, no server), for a small set of pure-Python packages:
   - a cold miss (empty uv cache, nothing built), a miss with a warm uv cache (nothing built),
     and a hit (built already): resolution + build or lookup, p50 over `--rounds`;
   - the same with pip (`pip install --target`, resolving as it installs): cold (no cache)
     and warm (its cache kept), side by side.
2. Jobs through a server: a `kind: python` job without requirements and the same job (the
   same script) with requirements whose environment is built already (a hit), submit ->
   SUCCEEDED measured by the client, in interleaved rounds (the order alternates); the median
   ratio, and the hit's preparation (submission -> environment ready, from the job's events).

Downloads from PyPI (the packages below, a few hundred KB).

    .venv/bin/python bench/envs.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import ChidoriServer  # noqa: E402

from bench.common import median, print_table, write_results  # noqa: E402
from chidori.config.environments import EnvironmentsConfig  # noqa: E402
from chidori.host.environments.builder import EnvironmentBuilder  # noqa: E402

PACKAGES = ["tabulate==0.9.0", "python-dateutil==2.9.0.post0", "idna==3.10", "toolz==1.0.0"]
JOB = "import dateutil, idna, tabulate, toolz\nprint('ok')\n"
PLAIN_JOB = "print('ok')\n"


def builder_in(root: Path, cache: Path, reuse_seconds: float = 600.0) -> EnvironmentBuilder:
    config = EnvironmentsConfig(
        directory=root / "envs", uv_cache_dir=cache, resolve_reuse_seconds=reuse_seconds
    )
    builder = EnvironmentBuilder(config, os.environ)
    builder.prepare_directory()
    return builder


def prepare(builder: EnvironmentBuilder) -> tuple[float, bool]:
    started = time.perf_counter()
    built = builder.ensure(builder.resolve(PACKAGES).lock)
    return time.perf_counter() - started, built.hit


def uv_rounds(rounds: int, scratch: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {
        "uv cold miss": [],
        "uv warm miss": [],
        "uv hit, resolver run": [],
        "uv hit, lock reused": [],
    }
    for index in range(rounds):
        cache = scratch / f"uv-cache-{index}"
        cold = builder_in(scratch / f"cold-{index}", cache, reuse_seconds=0)
        seconds, hit = prepare(cold)
        assert not hit
        found["uv cold miss"].append(seconds)
        # The same uv cache, nothing built, the resolver run each time.
        warm = builder_in(scratch / f"warm-{index}", cache, reuse_seconds=0)
        seconds, hit = prepare(warm)
        assert not hit
        found["uv warm miss"].append(seconds)
        seconds, hit = prepare(warm)
        assert hit
        found["uv hit, resolver run"].append(seconds)
        reusing = builder_in(scratch / f"warm-{index}", cache)  # the default: locks reused
        prepare(reusing)
        seconds, hit = prepare(reusing)
        assert hit
        found["uv hit, lock reused"].append(seconds)
    return found


def pip_install(target: Path, cache: Path | None) -> float:
    argv = [sys.executable, "-m", "pip", "install", "--isolated", "--quiet", "--target"]
    argv += [str(target), "--index-url", "https://pypi.org/simple", *PACKAGES]
    argv += ["--cache-dir", str(cache)] if cache is not None else ["--no-cache-dir"]
    cert = os.environ.get("SSL_CERT_FILE")
    if cert:
        argv += ["--cert", cert]
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def pip_rounds(rounds: int, scratch: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"pip cold": [], "pip warm": []}
    for index in range(rounds):
        found["pip cold"].append(pip_install(scratch / f"pip-cold-{index}", None))
        cache = scratch / f"pip-cache-{index}"
        pip_install(scratch / f"pip-fill-{index}", cache)
        found["pip warm"].append(pip_install(scratch / f"pip-warm-{index}", cache))
    return found


def upload(server: ChidoriServer, name: str, text: str) -> str:
    with server.client() as client:
        response = client.post("/api/v1/uploads", files={"file": (name, text.encode())})
    response.raise_for_status()
    uri: str = response.json()["uri"]
    return uri


def job_seconds(server: ChidoriServer, app: str, requirements: list[str]) -> tuple[float, float]:
    """(submit -> SUCCEEDED, submission -> environment ready or 0.0)."""
    started = time.perf_counter()
    job = server.submit(kind="python", application=app, requirements=requirements)
    done = server.wait(job["id"])
    elapsed = time.perf_counter() - started
    if done["state"] != "SUCCEEDED":
        raise RuntimeError(f"job {job['id']} ended {done['state']}: {done['reason']}")
    if not requirements:
        return elapsed, 0.0
    with server.client() as client:
        events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    queued = next(e["time"] for e in events if e["state"] == "QUEUED")
    ready = next(e["time"] for e in events if e["type"] == "environment")
    prepared = datetime.fromisoformat(ready) - datetime.fromisoformat(queued)
    return elapsed, prepared.total_seconds()


def job_rounds(rounds: int, scratch: Path) -> list[dict[str, Any]]:
    rows = []
    with ChidoriServer(scratch / "home") as server:
        # The same script both ways: what the environment adds, not what importing costs.
        with_env = upload(server, "with_env.py", PLAIN_JOB)
        plain = upload(server, "plain.py", PLAIN_JOB)
        # Builds the environment and checks that its packages import: not counted.
        job_seconds(server, upload(server, "imports.py", JOB), PACKAGES)
        job_seconds(server, plain, [])
        for index in range(rounds):
            if index % 2 == 0:
                hit, prepared = job_seconds(server, with_env, PACKAGES)
                without, _ = job_seconds(server, plain, [])
            else:
                without, _ = job_seconds(server, plain, [])
                hit, prepared = job_seconds(server, with_env, PACKAGES)
            rows.append(
                {"round": index + 1, "plain_s": without, "hit_s": hit, "prepared_s": prepared}
            )
            print(
                f"round {index + 1}: plain {without:.2f} s, with a cached environment "
                f"{hit:.2f} s (ready {prepared:.3f} s after submission)",
                flush=True,
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="chidori-bench-envs-"))
    try:
        timings = uv_rounds(args.rounds, scratch)
        timings.update(pip_rounds(args.rounds, scratch))
        print()
        print_table(
            ["preparation", "p50 (s)", "min (s)", "max (s)"],
            [
                [name, f"{median(v):.3f}", f"{min(v):.3f}", f"{max(v):.3f}"]
                for name, v in timings.items()
            ],
        )
        print()
        rows = job_rounds(args.rounds, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratio = median([r["hit_s"] / r["plain_s"] for r in rows])
    plain = median([r["plain_s"] for r in rows])
    hit = median([r["hit_s"] for r in rows])
    prepared = median([r["prepared_s"] for r in rows])
    print(
        f"\njobs, median: plain {plain:.2f} s, cached environment {hit:.2f} s, ratio "
        f"{ratio:.2f}; environment ready {prepared:.3f} s after submission"
    )
    path = write_results(
        "envs",
        {
            "packages": PACKAGES,
            "preparation_p50_s": {name: median(v) for name, v in timings.items()},
            "preparation_s": timings,
            "job_rounds": rows,
            "job_median_ratio": ratio,
            "job_median_plain_s": plain,
            "job_median_hit_s": hit,
            "hit_prepared_median_s": prepared,
            "goals": {"hit_p50_s": 0.1, "warm_miss_s": 5.0},
            "command": "bench/envs.py",
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
