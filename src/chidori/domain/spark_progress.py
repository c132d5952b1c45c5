"""A Spark application's progress from its listener events (the event log's JSON lines), pure.

`ProgressTracker.feed` takes one decoded event at a time (what Spark's JsonProtocol writes:
`{"Event": "SparkListenerTaskEnd", ...}`) and `summary` answers the progress record of the
contract (docs/progress.md): counts of jobs, stages and tasks, and per stage its state, tasks,
times and bytes. The events come from a job's own files, so they are untrusted: anything not
shaped as expected is ignored, numbers are clamped, and memory is bounded (at most
`MAX_STAGES` stages and `MAX_JOBS` jobs are remembered; counts stay exact beyond that only for
what is remembered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_STAGES = 2000  # stages remembered; the oldest finished ones are forgotten first
MAX_JOBS = 2000
MAX_LISTED_STAGES = 500  # stages a summary lists (the newest)
MAX_NAME = 200  # characters of a stage name kept
_MAX_INT = 2**62


class StageState(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


COUNT_FIELDS = (
    "jobs_done",
    "jobs_total",
    "jobs_failed",
    "stages_done",
    "stages_total",
    "stages_active",
    "stages_failed",
    "tasks_done",
    "tasks_total",
    "tasks_failed",
)


def _int(value: object) -> int:
    """A non-negative int from an untrusted value (0 when it is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, min(int(value), _MAX_INT))


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class _Stage:
    stage_id: int
    attempt: int
    name: str = ""
    state: StageState = StageState.PENDING
    tasks_total: int = 0
    succeeded: set[int] = field(default_factory=set)  # task indexes that succeeded
    tasks_failed: int = 0
    submitted_at: int | None = None  # epoch milliseconds
    completed_at: int | None = None
    input_bytes: int = 0
    output_bytes: int = 0
    shuffle_read_bytes: int = 0
    shuffle_write_bytes: int = 0
    spill_bytes: int = 0

    @property
    def tasks_done(self) -> int:
        return min(len(self.succeeded), self.tasks_total) if self.tasks_total else 0

    def listed(self) -> dict[str, Any]:
        duration = None
        if self.submitted_at is not None and self.completed_at is not None:
            duration = max(0, self.completed_at - self.submitted_at)
        return {
            "stage_id": self.stage_id,
            "attempt": self.attempt,
            "name": self.name,
            "state": self.state.value,
            "tasks_done": self.tasks_done,
            "tasks_total": self.tasks_total,
            "tasks_failed": self.tasks_failed,
            "submitted_at": self.submitted_at,
            "completed_at": self.completed_at,
            "duration_ms": duration,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "shuffle_read_bytes": self.shuffle_read_bytes,
            "shuffle_write_bytes": self.shuffle_write_bytes,
            "spill_bytes": self.spill_bytes,
        }


@dataclass
class _Job:
    stage_ids: list[int]
    state: str = "RUNNING"  # RUNNING | SUCCEEDED | FAILED


class ProgressTracker:
    """Folds listener events into a summary. `ignore_jobs_before_ms`: jobs submitted before
    this time (a warm driver's warm-up, before its job was handed over) and their stages are
    left out."""

    def __init__(self, ignore_jobs_before_ms: int = 0) -> None:
        self._since = ignore_jobs_before_ms
        self._stages: dict[tuple[int, int], _Stage] = {}
        self._jobs: dict[int, _Job] = {}
        self._ignored_stages: set[int] = set()
        self._nothing_to_forget = False  # full of unfinished stages: no use looking again
        self.events = 0  # events taken into account

    def feed(self, event: object) -> bool:
        """Take one event into account; returns whether it changed anything."""
        if not isinstance(event, dict):
            return False
        handler = _HANDLERS.get(str(event.get("Event")))
        if handler is None:
            return False
        changed = handler(self, event)
        if changed:
            self.events += 1
        return changed

    # ---- events -------------------------------------------------------------------------------

    def _job_start(self, event: dict[str, Any]) -> bool:
        job_id = _int(event.get("Job ID"))
        infos = [i for i in event.get("Stage Infos") or [] if isinstance(i, dict)][:MAX_STAGES]
        stage_ids = [_int(i.get("Stage ID")) for i in infos]
        if _int(event.get("Submission Time")) < self._since:
            self._ignored_stages.update(stage_ids[:MAX_STAGES])
            return False
        if job_id in self._jobs or len(self._jobs) >= MAX_JOBS:
            return False
        self._jobs[job_id] = _Job(stage_ids)
        for info in infos:
            stage = self._stage(info.get("Stage ID"), info.get("Stage Attempt ID"))
            if stage is not None:
                self._describe(stage, info)
        return True

    def _job_end(self, event: dict[str, Any]) -> bool:
        job = self._jobs.get(_int(event.get("Job ID")))
        if job is None or job.state != "RUNNING":
            return False
        result = _dict(event.get("Job Result")).get("Result")
        job.state = "SUCCEEDED" if result == "JobSucceeded" else "FAILED"
        for stage in self._stages.values():
            if stage.stage_id in job.stage_ids and stage.state is StageState.PENDING:
                stage.state = StageState.SKIPPED  # a job that ends never runs it
        return True

    def _stage_submitted(self, event: dict[str, Any]) -> bool:
        info = _dict(event.get("Stage Info"))
        stage = self._stage(info.get("Stage ID"), info.get("Stage Attempt ID"))
        if stage is None:
            return False
        self._describe(stage, info)
        if stage.state in (StageState.PENDING, StageState.SKIPPED):
            stage.state = StageState.ACTIVE
        stage.submitted_at = _int(info.get("Submission Time")) or stage.submitted_at
        return True

    def _stage_completed(self, event: dict[str, Any]) -> bool:
        info = _dict(event.get("Stage Info"))
        stage = self._stage(info.get("Stage ID"), info.get("Stage Attempt ID"))
        if stage is None:
            return False
        self._describe(stage, info)
        stage.state = StageState.FAILED if info.get("Failure Reason") else StageState.COMPLETE
        stage.submitted_at = _int(info.get("Submission Time")) or stage.submitted_at
        stage.completed_at = _int(info.get("Completion Time")) or None
        self._nothing_to_forget = False
        return True

    def _task_end(self, event: dict[str, Any]) -> bool:
        stage = self._stage(event.get("Stage ID"), event.get("Stage Attempt ID"), known=True)
        if stage is None:
            return False
        info = _dict(event.get("Task Info"))
        reason = _dict(event.get("Task End Reason")).get("Reason")
        if reason == "Success" and not info.get("Failed"):
            if len(stage.succeeded) < max(stage.tasks_total, 1):
                stage.succeeded.add(_int(info.get("Index")))
        elif reason != "TaskKilled" and not info.get("Killed"):
            stage.tasks_failed += 1
        metrics = _dict(event.get("Task Metrics"))
        stage.input_bytes += _int(_dict(metrics.get("Input Metrics")).get("Bytes Read"))
        stage.output_bytes += _int(_dict(metrics.get("Output Metrics")).get("Bytes Written"))
        read = _dict(metrics.get("Shuffle Read Metrics"))
        stage.shuffle_read_bytes += _int(read.get("Remote Bytes Read")) + _int(
            read.get("Local Bytes Read")
        )
        written = _dict(metrics.get("Shuffle Write Metrics"))
        stage.shuffle_write_bytes += _int(written.get("Shuffle Bytes Written"))
        stage.spill_bytes += _int(metrics.get("Disk Bytes Spilled"))
        return True

    # ---- stages -------------------------------------------------------------------------------

    def _stage(self, stage_id: object, attempt: object, known: bool = False) -> _Stage | None:
        key = (_int(stage_id), _int(attempt))
        if key[0] in self._ignored_stages:
            return None
        stage = self._stages.get(key)
        if stage is None and not known:
            if len(self._stages) >= MAX_STAGES:
                self._forget_old_stages()
                if len(self._stages) >= MAX_STAGES:
                    self._nothing_to_forget = True
                    return None
            stage = self._stages[key] = _Stage(*key)
        return stage

    @staticmethod
    def _describe(stage: _Stage, info: dict[str, Any]) -> None:
        name = info.get("Stage Name")
        if isinstance(name, str) and name:
            stage.name = name[:MAX_NAME]
        stage.tasks_total = _int(info.get("Number of Tasks")) or stage.tasks_total

    def _forget_old_stages(self) -> None:
        """At the cap, forget the oldest finished stages (a long application's history), a
        tenth of the cap at a time so that the scan is rare."""
        if self._nothing_to_forget:
            return
        excess = len(self._stages) - MAX_STAGES + MAX_STAGES // 10
        finished = (StageState.COMPLETE, StageState.FAILED, StageState.SKIPPED)
        for key in [k for k, s in self._stages.items() if s.state in finished][:excess]:
            del self._stages[key]

    # ---- the summary --------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """The contract's counts (`*_total`: known so far; tasks over the stages started)."""
        stages = self._stages.values()
        started = [s for s in stages if s.state not in (StageState.PENDING, StageState.SKIPPED)]
        return {
            "jobs_done": sum(1 for j in self._jobs.values() if j.state == "SUCCEEDED"),
            "jobs_total": len(self._jobs),
            "jobs_failed": sum(1 for j in self._jobs.values() if j.state == "FAILED"),
            "stages_done": sum(1 for s in stages if s.state is StageState.COMPLETE),
            "stages_total": len(self._stages),
            "stages_active": sum(1 for s in stages if s.state is StageState.ACTIVE),
            "stages_failed": sum(1 for s in stages if s.state is StageState.FAILED),
            "tasks_done": sum(s.tasks_done for s in started),
            "tasks_total": sum(s.tasks_total for s in started),
            "tasks_failed": sum(s.tasks_failed for s in stages),
        }

    def stages(self) -> list[dict[str, Any]]:
        """The newest stages (by id, then attempt), oldest first, at most MAX_LISTED_STAGES."""
        ordered = sorted(self._stages.values(), key=lambda s: (s.stage_id, s.attempt))
        return [s.listed() for s in ordered[-MAX_LISTED_STAGES:]]


_HANDLERS = {
    "SparkListenerJobStart": ProgressTracker._job_start,
    "SparkListenerJobEnd": ProgressTracker._job_end,
    "SparkListenerStageSubmitted": ProgressTracker._stage_submitted,
    "SparkListenerStageCompleted": ProgressTracker._stage_completed,
    "SparkListenerTaskEnd": ProgressTracker._task_end,
}
