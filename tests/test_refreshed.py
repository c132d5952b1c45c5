"""Refreshed: a hot-path setting is read again by one caller, never by a stampede."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from chidori.services.refreshed import Refreshed


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_fresh_value_is_kept_and_an_old_one_read_again() -> None:
    clock, loads = Clock(), []

    def load() -> int:
        loads.append(clock.now)
        return len(loads)

    value = Refreshed(load, 1.0, clock)
    assert value.get() == 1
    clock.now = 0.9
    assert value.get() == 1
    clock.now = 1.5
    assert value.get() == 2
    assert loads == [0.0, 1.5]


def test_while_one_caller_reads_again_the_others_keep_the_old_value() -> None:
    clock = Clock()
    release = threading.Event()
    loads = 0

    def load() -> str:
        nonlocal loads
        loads += 1
        if loads > 1:
            release.wait(10)
        return f"v{loads}"

    value = Refreshed(load, 1.0, clock)
    assert value.get() == "v1"
    clock.now = 5.0
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(value.get)
        while loads < 2:
            pass
        # 50 callers while the reload is under way: none waits, none loads.
        assert {value.get() for _ in range(50)} == {"v1"}
        release.set()
        assert slow.result(10) == "v2"
    assert loads == 2
    assert value.get() == "v2"


def test_forget_makes_the_next_caller_wait_for_a_fresh_value() -> None:
    clock = Clock()
    stored = ["old"]
    value = Refreshed(lambda: stored[0], 60.0, clock)
    assert value.get() == "old"
    stored[0] = "new"
    assert value.get() == "old"  # within max_age
    value.forget()
    assert value.get() == "new"


def test_a_load_begun_before_forget_is_not_kept() -> None:
    clock = Clock()
    started, release = threading.Event(), threading.Event()
    stored = ["old"]

    def load() -> str:
        seen = stored[0]
        if seen == "old":
            started.set()
            release.wait(10)
        return seen

    value = Refreshed(load, 60.0, clock)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(value.get)
        started.wait(10)
        stored[0] = "new"  # the change this process made...
        value.forget()  # ...and its forget, while the old read is still under way
        release.set()
        assert first.result(10) == "old"
    assert value.get() == "new"
