"""The webhook delivery repository against real ClickHouse, on rows the sink writer stored: attempts
paged newest first, each subscription's health, and which dead letters are outstanding (not
delivered since they were dead-lettered), every query within one org."""

from __future__ import annotations

from sinks.repositories.webhook_deliveries import DeliveryStats, WebhookDeliveryRepository
from sinks.repositories.webhooks import NO_ATTEMPTS, Health, WebhookRepository
from tests.support.webhook_records import WebhookStore, attempt, delivery, failed_through

T0 = 1_796_000_000_000  # 2026-11-30T...
ORG, OTHER = "org-a", "org-b"
SUB, SUB2 = "wh_one", "wh_two"


async def test_attempts_page_newest_first_by_keyset_and_filter_by_outcome(clickhouse):
    store, repo = WebhookStore(clickhouse), WebhookDeliveryRepository(clickhouse)
    first = delivery(ORG, SUB, "e1", T0)
    second = delivery(ORG, SUB, "e2", T0 + 100)
    made = [*failed_through(first, T0), attempt(second, 1, T0 + 150, 200, "delivered"),
            attempt(second, 1, T0 + 150, 200, "delivered") | {"delivery_id": "msg_same_time"},
            attempt(delivery(ORG, SUB2, "e1", T0), 1, T0 + 5, 500, "retrying"),  # another subscription
            attempt(delivery(OTHER, SUB, "e9", T0), 1, T0 + 7, 500, "retrying")]  # another org, same id
    await store.store(attempts=made)

    everything = await repo.attempts(ORG, SUB, 100)
    keys = [(a["at"], a["delivery_id"], a["attempt"]) for a in everything]
    assert keys == sorted(keys, reverse=True) and len(keys) == 5
    assert everything[-1] == {"delivery_id": first["id"], "event_id": "e1", "type": "trace.completed", "attempt": 1,
                              "at": T0, "status_code": 500, "error": "", "latency_ms": 12, "outcome": "retrying"}
    pages, before = [], None
    while True:
        page = await repo.attempts(ORG, SUB, 2, before=before)
        if not page:
            break
        pages.append(page)
        last = page[-1]
        before = (last["at"], last["delivery_id"], last["attempt"])
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [a for p in pages for a in p] == everything  # the two attempts at one instant both show
    assert [a["attempt"] for a in await repo.attempts(ORG, SUB, 10, outcome="retrying")] == [2, 1]
    assert [a["delivery_id"] for a in await repo.attempts(ORG, SUB, 10, outcome="dead_lettered")] == [first["id"]]
    assert await repo.attempts(ORG, SUB, 10, outcome="gone") == []
    assert [a["event_id"] for a in await repo.attempts(OTHER, SUB, 10)] == ["e9"]
    assert await repo.attempts("org-nobody", SUB, 10) == []


async def test_a_replay_numbers_attempts_from_one_again_and_both_series_show(clickhouse):
    store, repo = WebhookStore(clickhouse), WebhookDeliveryRepository(clickhouse)
    letter = delivery(ORG, SUB, "e1", T0, due_at=T0 + 2_000)
    await store.store(attempts=failed_through(letter, T0), dead_letters=[letter])
    await store.store(attempts=[attempt(letter, 1, T0 + 60_000, 200, "delivered")])
    shown = [(a["attempt"], a["outcome"]) for a in await repo.attempts(ORG, SUB, 10)]
    assert shown == [(1, "delivered"), (3, "dead_lettered"), (2, "retrying"), (1, "retrying")]


async def test_stats_last_times_failures_since_the_last_success_and_outstanding_dead_letters(clickhouse):
    store, repo = WebhookStore(clickhouse), WebhookDeliveryRepository(clickhouse)
    ok = delivery(ORG, SUB, "ok", T0)
    bad = delivery(ORG, SUB, "bad", T0 + 1_000, due_at=T0 + 3_000)
    await store.store(attempts=[attempt(ok, 1, T0, 500, "retrying"), attempt(ok, 2, T0 + 500, 204, "delivered"),
                                *failed_through(bad, T0 + 1_000)],
                      dead_letters=[bad])
    assert await repo.stats(ORG, [SUB, "wh_quiet"]) == {
        SUB: DeliveryStats(last_success_at=T0 + 500, last_failure_at=T0 + 3_000, consecutive_failures=3,
                           dead_letters=1)}
    assert await repo.stats(OTHER, [SUB]) == {}
    assert await repo.stats(ORG, []) == {}

    # no success at all: every failure counts; a dead letter without attempts still counts
    never = delivery(ORG, SUB2, "n", T0)
    await store.store(attempts=failed_through(never, T0, tiers=2, status=0), dead_letters=[never])
    orphan = delivery(ORG, "wh_orphan", "o", T0)
    await store.store(dead_letters=[orphan])
    stats = await repo.stats(ORG, [SUB2, "wh_orphan"])
    assert stats[SUB2] == DeliveryStats(None, T0 + 1_000, 2, 1)
    assert stats["wh_orphan"] == DeliveryStats(None, None, 0, 1)


async def test_a_dead_letter_delivered_since_is_settled_until_dead_lettered_again(clickhouse):
    store, repo = WebhookStore(clickhouse), WebhookDeliveryRepository(clickhouse)
    letter = delivery(ORG, SUB, "e1", T0, due_at=T0 + 2_000)
    kept = delivery(ORG, SUB, "e2", T0 + 10, due_at=T0 + 2_010)
    await store.store(attempts=[*failed_through(letter, T0), *failed_through(kept, T0 + 10)],
                      dead_letters=[letter, kept])
    assert (await repo.stats(ORG, [SUB]))[SUB].dead_letters == 2

    await store.store(attempts=[attempt(letter, 1, T0 + 60_000, 200, "delivered")])  # replayed, delivered
    stats = (await repo.stats(ORG, [SUB]))[SUB]
    assert stats.dead_letters == 1 and stats.consecutive_failures == 0 and stats.last_success_at == T0 + 60_000
    assert [d["delivery_id"] for d in (await repo.recent_dead_letters(ORG, [SUB]))[SUB]] == [kept["id"]]
    assert [d["id"] for d in await repo.dead_letters(ORG, SUB)] == [kept["id"]]
    # asked for by id, a settled dead letter is still found
    assert {d["id"] for d in await repo.dead_letters(ORG, SUB, [letter["id"], kept["id"], "msg_x"])} == {
        letter["id"], kept["id"]}

    # replayed again and failed through: its row is replaced, due later than that success
    again = letter | {"due_at": T0 + 122_000, "last_error": "HTTP 503"}
    await store.store(attempts=failed_through(letter, T0 + 120_000, status=503), dead_letters=[again])
    assert (await repo.stats(ORG, [SUB]))[SUB].dead_letters == 2
    (found,) = await repo.dead_letters(ORG, SUB, [letter["id"]])
    assert found["last_error"] == "HTTP 503" and found["due_at"] == T0 + 122_000


async def test_recent_dead_letters_newest_first_at_most_n_per_subscription(clickhouse):
    store, repo = WebhookStore(clickhouse), WebhookDeliveryRepository(clickhouse)
    letters = [delivery(ORG, SUB, f"e{i}", T0 + i * 10, attempts=4, last_error=f"HTTP 50{i % 4}")
               for i in range(12)]
    other_sub = delivery(ORG, SUB2, "x", T0)
    other_org = delivery(OTHER, SUB, "y", T0 + 999)
    await store.store(dead_letters=[*letters, other_sub, other_org])
    recent = await repo.recent_dead_letters(ORG, [SUB, SUB2, "wh_none"], per_subscription=10)
    assert set(recent) == {SUB, SUB2}
    assert [d["event_id"] for d in recent[SUB]] == [f"e{i}" for i in range(11, 1, -1)]
    assert recent[SUB][0] == {"delivery_id": letters[11]["id"], "event_id": "e11", "type": "trace.completed",
                              "created_at": T0 + 110, "last_error": "HTTP 503", "attempts": 4}
    assert [d["event_id"] for d in recent[SUB2]] == ["x"]
    assert (await repo.recent_dead_letters(OTHER, [SUB]))[SUB][0]["event_id"] == "y"
    assert await repo.recent_dead_letters(ORG, []) == {}


async def test_dead_letters_come_whole_oldest_first_and_page_by_keyset(clickhouse):
    store, repo = WebhookStore(clickhouse), WebhookDeliveryRepository(clickhouse)
    letters = [delivery(ORG, SUB, f"e{i}", T0 + (i // 2) * 10, data={"i": i, "text": "é"}) for i in range(5)]
    await store.store(dead_letters=[*letters, delivery(OTHER, SUB, "theirs", T0)])
    expected = sorted(letters, key=lambda d: (d["created_at"], d["id"]))
    assert await repo.dead_letters(ORG, SUB) == expected  # every field, the payload byte for byte
    pages, after = [], None
    while page := await repo.dead_letters(ORG, SUB, limit=2, after=after):
        pages.append(page)
        after = (page[-1]["created_at"], page[-1]["id"])
    assert [[d["id"] for d in p] for p in pages] == [[d["id"] for d in expected[i:i + 2]] for i in (0, 2, 4)]
    assert await repo.dead_letters(ORG, SUB2) == []
    theirs = delivery(OTHER, SUB, "theirs", T0)["id"]
    assert await repo.dead_letters(ORG, SUB, [theirs]) == []  # another org's, same subscription id


async def test_a_sink_replay_of_the_same_offsets_stores_nothing_twice(clickhouse):
    store, repo = WebhookStore(clickhouse), WebhookDeliveryRepository(clickhouse)
    letter = delivery(ORG, SUB, "e1", T0)
    attempts = failed_through(letter, T0)
    await store.store(attempts=attempts, dead_letters=[letter])
    replay = WebhookStore(clickhouse)  # a new owner of the partitions starts again at offset 0
    await replay.store(attempts=attempts, dead_letters=[letter])
    assert replay.attempts.rows_skipped == 3
    assert len(await repo.attempts(ORG, SUB, 10)) == 3
    assert (await repo.stats(ORG, [SUB]))[SUB] == DeliveryStats(None, T0 + 2_000, 3, 1)


async def test_health_opens_the_breaker_after_enough_failures_within_the_cooldown(clickhouse):
    store = WebhookStore(clickhouse)
    repo = WebhookRepository(clickhouse, breaker_failures=5, breaker_cooldown_seconds=30)
    failing = delivery(ORG, SUB, "f", T0)
    four = delivery(ORG, SUB2, "g", T0)
    await store.store(attempts=[*failed_through(failing, T0, tiers=5), *failed_through(four, T0, tiers=4)],
                      dead_letters=[failing])
    last = T0 + 4_000
    health = await repo.health_of(ORG, [SUB, SUB2, "wh_quiet"], now=last + 29_999)
    assert health[SUB] == Health(None, last, 5, "open", 1)
    assert health[SUB2] == Health(None, T0 + 3_000, 4, "closed", 0)  # one failure short
    assert health["wh_quiet"] == NO_ATTEMPTS and NO_ATTEMPTS.breaker == "closed"
    assert (await repo.health_of(ORG, [SUB], now=last + 30_000))[SUB].breaker == "closed"  # cooled down
    await store.store(attempts=[attempt(failing, 1, last + 10_000, 200, "delivered")])
    assert (await repo.health_of(ORG, [SUB], now=last + 10_001))[SUB] == Health(last + 10_000, last, 0, "closed", 0)
    assert (await repo.health_of(OTHER, [SUB], now=last))[SUB] == NO_ATTEMPTS
