"""The jobs list query (chidori.store.job_list) on SQLite and PostgreSQL: date ranges paged on
(created_at, id), free text through the trigram indexes (same answers as a scan), and plans
that use those indexes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, insert, text, update

from chidori.domain.records import Job, JobQuery
from chidori.domain.spec import JobSpec
from chidori.domain.states import JobState
from chidori.store import Database, Repositories, open_database
from chidori.store.job_list import list_jobs
from chidori.store.models import JobRow

START = datetime(2026, 3, 1, tzinfo=UTC)

NAMES = [
    "Nightly ETL load",
    "nightly_etl",
    "NIGHTLY-etl backfill",
    "100% done",
    "100 percent",
    "a_b",
    "axb",
    "a%b",
    "back\\slash",
    'say "hi" now',
    "Überlauf Daten",
    "überlauf klein",
    "数据加载任务",
    "数据",
    "job 42",
    "sales.orders load 17",
    "sales.orders load 170",
]
SEARCHES = [
    "nightly",
    "NIGHTLY",
    "etl",
    "ETL l",
    "ly_e",
    "_",
    "a_b",
    "a_",
    "%",
    "0%",
    "100%",
    "a%b",
    "\\",
    "k\\s",
    '"hi"',
    '"',
    "Über",
    "über",
    "berlauf",
    "数据",
    "数据加",
    "据",
    "42",
    "load 17",
    "s.o",
    "x",
    "no such thing",
]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repos(store_url: str, clock: Clock) -> Iterator[Repositories]:
    db = open_database(store_url, clock)
    db.migrate()
    yield Repositories.of(db)
    db.dispose()


def submit(repos: Repositories, name: str, owner: str = "alice", **fields: Any) -> Job:
    spec = JobSpec.model_validate({"application": "app.py", "name": name, **fields})
    job, created = repos.jobs.create_job(spec, owner)
    assert created
    return job


def ids(jobs: list[Job]) -> list[int]:
    return [job.id for job in jobs]


def every_page(db: Database, query: JobQuery) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor = query.before_id
    while True:
        page = list_jobs(db, JobQuery(**{**query.__dict__, "before_id": cursor}))
        pages.append(ids(page.items))
        if page.next_before_id is None:
            return pages
        cursor = page.next_before_id
        assert len(pages) < 100


def db_lower(db: Database, value: str) -> str:
    """The database's own lower(): the search folds case as it does."""
    with db.reading() as session:
        return str(session.scalar(text("SELECT lower(:v)"), {"v": value}))


# Date ranges -------------------------------------------------------------------------------


@pytest.fixture
def timed(repos: Repositories, clock: Clock) -> list[Job]:
    jobs = []
    for n in range(40):
        clock.now = START + timedelta(minutes=n // 3)
        jobs.append(submit(repos, f"timed {n}", owner="alice" if n % 2 else "bob"))
    return jobs


@pytest.mark.parametrize("oldest_first", [False, True])
@pytest.mark.parametrize("limit", [1, 4, 7, 50])
def test_date_range_pages_cover_the_range_once_in_order(
    repos: Repositories, timed: list[Job], oldest_first: bool, limit: int
) -> None:
    after, before = START + timedelta(minutes=2), START + timedelta(minutes=11)
    expected = sorted(
        (j for j in timed if after <= j.created_at < before),
        key=lambda j: (j.created_at, j.id),
        reverse=not oldest_first,
    )
    query = JobQuery(
        created_after=after, created_before=before, limit=limit, oldest_first=oldest_first
    )
    pages = every_page(repos.db, query)
    assert [i for page in pages for i in page] == ids(expected)
    assert all(len(page) == limit for page in pages[:-1]) and 0 < len(pages[-1]) <= limit


@pytest.mark.parametrize(
    "bounds",
    [(2, None), (None, 5), (3, 4), (20, 30)],
    ids=["after only", "before only", "one minute", "empty"],
)
def test_open_and_empty_ranges(
    repos: Repositories, timed: list[Job], bounds: tuple[int | None, int | None]
) -> None:
    after = None if bounds[0] is None else START + timedelta(minutes=bounds[0])
    before = None if bounds[1] is None else START + timedelta(minutes=bounds[1])
    expected = [
        j.id
        for j in reversed(timed)
        if (after is None or j.created_at >= after) and (before is None or j.created_at < before)
    ]
    pages = every_page(repos.db, JobQuery(created_after=after, created_before=before, limit=5))
    assert [i for page in pages for i in page] == expected


def test_date_range_cursor_survives_its_row_deleted(repos: Repositories, timed: list[Job]) -> None:
    query = JobQuery(created_after=START, created_before=START + timedelta(hours=1), limit=5)
    first = list_jobs(repos.db, query)
    assert first.next_before_id is not None
    with repos.db.writing() as session:
        session.execute(delete(JobRow).where(JobRow.id == first.next_before_id))
    rest = every_page(repos.db, JobQuery(**{**query.__dict__, "before_id": first.next_before_id}))
    assert [i for page in rest for i in page] == ids(list(reversed(timed)))[5:]
    oldest = JobQuery(**{**query.__dict__, "oldest_first": True, "before_id": timed[4].id})
    with repos.db.writing() as session:
        session.execute(delete(JobRow).where(JobRow.id == timed[4].id))
    later = every_page(repos.db, oldest)
    gone = {first.next_before_id, timed[4].id}
    assert [i for page in later for i in page] == [j.id for j in timed[5:] if j.id not in gone]
    beyond = JobQuery(**{**query.__dict__, "before_id": 1, "oldest_first": False})
    assert list_jobs(repos.db, beyond).items == []


def test_a_cursor_from_before_a_date_filter_is_applied_after_it(
    repos: Repositories, timed: list[Job]
) -> None:
    """The cursor stays an id: the same one works with or without a date range."""
    cursor = timed[20].id
    query = JobQuery(created_after=START, before_id=cursor, limit=100)
    assert ids(list_jobs(repos.db, query).items) == ids(timed[:20])[::-1]
    assert (
        ids(list_jobs(repos.db, JobQuery(before_id=cursor, limit=100)).items)
        == ids(timed[:20])[::-1]
    )


def test_date_range_with_other_filters(repos: Repositories, timed: list[Job]) -> None:
    after, before = START + timedelta(minutes=1), START + timedelta(minutes=9)
    repos.jobs.request_cancel(timed[5].id, "alice")
    repos.jobs.request_cancel(timed[6].id, "alice")
    repos.jobs.request_cancel(timed[30].id, "alice")
    query = JobQuery(created_after=after, created_before=before, states=(JobState.CANCELLED,))
    assert ids(list_jobs(repos.db, query).items) == [timed[6].id, timed[5].id]
    mine = JobQuery(created_after=after, created_before=before, owner="alice", text="timed 1")
    expected = [
        j.id
        for j in reversed(timed)
        if after <= j.created_at < before and j.owner == "alice" and "timed 1" in j.name
    ]
    assert ids(list_jobs(repos.db, mine).items) == expected and expected


# Free text ---------------------------------------------------------------------------------


@pytest.fixture
def named(repos: Repositories) -> list[Job]:
    return [submit(repos, name, owner="alice" if n % 2 else "bob") for n, name in enumerate(NAMES)]


def expected_matches(db: Database, jobs: list[Job], search: str) -> list[int]:
    folded = db_lower(db, search)
    found = [
        j.id
        for j in jobs
        if folded in db_lower(db, j.name)
        or (search.isascii() and search.isdigit() and j.id == int(search))
    ]
    return found[::-1]


@pytest.mark.parametrize("search", SEARCHES)
def test_text_is_a_case_insensitive_literal_substring(
    repos: Repositories, named: list[Job], search: str
) -> None:
    found = ids(list_jobs(repos.db, JobQuery(text=search, limit=100)).items)
    assert found == expected_matches(repos.db, named, search)


def test_text_answers_by_hand(repos: Repositories, named: list[Job]) -> None:
    by_name = {j.name: j.id for j in named}

    def names(search: str, **fields: Any) -> set[str]:
        page = list_jobs(repos.db, JobQuery(text=search, limit=100, **fields))
        return {j.name for j in page.items}

    assert names("NIGHTLY") == {"Nightly ETL load", "nightly_etl", "NIGHTLY-etl backfill"}
    assert names("a_b") == {"a_b"}  # `_` is no wildcard
    assert names("a_") == {"a_b"}
    assert names("a%b") == {"a%b"}  # nor is `%`
    assert names("0%") == {"100% done"}
    assert names("k\\s") == {"back\\slash"}
    assert names('"hi"') == {'say "hi" now'}
    # The exact case always matches; other cases of non-ASCII letters as the database folds
    # them (SQLite: ASCII letters only).
    folds = repos.db.dialect == "postgresql"
    assert names("Über") == ({"Überlauf Daten", "überlauf klein"} if folds else {"Überlauf Daten"})
    assert names("berlauf") == {"Überlauf Daten", "überlauf klein"}
    assert names("数据") == {"数据加载任务", "数据"}
    assert names("数据加") == {"数据加载任务"}
    assert names("load 17") == {"sales.orders load 17", "sales.orders load 170"}
    assert names("etl", owner="alice") == {"nightly_etl"}
    assert names("etl", oldest_first=True) == names("etl")
    oldest = list_jobs(repos.db, JobQuery(text="etl", oldest_first=True)).items
    assert ids(oldest) == sorted(ids(oldest))
    by_id = list_jobs(repos.db, JobQuery(text=str(by_name["a%b"]))).items
    assert by_name["a%b"] in ids(by_id)


def test_text_searches_page_through_the_matches(repos: Repositories, named: list[Job]) -> None:
    extra = [submit(repos, f"paged search {n}") for n in range(11)]
    for search in ("paged search", "pa", "PAGED SEARCH 1"):
        expected = expected_matches(repos.db, named + extra, search)
        for oldest_first in (False, True):
            query = JobQuery(text=search, limit=3, oldest_first=oldest_first)
            pages = every_page(repos.db, query)
            want = expected[::-1] if oldest_first else expected
            assert [i for page in pages for i in page] == want


def test_a_nul_in_the_text_is_searched_for_not_an_error(
    repos: Repositories, named: list[Job]
) -> None:
    if repos.db.dialect == "postgresql":
        pytest.skip("PostgreSQL refuses NUL in any text")
    assert list_jobs(repos.db, JobQuery(text="nightly\x00etl")).items == []


def test_digits_find_the_job_by_id_and_by_name(repos: Repositories, named: list[Job]) -> None:
    for job in named:
        found = ids(list_jobs(repos.db, JobQuery(text=str(job.id), limit=100)).items)
        assert job.id in found
        assert found == expected_matches(repos.db, named, str(job.id))
    assert list_jobs(repos.db, JobQuery(text="9" * 30)).items == []  # past any id


def test_text_index_follows_inserts_renames_and_deletes(
    repos: Repositories, named: list[Job]
) -> None:
    target = named[0]
    with repos.db.writing() as session:
        session.execute(update(JobRow).where(JobRow.id == target.id).values(name="Renamed Zebra"))
    assert ids(list_jobs(repos.db, JobQuery(text="zebra")).items) == [target.id]
    assert target.id not in ids(list_jobs(repos.db, JobQuery(text="Nightly ETL")).items)
    with repos.db.writing() as session:
        session.execute(delete(JobRow).where(JobRow.id == target.id))
    assert list_jobs(repos.db, JobQuery(text="zebra")).items == []
    late = submit(repos, "late comer")
    assert ids(list_jobs(repos.db, JobQuery(text="te com")).items) == [late.id]


def test_jobs_stored_before_the_migration_are_searchable(store_url: str) -> None:
    db = open_database(store_url)
    try:
        db.migrate("0011")
        with db.writing() as session:
            session.execute(insert(JobRow), [row(n, f"legacy job {n}") for n in range(5)])
        db.migrate()
        found = list_jobs(db, JobQuery(text="LEGACY JOB 3")).items
        assert [j.name for j in found] == ["legacy job 3"]
    finally:
        db.dispose()


def test_search_without_the_text_index_scans_with_the_same_answers(
    repos: Repositories, named: list[Job]
) -> None:
    before = {s: ids(list_jobs(repos.db, JobQuery(text=s, limit=100)).items) for s in SEARCHES}
    with repos.db.writing() as session:
        if repos.db.dialect == "sqlite":
            for trigger in ("jobs_fts_insert", "jobs_fts_delete", "jobs_fts_update"):
                session.execute(text(f"DROP TRIGGER {trigger}"))
            session.execute(text("DROP TABLE jobs_fts"))
        else:
            session.execute(text("DROP INDEX ix_jobs_name_trgm"))
    after = {s: ids(list_jobs(repos.db, JobQuery(text=s, limit=100)).items) for s in SEARCHES}
    assert after == before


# Plans -------------------------------------------------------------------------------------


def row(n: int, name: str, created_at: datetime | None = None) -> dict[str, Any]:
    created = created_at or START + timedelta(seconds=n)
    return {
        "name": name,
        "state": JobState.SUCCEEDED.value,
        "kind": "spark",
        "cluster": "local",
        "queue": "default",
        "priority": 0,
        "schema_name": f"s{n % 40}",
        "table_name": f"t{n % 25}",
        "owner": f"user{n % 200}",
        "team": f"team{n % 20}",
        "spec": {"kind": "spark", "application": "app.py"},
        "spec_hash": "",
        "idempotency_key": None,
        "created_at": created,
        "updated_at": created,
        "attempts": 1,
        "failed_attempts": 0,
        "lost_attempts": 0,
        "cancel_requested": False,
        "demand_memory_mb": 0,
        "demand_cores": 0,
    }


@pytest.fixture
def many(repos: Repositories) -> Database:
    """30,000 jobs a second apart (ids in creation order), then ANALYZE."""
    db = repos.db
    with db.writing() as session:
        for start in range(0, 30_000, 5_000):
            batch = [
                row(n, f"s{n % 40}.t{n % 25} load {n % 997}") for n in range(start, start + 5_000)
            ]
            session.execute(insert(JobRow), batch)
    with db.writing() as session:
        session.execute(text("ANALYZE"))
    return db


class Statements:
    """The SELECTs on jobs sent to the database, with their parameters."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM jobs" in statement:
            self.seen.append((statement, parameters))


@pytest.fixture
def statements() -> Iterator[Statements]:
    seen = Statements()
    event.listen(Engine, "before_cursor_execute", seen)
    yield seen
    event.remove(Engine, "before_cursor_execute", seen)


def plans(db: Database, statements: Statements, query: JobQuery) -> list[str]:
    """The plans of the SELECTs on jobs that listing `query` runs (the list's own is last)."""
    statements.seen.clear()
    list_jobs(db, query)
    shown = []
    with db.reading() as session:
        raw = session.connection().connection.driver_connection
        assert raw is not None
        for statement, parameters in statements.seen:
            if db.dialect == "sqlite":
                rows = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
                shown.append("\n".join(str(r[-1]) for r in rows))
            else:
                with raw.cursor() as cursor:
                    cursor.execute("EXPLAIN " + statement, parameters)
                    shown.append("\n".join(str(r[0]) for r in cursor.fetchall()))
    return shown


def test_a_rare_text_is_looked_up_in_the_trigram_index(
    many: Database, statements: Statements
) -> None:
    query = JobQuery(text="S25.t20 LOAD 381")  # one job: n = 12345
    assert [j.name for j in list_jobs(many, query).items] == ["s25.t20 load 381"]
    shown = plans(many, statements, query)
    if many.dialect == "sqlite":
        # The candidates from FTS5 (a MATCH), then those rows by id: no scan of jobs.
        assert any("SCAN jobs_fts VIRTUAL TABLE INDEX" in p and ":M" in p for p in shown), shown
        assert "SEARCH jobs USING INTEGER PRIMARY KEY (rowid=?)" in shown[-1], shown
    else:
        assert "ix_jobs_name_trgm" in shown[-1], shown
    short = "\n".join(plans(many, statements, JobQuery(text="s3")))
    assert "jobs_fts" not in short and "ix_jobs_name_trgm" not in short, short


def test_a_common_text_reads_the_list_order_not_every_match(
    many: Database, statements: Statements
) -> None:
    """SQLite: more candidates than a lookup takes: the list's own order finds a page soon."""
    query = JobQuery(text="load")
    assert ids(list_jobs(many, query).items) == list(range(30_000, 29_950, -1))
    if many.dialect == "sqlite":
        shown = plans(many, statements, query)
        assert "SCAN jobs" in shown[-1] and "TEMP B-TREE" not in shown[-1], shown


def test_a_date_range_reads_the_created_at_id_index_in_order(
    many: Database, statements: Statements
) -> None:
    week = JobQuery(
        created_after=START + timedelta(seconds=10_000),
        created_before=START + timedelta(seconds=20_000),
    )
    expected = list(range(20_000, 19_950, -1))
    assert [j.created_at for j in list_jobs(many, week).items] == [
        START + timedelta(seconds=n - 1) for n in expected
    ]
    for query in (week, JobQuery(**{**week.__dict__, "before_id": 15_000})):
        shown = plans(many, statements, query)[-1]
        if many.dialect == "sqlite":
            assert "USING INDEX ix_jobs_created_at_id" in shown, shown
            assert "TEMP B-TREE" not in shown, shown
        else:
            assert "Index Scan Backward using ix_jobs_created_at_id" in shown, shown
            assert "Sort" not in shown, shown


def test_digits_through_the_text_index(many: Database) -> None:
    names = {n + 1: f"s{n % 40}.t{n % 25} load {n % 997}" for n in range(30_000)}
    for digits in ("12345", "381", "996", "29999"):
        found = ids(list_jobs(many, JobQuery(text=digits, limit=1000)).items)
        expected = sorted(
            (i for i, name in names.items() if digits in name or i == int(digits)), reverse=True
        )
        assert found == expected[:1000] and int(digits) in found
