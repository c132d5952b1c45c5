"""The rules of remote clusters that need no service: their settings (no secret in the file,
credentials from the environment or a file), Livy's state table, the attempt's idempotency
key, and where a quota refusal sends a job (waiting, with backoff, not a failure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chidori.backends.livy import LIVY_STATES, livy_state
from chidori.backends.remote import RemoteState, idempotency_key
from chidori.backends.remote_factory import open_remote_backends
from chidori.config import ConfigError, _cluster
from chidori.domain.errors import BackendError
from chidori.domain.lifecycle import deferred_backoff, next_state
from chidori.domain.records import Job, Outcome
from chidori.domain.spec import JobSpec
from chidori.domain.states import AttemptState, JobState

# Livy's SessionState names (org.apache.livy.sessions.SessionState), each one mapped.
LIVY_SESSION_STATES = {
    "not_started", "starting", "recovering", "idle", "running", "busy", "shutting_down",
    "error", "dead", "killed", "success",
}  # fmt: skip


def test_every_livy_state_is_mapped_and_an_unknown_one_is_refused() -> None:
    assert set(LIVY_STATES) == LIVY_SESSION_STATES
    assert livy_state("success") is RemoteState.SUCCEEDED
    assert livy_state("dead") is livy_state("error") is RemoteState.FAILED
    assert livy_state("killed") is RemoteState.CANCELLED
    with pytest.raises(BackendError, match="unknown batch state 'zombie'"):
        livy_state("zombie")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"url": "https://x/livy", "password": "hunter2"}, "does not go in the config file"),
        ({"url": "https://x/livy", "token": "t"}, "does not go in the config file"),
        ({"url": "ftp://x"}, "http"),
        ({"url": "https://user:pw@x/livy"}, "credentials"),
        ({"url": "https://x", "password_env": "A", "token_env": "B"}, "name one"),
        ({"url": "https://x", "poll_seconds": 0}, "poll_seconds"),
        ({"url": "https://x", "surprise": 1}, "surprise"),
    ],
)
def test_a_livy_cluster_refuses_bad_settings(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cluster("hdi", {"type": "livy", **raw})


def test_credentials_come_from_the_named_variable_or_file(tmp_path: Path) -> None:
    cluster = _cluster(
        "hdi", {"type": "livy", "url": "https://x.example/", "path_prefix": "/livy/",
                "username": "admin", "password_env": "HDI_PW"},
    )  # fmt: skip
    assert cluster.master == "https://x.example/livy"
    with pytest.raises(ConfigError, match="HDI_PW, which is not set"):
        open_remote_backends({"hdi": cluster}, {})
    assert set(open_remote_backends({"hdi": cluster}, {"HDI_PW": "s3cret"})) == {"hdi"}
    token_file = tmp_path / "token"
    token_file.write_text("abc\n")
    with_file = _cluster(
        "emr", {"type": "livy", "url": "https://emr", "token_file": str(token_file)}
    )
    assert with_file.remote is not None
    assert with_file.remote.secret({}, "token") == "abc"
    assert "abc" not in repr(with_file) and "s3cret" not in repr(cluster)


def _job(job_id: int, created: datetime) -> Job:
    spec = JobSpec(application="hdfs:///apps/pi.py")
    return Job(
        job_id, "j", JobState.ADMITTED, spec, "o", None, created, created,
        None, None, None, 1, None, None, None, False,
    )  # fmt: skip


def test_the_idempotency_key_is_one_per_attempt_and_the_same_on_every_replica() -> None:
    created = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    key = idempotency_key(_job(5, created), 1)
    assert key == idempotency_key(_job(5, created), 1)
    assert key.startswith("chidori-5-1-") and len(key) <= 64  # Databricks: at most 64
    assert key != idempotency_key(_job(5, created), 2)
    assert key != idempotency_key(_job(5, created + timedelta(seconds=1)), 1)  # another Chidori


def test_a_quota_refusal_waits_again_without_counting_as_a_failure() -> None:
    refused = Outcome(AttemptState.FAILED, "livy refused for quota (429)", deferred=True)
    step = next_state(refused, False, failed=0, lost=0, max_retries=0, lost_retry_limit=3)
    assert step.state is JobState.QUEUED and step.failed == 0 and step.lost == 0
    assert step.reason == "waiting: livy refused for quota (429)"
    cancelled = next_state(refused, True, failed=0, lost=0, max_retries=0, lost_retry_limit=3)
    assert cancelled.state is JobState.CANCELLED
    assert [deferred_backoff(n).total_seconds() for n in (1, 2, 3, 10)] == [5, 10, 20, 300]
