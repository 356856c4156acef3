"""The daily dump schedule (worker part ``dumps``, on when ``TRACEHOUSE_DUMP_URL`` is set).

Once the UTC hour ``TRACEHOUSE_DUMP_HOUR_UTC`` of a day has begun, yesterday is due; so is every day
of the week before it that some org has rows on but no manifest at the URL (``sinks.day_dump``): the
manifests already written are what the schedule remembers, so a restart neither redoes nor skips a
day, and an org whose dump was cut short (no manifest) is dumped again. Every check
(``CHECK_SECONDS``) asks ClickHouse which orgs have rows on each due day, looks for the manifest of
each (org, day) not yet known to have one (once per process: a found one is remembered), and dumps
each that lacks one, oldest day first.

One process per deployment dumps: the group ``tracehouse-dumps`` elects one member
(``streams.election``) over a topic it never reads (its partitions are paused), and only the member
holding the partitions dumps. A background task keeps polling, so a long dump does not make the
member look dead. Should the election move while a dump is under way, the other process may write the
same day again: the rows and the manifest come out the same, and a reader trusts a day only through
its manifest, written last.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping

from aiokafka import AIOKafkaConsumer

from schemas import kafka_clients
from schemas.timefmt import now_ms
from sinks.day_dump import DayDump, DayDumper
from streams.election import ELECTED, MembershipOnly

log = logging.getLogger(__name__)

DUMPS_GROUP = "tracehouse-dumps"
#: How many days back from today the schedule looks for days without a dump.
LOOKBACK_DAYS = 7
#: How often the elected member looks for due dumps.
CHECK_SECONDS = 60.0
#: How often the member polls its group (the election's liveness).
_POLL_SECONDS = 1.0


def due_days(now: int, hour_utc: int, lookback: int = LOOKBACK_DAYS) -> list[dt.date]:
    """The days whose dumps are due at ``now`` (epoch ms), oldest first: the ``lookback`` days before
    today, yesterday only once the UTC hour ``hour_utc`` of today has begun."""
    moment = dt.datetime.fromtimestamp(now // 1000, dt.UTC)
    today = moment.date()
    days = [today - dt.timedelta(days=back) for back in range(lookback, 0, -1)]
    return days if moment.hour >= hour_utc else days[:-1]


def pending(days: Iterable[dt.date], orgs_by_day: Mapping[dt.date, Iterable[str]],
            dumped: Collection[tuple[str, dt.date]]) -> list[tuple[str, dt.date]]:
    """(org, day) of every org with rows on one of ``days`` whose dump of that day is not ``dumped``
    (the manifests at the URL), in ``days``' order."""
    return [(org, day) for day in days for org in sorted(orgs_by_day.get(day, ())) if (org, day) not in dumped]


class DumpSchedule:
    """Dumps every due (org, day) with ``dumper``, in the one process its group elects."""

    def __init__(self, bootstrap: str, election_topic: str, dumper: DayDumper, hour_utc: int, *,
                 clock: Callable[[], int] = now_ms, interval: float = CHECK_SECONDS) -> None:
        self.bootstrap = bootstrap
        self.election_topic = election_topic
        self.dumper = dumper
        self.hour_utc = hour_utc
        self.clock = clock
        self.interval = interval
        self.elected = False
        self.checks = 0  # checks made while elected
        #: (org, day) pairs of the window known to have a manifest at the URL: looked up once each
        self.known: set[tuple[str, dt.date]] = set()

    async def run(self) -> None:
        """Check and dump until cancelled, or until the broker, ClickHouse or the storage fails (the
        worker starts it again)."""
        election = kafka_clients.consumer(self.bootstrap, DUMPS_GROUP, group=DUMPS_GROUP, **ELECTED)
        election.subscribe([self.election_topic], listener=MembershipOnly(election))
        async with kafka_clients.started(election):
            polling = asyncio.create_task(self._poll(election), name="dumps-election")
            try:
                checked: float | None = None  # when this member last checked, while elected
                while True:
                    if polling.done():
                        polling.result()  # the election's poll failed: so does this attempt
                    if not self.elected:
                        checked = None
                    elif checked is None or time.monotonic() - checked >= self.interval:
                        await self.dump_due()  # at once when elected, then every interval
                        checked = time.monotonic()
                        self.checks += 1
                    await asyncio.sleep(_POLL_SECONDS)
            finally:
                polling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await polling

    async def _poll(self, election: AIOKafkaConsumer) -> None:
        while True:
            await election.getmany(timeout_ms=0)  # a member that stops polling is dropped
            self.elected = bool(election.assignment())
            await asyncio.sleep(_POLL_SECONDS)

    async def dump_due(self) -> list[DayDump]:
        """Dump every (org, day) due now and not yet at the URL; what was written."""
        days = due_days(self.clock(), self.hour_utc)
        orgs = {day: await self.dumper.orgs(day) for day in days}
        self.known = {(org_id, day) for org_id, day in self.known if day in orgs}  # the window moves on
        self.known |= await asyncio.to_thread(self.dumper.dumped, pending(days, orgs, self.known))
        written = []
        for org_id, day in pending(days, orgs, self.known):
            done = await self.dumper.dump(org_id, day)
            log.info("dumped %s %s: %d events, %d audit entries -> %s", org_id, day, done.rows("events.parquet"),
                     done.rows("audit.parquet"), done.path)
            self.known.add((org_id, day))
            written.append(done)
        return written
