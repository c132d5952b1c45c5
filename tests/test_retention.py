"""Retention: old uploads no job uses and logs of long-ended jobs go; the rest stays."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from chidori.domain.spec import JobSpec
from chidori.host.retention import Retention, Swept
from chidori.storage.artifacts import upload_key
from chidori.storage.blobs import DirectoryBlobs
from chidori.store import JobRepository
from chidori.store.database import Database


def test_a_sweep_keeps_what_jobs_still_need(store: Database, tmp_path: Path) -> None:
    blobs = DirectoryBlobs(tmp_path / "shared", shared=True)
    uploads, logs = tmp_path / "artifacts", tmp_path / "logs"
    used, unused = ("a" * 64, "app.py"), ("b" * 64, "old.py")
    for sha, name in (used, unused):
        blobs.put_bytes(upload_key(sha, name), b"print(1)\n")
        (uploads / sha).mkdir(parents=True)
        (uploads / sha / name).write_text("print(1)\n")
    queued, _ = JobRepository(store).create_job(
        JobSpec.model_validate({"kind": "python", "application": f"upload://{used[0]}/app.py"}),
        owner="alice",
    )
    gone_job = queued.id + 1000  # a job that no longer exists
    for job_id in (queued.id, gone_job):
        blobs.put_bytes(f"logs/{job_id}/1/0000000000000000", b"log\n")
        (logs / str(job_id)).mkdir(parents=True)
        (logs / str(job_id) / "attempt-1.log").write_text("log\n")
    retention = Retention(store, blobs, uploads, logs, days=30)
    assert retention.sweep(store.now() + timedelta(days=1)) == Swept(0, 0)  # nothing old yet
    swept = retention.sweep(store.now() + timedelta(days=31))
    assert (swept.uploads, swept.logs) == (1, 1)
    assert blobs.size(upload_key(*used)) is not None and (uploads / used[0] / "app.py").exists()
    assert blobs.size(upload_key(*unused)) is None and not (uploads / unused[0]).exists()
    assert [i.key for i in blobs.list("logs/")] == [f"logs/{queued.id}/1/0000000000000000"]
    assert (logs / str(queued.id)).exists() and not (logs / str(gone_job)).exists()
