"""Which subscriptions an event goes to (schemas.subscriptions.SubscriptionView.matching), and the
deliveries it becomes (streams.webhooks.fanout)."""

from __future__ import annotations

import json

from schemas.codec import decode
from schemas.lifecycle import approval_notice
from schemas.subscriptions import SubscriptionView
from streams.webhooks.fanout import deliveries_of


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
    first = deliveries_of(notice, view, 5)
    again = deliveries_of(notice, view, 9)
    assert [key for key, _ in first] == [b"wh_1"]
    delivery = decode(first[0][1]).datum
    assert delivery["id"] == decode(again[0][1]).datum["id"]  # a fan-out repeated after a crash: the same id
    body = json.loads(delivery["payload"])
    assert body["type"] == "approval.requested" and body["data"]["approval_request_id"] == "ap-1"
    assert body["data"]["trace_id"] == "tr-1" and delivery["org_id"] == "acme" and delivery["attempts"] == 0
