"""Per-job Python environments, the pure part: what a requirement may say, the key of a
resolved environment, and what changed between two runs' packages.

A job names PEP 508 requirements; the server resolves them (chidori.host.environments) into
a lock, `name==version` lines, and the environment built from that lock is keyed by the lock,
the Python version and the platform.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

MAX_REQUIREMENTS = 256
MAX_REQUIREMENT_LENGTH = 1000
# Provided by the server's own Python: pinned to the server's versions when resolving and
# never installed into a job's environment, so a job cannot replace them.
SERVER_PROVIDED = frozenset({"pyspark", "py4j"})
# A job waiting for its environment is held out of admission by this `not_before`: the admit
# step reads only jobs whose `not_before` has passed, and no clock reaches it.
PREPARING_HOLD = datetime(9999, 1, 1, tzinfo=UTC)
PREPARING_REASON = "preparing its Python environment"
_LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def check_requirement(text: str) -> str:
    """One requirement, normalised (`Requirement`'s own spelling). Raises ValueError for
    anything that is not a plain PEP 508 requirement: pip options (`--index-url`, `-r`,
    `-e`), which would point the build elsewhere or read other files, and direct URL
    references (`name @ https://...`), which bypass the configured index."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty requirement")
    if len(stripped) > MAX_REQUIREMENT_LENGTH:
        raise ValueError(f"at most {MAX_REQUIREMENT_LENGTH} characters per requirement")
    if stripped.startswith("-"):
        raise ValueError(
            f"{stripped.split()[0]!r}: pip options are not allowed in requirements (the "
            "index is the server's)"
        )
    try:
        requirement = Requirement(stripped)
    except InvalidRequirement as exc:
        raise ValueError(f"{stripped!r} is not a PEP 508 requirement: {exc}") from exc
    if requirement.url:
        raise ValueError(
            f"{stripped!r}: direct URL references are not allowed (packages come from the "
            "server's index)"
        )
    return str(requirement)


def requirement_names(requirements: Iterable[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def parse_lock(lock: str) -> dict[str, str]:
    """{canonical name: version} of a resolved lock (`name==version` lines)."""
    found: dict[str, str] = {}
    for line in lock.splitlines():
        match = _LOCK_LINE.match(line.strip())
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def installable_lock(lock: str) -> str:
    """The lock without what the server's Python provides (SERVER_PROVIDED)."""
    kept = []
    for line in lock.splitlines():
        match = _LOCK_LINE.match(line.strip())
        if match and canonicalize_name(match.group(1)) in SERVER_PROVIDED:
            continue
        if line.strip() and not line.lstrip().startswith("#"):
            kept.append(line.strip())
    return "\n".join(kept) + "\n"


def environment_key(lock: str, python_version: str, platform: str) -> str:
    """The key of the environment built from `lock`: equal locks on the same Python and
    platform share one environment. Comments and order do not change it."""
    packages = parse_lock(lock)
    canonical = "\n".join(f"{name}=={packages[name]}" for name in sorted(packages))
    text = f"{python_version}\n{platform}\n{canonical}\n"
    return hashlib.sha256(text.encode()).hexdigest()


def package_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What changed from one run's packages to another's: "numpy 2.1.0 → 2.2.0",
    "+ tabulate 0.9.0", "- rich 13.0.0", sorted by name."""
    changes = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            changes.append(f"+ {name} {new}")
        elif new is None:
            changes.append(f"- {name} {old}")
        else:
            changes.append(f"{name} {old} → {new}")
    return changes


class EnvState(StrEnum):
    """Where a job's environment is: claimed by a server preparing it, ready, or failed."""

    PREPARING = "preparing"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class JobEnvironment:
    """A job's environment as the store records it."""

    job_id: int
    state: EnvState
    server_id: str
    env_key: str | None
    lock: str | None
    log: str | None

    @property
    def packages(self) -> dict[str, str]:
        return parse_lock(self.lock or "")


@dataclass(frozen=True)
class Environment:
    """A built environment as the store records it, with its use count (unfinished jobs
    that name it)."""

    key: str
    python: str
    platform: str
    packages: dict[str, str]
    size_bytes: int
    build_seconds: float
    built_by: str
    created_at: datetime
    last_used_at: datetime
    uses: int = 0


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNIT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size_bytes(text: str) -> int:
    """A disk budget: `0`, `500m`, `10g`, `1.5t` (powers of 1024). Raises ValueError."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size such as 0, 500m or 10g")
    return int(float(match.group(1)) * _UNIT[match.group(2).lower()])


# Where clients that can only send Spark conf (Livy, spark-submit to the Spark REST door,
# `--conf`) name a job's requirements: a JSON array, or one requirement a line.
REQUIREMENTS_CONF = "spark.chidori.requirements"


def requirements_from_conf(value: object) -> list[str]:
    """The requirements a `spark.chidori.requirements` value names. Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{REQUIREMENTS_CONF} must be a string (a JSON array, or lines)")
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{REQUIREMENTS_CONF}: not a JSON array: {exc}") from exc
        if not isinstance(parsed, list) or not all(isinstance(r, str) for r in parsed):
            raise ValueError(f"{REQUIREMENTS_CONF}: a JSON array of strings")
        return [r for r in parsed if r.strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class BaseEnvironment:
    """A named, pre-built set an admin keeps ("pre-installed" packages): jobs that name it
    (`environment: NAME`) start from its lock, and it is never pruned while it exists."""

    name: str
    requirements: list[str]
    lock: str
    env_key: str
    created_by: str
    created_at: datetime

    @property
    def packages(self) -> dict[str, str]:
        return parse_lock(self.lock)


def base_requirements(base_lock: str, own: Iterable[str]) -> list[str]:
    """What a job on a base environment resolves: the base's pins, then its own additions
    (a job that adds nothing gets exactly the base's environment)."""
    pins = [f"{name}=={version}" for name, version in sorted(parse_lock(base_lock).items())]
    return [*pins, *own]
