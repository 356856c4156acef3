"""The ingest figures on Apache Kafka beside noida-db's, in the same run: the raw aiokafka produce
rate, HTTP ingest at 20 events per trace until queryable, unchained and chained with each
processing guarantee, and ingest-to-queryable latency. Each service gets a Kafka of its own (its
topic and group names are fixed), from the test suite's fixture (``tests.support.kafka_broker``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.ingest_rates import http_rate, latency, raw_produce_rate
from bench.stats import pct
from streams.topics import ensure_topics
from tests.support.kafka_broker import KafkaBroker, missing_tools
from tests.support.service import Api, Service

EVENTS = 100_000
ROUNDS = (("unchained", {"TRACEHOUSE_CHAIN_EVENTS": "false"}),
          ("chained, at_least_once", {"TRACEHOUSE_CHAIN_EVENTS": "true"}),
          ("chained, exactly_once", {"TRACEHOUSE_CHAIN_EVENTS": "true",
                                     "TRACEHOUSE_PROCESSING_GUARANTEE": "exactly_once"}))


async def run(work: Path, report: Callable[[str], None], env: dict[str, str], noida_raw: float,
              noida_http20: float) -> None:
    """Report the figures on Kafka next to noida-db's raw and HTTP 20/trace rates of this run."""
    missing = missing_tools()
    if missing:
        report(f"Apache Kafka: not measured ({missing})")
        return
    for i, (label, settings) in enumerate(ROUNDS):
        broker = KafkaBroker(work / f"kafka-{i}" / "broker")
        broker.start()
        try:
            if i == 0:
                await ensure_topics(broker.bootstrap, 4, topics=("bench-raw",))  # no auto-creation on Kafka
                raw = await raw_produce_rate(broker.bootstrap)
                report(f"Apache Kafka 4.1.1: raw aiokafka produce {raw:10,.0f} events/s  "
                       f"{raw / noida_raw:.2f}x noida-db's")
            service = Service(work / f"kafka-{i}", broker.port, TRACEHOUSE_KAFKA_BOOTSTRAP=broker.bootstrap,
                              **env, **settings)
            service.start()
            try:
                async with Api(service.url) as api:
                    key = await api.org_key(f"bench-kafka-{i}")
                    rate = await http_rate(api, key, EVENTS, 20, f"k{i}-")
                    report(f"Apache Kafka: HTTP ingest, 20 events/trace, {label:<22} {rate:10,.0f} events/s  "
                           f"{rate / noida_http20:.2f}x noida-db's unchained  ({EVENTS:,} events until queryable)")
                    if i == 0:
                        lat = await latency(api, await api.org_key("bench-kafka-latency"))
                        report(f"Apache Kafka: ingest-to-queryable latency  p50 {pct(lat, 50):6.0f} ms   "
                               f"p99 {pct(lat, 99):6.0f} ms  (a steady stream: the sink inserts once per 1 s)")
            finally:
                service.stop()
        finally:
            broker.stop()
