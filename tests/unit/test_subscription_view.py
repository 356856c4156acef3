"""The in-memory view of ``webhook-subscriptions`` (schemas/subscriptions.py): newest version
per id, deleted and other orgs' subscriptions hidden, writes waited for until read back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from schemas.codec import encode
from schemas.subscriptions import SubscriptionView


def sub(sub_id: str, version: int, org: str = "acme", status: str = "active", **fields: Any) -> dict[str, Any]:
    return {"id": sub_id, "org_id": org, "url": "https://93.184.215.14/h", "event_types": ["webhook.test"],
            "description": "", "filter": {}, "secrets": [{"secret": "whsec_x", "expires_at": None}],
            "status": status, "disabled_reason": "", "created_at": 1_000 + len(sub_id), "updated_at": 2_000 + version,
            "version": version} | fields


def test_the_newest_version_wins_whatever_the_order_read():
    view = SubscriptionView()
    view.apply(sub("wh_a", 2, description="second"))
    view.apply(sub("wh_a", 1, description="first"))  # an older record read later changes nothing
    assert view.get("acme", "wh_a")["description"] == "second"
    view.apply_record(encode("WebhookSubscription", sub("wh_a", 3, description="third")))
    assert view.get("acme", "wh_a")["description"] == "third"


def test_deleted_and_other_orgs_subscriptions_are_hidden_and_lists_are_newest_first():
    view = SubscriptionView()
    view.apply(sub("wh_a", 1))
    view.apply(sub("wh_bb", 1))
    view.apply(sub("wh_ccc", 1, org="other"))
    view.apply(sub("wh_bb", 2, status="deleted"))
    view.apply(sub("wh_ccc", 2, org="acme", description="taken over"))  # a record naming another org is ignored
    assert view.get("acme", "wh_bb") is None and view.get("other", "wh_a") is None
    assert view.get("acme", "wh_ccc") is None and view.get("other", "wh_ccc")["version"] == 1
    view.apply(sub("wh_dddd", 1))
    assert [s["id"] for s in view.of_org("acme")] == ["wh_dddd", "wh_a"]


def test_records_that_are_not_subscriptions_are_skipped():
    view = SubscriptionView()
    view.apply_record(b"not avro")
    view.apply_record(encode("CommandVerdict", {"request_id": "r", "verdict": "204", "message": ""}))
    assert view.of_org("acme") == []


@pytest.mark.asyncio
async def test_read_back_waits_for_the_version_or_a_later_one_and_times_out_otherwise():
    view = SubscriptionView()
    waiting = asyncio.create_task(view.read_back("wh_a", 2, timeout=5))
    await asyncio.sleep(0)
    view.apply(sub("wh_a", 1))
    await asyncio.sleep(0)
    assert not waiting.done()
    view.apply(sub("wh_a", 3))
    assert await waiting is True
    assert await view.read_back("wh_a", 3, timeout=0.01) is True
    assert await view.read_back("wh_a", 4, timeout=0.01) is False
    assert view._waiting == {}
