"""What the metrics read from the store at scrape time: four grouped counts in one read
transaction (jobs by state and cluster, queued jobs per queue, warm drivers, live replicas)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from chidori.domain.states import JobState
from chidori.observe.metrics_gauges import StoreSnapshot
from chidori.store.database import Database
from chidori.store.models import JobRow, ServerRow, WarmDriverRow


def read_store_gauges(db: Database, lease_seconds: float) -> StoreSnapshot:
    """A replica is live while it is not stopped and its heartbeat is younger than a lease."""
    since = db.now() - timedelta(seconds=lease_seconds)
    with db.reading() as session:
        jobs = session.execute(
            select(JobRow.state, JobRow.cluster, func.count()).group_by(
                JobRow.state, JobRow.cluster
            )
        ).all()
        queued = session.execute(
            select(JobRow.queue, func.count())
            .where(JobRow.state == JobState.QUEUED.value)
            .group_by(JobRow.queue)
        ).all()
        warm = session.execute(
            select(WarmDriverRow.cluster, WarmDriverRow.state, func.count()).group_by(
                WarmDriverRow.cluster, WarmDriverRow.state
            )
        ).all()
        live = session.execute(
            select(func.count())
            .select_from(ServerRow)
            .where(ServerRow.stopped_at.is_(None), ServerRow.heartbeat_at >= since)
        ).scalar()
    return StoreSnapshot(
        jobs={(state, cluster): n for state, cluster, n in jobs},
        queued={queue: n for queue, n in queued},
        warm_drivers={(cluster, state): n for cluster, state, n in warm},
        live_replicas=int(live or 0),
    )
