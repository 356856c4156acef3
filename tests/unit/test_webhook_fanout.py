"""Which subscriptions an event goes to (schemas.subscriptions.SubscriptionView.matching), and the
deliveries it becomes (streams.webhooks.fanout)."""

from __future__ import annotations

import json

from schemas.codec import MAGIC, decode, encode, sealed_record, trace_summary
from schemas.lifecycle import approval_notice
from schemas.model import validate_trace_event
from schemas.registry import schema
from schemas.subscriptions import SubscriptionView
from streams.webhooks.fanout import deliveries_of, notices_of


def sub(**kw) -> dict:
    return {"id": "wh_1", "org_id": "acme", "status": "active", "event_types": ["approval.requested"],
            "filter": {}, "version": 1, "created_at": 1} | kw


def view_of(*subscriptions: dict) -> SubscriptionView:
    view = SubscriptionView()
    for s in subscriptions:
        view.apply(s)
    return view


def ids(view: SubscriptionView, org: str, event_type: str, attributes: dict) -> list[str]:
    return sorted(s["id"] for s in view.matching(org, event_type, attributes))


def test_an_event_goes_only_to_active_subscriptions_of_its_org_and_type():
    view = view_of(sub(), sub(id="wh_2", status="disabled"), sub(id="wh_3", status="deleted"),
                   sub(id="wh_4", org_id="other"), sub(id="wh_5", event_types=["trace.completed"]))
    assert ids(view, "acme", "approval.requested", {}) == ["wh_1"]
    assert ids(view, "acme", "trace.completed", {}) == ["wh_5"]
    assert ids(view, "nobody", "approval.requested", {}) == []


def test_a_filter_narrows_by_the_attributes_the_event_has():
    view = view_of(sub(filter={"agent_id": "a-1"}))
    assert ids(view, "acme", "approval.requested", {"agent_id": "a-1", "class": "governance"}) == ["wh_1"]
    assert ids(view, "acme", "approval.requested", {"agent_id": "a-2"}) == []
    assert ids(view, "acme", "approval.requested", {}) == ["wh_1"]  # where it does not apply, it does not narrow


def test_an_approval_request_becomes_one_delivery_per_matching_subscription_with_stable_ids():
    event = {"event_id": "e-7", "type": "approval_requested", "class": "governance", "agent_id": "a-1",
             "approval_request_id": "ap-1", "occurred_at": 1_700_000_000_000, "metadata": {"k": "v"}}
    notice = approval_notice(b"trace\x00acme\x00tr-1", event)
    view = view_of(sub(), sub(id="wh_2", filter={"agent_id": "a-2"}), sub(id="wh_3", org_id="other"))
    (told,) = notices_of(encode("WebhookEvent", notice), view)
    first = deliveries_of(told, view, 5)
    again = deliveries_of(told, view, 9)
    assert [key for key, _ in first] == [b"wh_1"]
    delivery = decode(first[0][1]).datum
    assert delivery["id"] == decode(again[0][1]).datum["id"]  # a fan-out repeated after a crash: the same id
    body = json.loads(delivery["payload"])
    assert body["type"] == "approval.requested" and body["data"]["approval_request_id"] == "ap-1"
    assert body["data"]["trace_id"] == "tr-1" and delivery["org_id"] == "acme" and delivery["attempts"] == 0


def sealed_trace_batch(org: str, trace: str, *types: str) -> bytes:
    events = [{"event_id": f"e{i}", "trace_id": trace, "type": kind, "class": "llm",
               "occurred_at": "2023-11-14T22:13:20.000Z"} for i, kind in enumerate(types)]
    datums = [validate_trace_event(e, org_id=org, now=0) for e in events]
    body = schema("TraceEventBatch").codec.encode({"org_id": org, "trace_id": trace, "events": datums})
    hashes = [bytes([i]) * 32 for i in range(1, len(types) + 1)]
    return sealed_record("SealedTraceEventBatch", body, 5, b"\x00" * 32, hashes, trace_summary(0), hash_version=2,
                         agent_named=False)


def test_a_sealed_trace_record_is_one_trace_events_delivery_with_its_links_and_the_filter_applied():
    record = sealed_trace_batch("acme", "tr-9", "GENERATION", "SPAN", "GENERATION")
    view = view_of(sub(event_types=["trace.events"]), sub(id="wh_2", event_types=["trace.events"],
                                                          filter={"type": "GENERATION"}),
                   sub(id="wh_3", event_types=["trace.events"], filter={"type": "EVENT"}))
    notices = notices_of(record, view)
    assert len(notices) == 1 and notices[0][1] == "trace.events"
    deliveries = {key: json.loads(decode(value).datum["payload"]) for n in notices
                  for key, value in deliveries_of(n, view, 1)}
    assert set(deliveries) == {b"wh_1", b"wh_2"}  # wh_3's filter keeps no event: no delivery
    everything = deliveries[b"wh_1"]["data"]["events"]
    assert [(e["seq"], e["type"]) for e in everything] == [(5, "GENERATION"), (6, "SPAN"), (7, "GENERATION")]
    assert everything[0]["prev_hash"] == "00" * 32 and everything[1]["prev_hash"] == everything[0]["hash"]
    assert {e["hash_version"] for e in everything} == {2}
    assert everything[0]["occurred_at"] == "2023-11-14T22:13:20.000Z"
    assert [e["seq"] for e in deliveries[b"wh_2"]["data"]["events"]] == [5, 7]


def test_records_nobody_subscribes_to_are_not_decoded():
    garbage = MAGIC + schema("SealedTraceEventBatch").fingerprint + b"not avro"  # decoding it would fail
    assert notices_of(garbage, view_of(sub())) == []


def test_the_view_tells_a_deleted_subscription_from_one_it_has_not_read():
    view = view_of(sub(), sub(id="wh_2", status="deleted"))
    assert view.deleted("acme", "wh_2") and view.get("acme", "wh_2") is None
    assert not view.deleted("acme", "wh_9") and view.get("acme", "wh_9") is None  # not read yet: wait for it
    assert not view.deleted("acme", "wh_1") and view.get("acme", "wh_1") is not None


def test_a_changed_filter_applies_from_its_version_on():
    view = view_of(sub(filter={"agent_id": "a-1"}))
    assert ids(view, "acme", "approval.requested", {"agent_id": "a-1"}) == ["wh_1"]
    view.apply(sub(filter={"agent_id": "a-2"}, version=2))
    assert ids(view, "acme", "approval.requested", {"agent_id": "a-1"}) == []
    assert ids(view, "acme", "approval.requested", {"agent_id": "a-2"}) == ["wh_1"]


def test_trace_events_deliveries_hold_app_id_only_where_it_is_set_as_the_links_do():
    from streams.chaining import TRACE_CHAIN, ChainStore, seal

    events = [validate_trace_event({"event_id": f"e{i}", "trace_id": "tr-1", "type": "SPAN",
                                    **({"app_id": "app_abc123"} if i else {})}, org_id="acme", now=0)
              for i in range(2)]
    sealed = seal(TRACE_CHAIN, encode("TraceEventBatch", {"org_id": "acme", "trace_id": "tr-1", "events": events}),
                  ChainStore({}, {})).value
    view = view_of(sub(event_types=["trace.events"]))
    [(_, value)] = [d for n in notices_of(sealed, view) for d in deliveries_of(n, view, 1)]
    delivered = json.loads(decode(value).datum["payload"])["data"]["events"]
    assert ["app_id" in e for e in delivered] == [False, True] and delivered[1]["app_id"] == "app_abc123"
    assert [e["hash"] for e in delivered] == [h.hex() for h in decode(sealed).datum["hashes"]]
