"""Retry schedules and the retry loop (a recorded fake sleep: no wall-clock waits)."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from schemas.retry import CLICKHOUSE, SUPERVISION, RetrySchedule, retrying


def first(schedule: RetrySchedule, n: int) -> list[float]:
    return list(itertools.islice(schedule.delays(), n))


def test_delays_grow_by_the_factor_up_to_the_cap():
    assert first(RetrySchedule(1.0, 3.0, 10.0), 5) == [1.0, 3.0, 9.0, 10.0, 10.0]


def test_the_clickhouse_schedule_doubles_from_a_fifth_of_a_second_to_thirty():
    assert first(CLICKHOUSE, 10) == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])


def test_supervision_backs_off_to_eight_seconds():
    assert first(SUPERVISION, 5) == [1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.mark.parametrize("args", [(-1.0, 2.0, 5.0), (1.0, 0.5, 5.0), (2.0, 2.0, 1.0)])
def test_an_impossible_schedule_is_refused(args):
    with pytest.raises(ValueError, match="invalid retry schedule"):
        RetrySchedule(*args)


class Flaky:
    """Fails ``failures`` times, then answers ``"done"``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"down #{self.calls}")
        return "done"


async def test_retrying_sleeps_per_the_schedule_until_the_operation_succeeds(caplog):
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    op = Flaky(4)
    with caplog.at_level(logging.WARNING, logger="schemas.retry"):
        assert await retrying(op, RetrySchedule(0.5, 2.0, 3.0), "reading things", sleep=sleep) == "done"
    assert op.calls == 5
    assert slept == [0.5, 1.0, 2.0, 3.0]
    assert [r.getMessage() for r in caplog.records] == [
        "reading things failed (down #1); retrying in 0.5 s", "reading things failed (down #2); retrying in 1.0 s",
        "reading things failed (down #3); retrying in 2.0 s", "reading things failed (down #4); retrying in 3.0 s"]


async def test_each_call_starts_the_schedule_again():
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    for _ in range(2):
        await retrying(Flaky(2), RetrySchedule(0.5, 2.0, 3.0), "x", sleep=sleep)
    assert slept == [0.5, 1.0, 0.5, 1.0]


async def test_a_success_at_once_never_sleeps():
    async def sleep(delay: float) -> None:
        raise AssertionError("slept")

    assert await retrying(Flaky(0), CLICKHOUSE, "x", sleep=sleep) == "done"


async def test_a_cancelled_error_nobody_asked_for_is_a_failure_and_retried(caplog):
    """A library raising CancelledError out of a call (aiokafka did, after a broker restart) while
    nobody cancelled the task: retried like any failure, not mistaken for the task's own end."""
    calls = 0

    async def stray() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncio.CancelledError
        return "done"

    with caplog.at_level(logging.WARNING, logger="schemas.retry"):
        assert await retrying(stray, RetrySchedule(0.0, 1.0, 0.0), "reading things") == "done"
    assert calls == 2
    assert [r.getMessage() for r in caplog.records] == ["reading things failed (CancelledError()); retrying in 0.0 s"]


async def test_cancelling_the_task_while_the_operation_runs_ends_it():
    running = asyncio.Event()
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        running.set()
        await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(retrying(op, RetrySchedule(0.0, 1.0, 0.0), "x"))
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled() and calls == 1


async def test_cancelling_the_task_while_it_waits_to_retry_ends_it():
    sleeping = asyncio.Event()

    async def sleep(delay: float) -> None:
        sleeping.set()
        await asyncio.Event().wait()  # until cancelled

    op = Flaky(10)
    task = asyncio.create_task(retrying(op, CLICKHOUSE, "x", sleep=sleep))
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled() and op.calls == 1


async def test_a_supervised_consumer_is_started_again_after_each_failure_and_each_return(monkeypatch, caplog):
    from streams import worker

    monkeypatch.setattr(worker, "SUPERVISION", RetrySchedule(0.0, 1.0, 0.0))
    runs: list[str] = []
    done = asyncio.Event()

    async def run_once() -> None:
        runs.append("run")
        if len(runs) == 5:
            done.set()
            await asyncio.Event().wait()  # until cancelled
        if len(runs) % 2:
            raise RuntimeError("broker gone")

    with caplog.at_level(logging.WARNING, logger="schemas.retry"):
        task = asyncio.create_task(worker.keep_running(run_once, "the sink consumer"))
        await done.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(runs) == 5
    failures = [r for r in caplog.records if r.name == "schemas.retry"]
    assert [r.getMessage() for r in failures] == ["the sink consumer failed (broker gone); retrying in 0.0 s"] * 2
    assert all(r.exc_info for r in failures)  # the traceback is kept


async def test_an_unrecoverable_failure_is_not_retried():
    from schemas.retry import Unrecoverable
    from streams import worker

    runs: list[str] = []

    async def run_once() -> None:
        runs.append("run")
        raise Unrecoverable("heads ahead of the log")

    with pytest.raises(Unrecoverable):
        await worker.keep_running(run_once, "the chain part")
    assert runs == ["run"]
