"""ReusedThreads: the driver host's waiter threads are kept from one driver to the next."""

from __future__ import annotations

import threading
import time

from chidori.host.driver_host import ReusedThreads


def named_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_every_task_runs_and_threads_are_reused() -> None:
    pool = ReusedThreads("reuse-test", idle_seconds=30)
    ran: list[int] = []
    threads: set[threading.Thread] = set()  # kept alive, so each is a distinct object
    for i in range(200):
        # One at a time: each task ends before the next is given.
        finished = threading.Event()

        def task(i: int = i, finished: threading.Event = finished) -> None:
            ran.append(i)
            threads.add(threading.current_thread())
            finished.set()

        pool.run(task)
        assert finished.wait(5)
        time.sleep(0.002)  # let the thread count itself idle again
    assert ran == list(range(200))
    assert len(threads) <= 2  # a thread per task would have made 200


def test_concurrent_tasks_get_a_thread_each_and_idle_threads_end() -> None:
    pool = ReusedThreads("reuse-test-2", idle_seconds=0.3)
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocking() -> None:
        started.release()
        release.wait(10)

    for _ in range(5):
        pool.run(blocking)
    for _ in range(5):  # all five run at once: none waits for another to end
        assert started.acquire(timeout=5)
    assert len(named_threads("reuse-test-2")) == 5
    release.set()
    deadline = time.monotonic() + 5
    while named_threads("reuse-test-2") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert named_threads("reuse-test-2") == []  # idle for 0.3 s: ended
    ran = threading.Event()
    pool.run(ran.set)  # and a new task still gets a thread
    assert ran.wait(5)


def test_a_failing_task_does_not_lose_its_thread() -> None:
    pool = ReusedThreads("reuse-test-3", idle_seconds=30)

    def fail() -> None:
        raise RuntimeError("boom")

    pool.run(fail)
    ran = threading.Event()
    time.sleep(0.05)
    pool.run(ran.set)
    assert ran.wait(5)
    assert len(named_threads("reuse-test-3")) == 1
