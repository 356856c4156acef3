"""When the sink inserts: at most once per batch_seconds unless a batch fills, and at once for
records that come after a quiet spell (streams/sink.py), on a scripted consumer and clock."""

import asyncio

from streams.sink import Sink


class ScriptedConsumer:
    """Hands out ``arrivals`` ((time, count) each) as a consumer's fetches would, moving ``clock``."""

    def __init__(self, arrivals: list[tuple[float, int]], now: float) -> None:
        self.arrivals = list(arrivals)
        self.now = now

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        until = self.now + timeout_ms / 1000
        if not self.arrivals or self.arrivals[0][0] > until:
            self.now = until
            return {}
        at, count = self.arrivals.pop(0)
        self.now = max(self.now, at)
        taken = min(count, max_records)
        if taken < count:
            self.arrivals.insert(0, (at, count - taken))
        return {"tp": [f"r@{at}"] * taken}


def batch(arrivals: list[tuple[float, int]], last_insert: float | None, records: int = 100,
          now: float = 0.0) -> tuple[int, float]:
    """How many records the next batch holds and when it is handed over, asked for at ``now``."""
    consumer = ScriptedConsumer(arrivals, now)
    sink = Sink("unused:9092", [], [], "invalid", batch_records=records, batch_seconds=1.0)
    sink.clock = lambda: consumer.now
    if last_insert is not None:
        sink._last_insert = last_insert
    got = asyncio.run(sink._next_batch(consumer))
    return len(got), consumer.now


def test_records_after_a_quiet_spell_go_at_once_with_those_sent_with_them():
    assert batch([(0.2, 3), (0.25, 2), (0.5, 4)], last_insert=None) == (5, 0.3)  # QUIET_LINGER_SECONDS
    assert batch([(2.5, 3), (2.7, 4)], last_insert=1.0, now=2.0) == (3, 2.6)
    assert batch([(1.5, 3), (2.6, 4)], last_insert=1.0, now=1.2) == (3, 2.0)  # within the interval: waits


def test_records_within_the_interval_wait_for_it_and_go_together():
    assert batch([(0.1, 3), (0.5, 4), (1.4, 5)], last_insert=0.0) == (7, 1.0)


def test_a_full_batch_goes_without_waiting():
    assert batch([(0.1, 3), (0.2, 9)], last_insert=0.0, records=10) == (10, 0.2)


def test_an_idle_consumer_returns_nothing_after_a_second():
    assert batch([], last_insert=None) == (0, 1.0)
