"""Webhook building blocks: signatures checked by the independent ``standardwebhooks`` package, bodies,
delivery ids, filters, the retry schedule and the circuit breaker (times passed in, no clock)."""

import base64
import json
import re
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from schemas.model import ValidationError
from schemas.webhooks import (
    Breaker,
    Filter,
    delivery_id,
    headers,
    new_secret,
    parse_retry_schedule,
    payload,
    secret_key,
    signature,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_new_secret_is_whsec_and_base64_of_24_random_bytes():
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 24
    assert secret_key(first) == base64.b64decode(first[6:])


def test_the_published_standard_webhooks_example_signs_the_same():
    # The Standard Webhooks / Svix documentation's example message and signature.
    body = b'{"test": 2432232314}'
    assert signature([SECRET], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_standardwebhooks_verifies_a_delivery():
    secret = new_secret()
    body = payload("trace.completed", 1_764_000_000_123, {"trace_id": "t1", "final_outcome": "executed"})
    sent = headers([secret], delivery_id("trace.completed:o:t1", "sub_1"), int(time.time()), body)
    assert Webhook(secret).verify(body, sent) == json.loads(body)


def test_the_signature_is_what_standardwebhooks_signs_at_the_same_timestamp():
    secret, body = new_secret(), b'{"type":"webhook.test","timestamp":"2026-12-05T08:00:00.000Z","data":{}}'
    expected = Webhook(secret).sign("msg_x", datetime.fromtimestamp(1_790_000_000, UTC), body.decode())
    assert signature([secret], "msg_x", 1_790_000_000, body) == expected


def test_during_a_rotation_each_secret_verifies_and_another_does_not():
    old, new, other = new_secret(), new_secret(), new_secret()
    body = payload("webhook.test", 0, {"ping": True})
    sent = headers([old, new], "msg_rot", int(time.time()), body)
    assert len(sent["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, sent)


def test_a_changed_body_fails_verification():
    secret = new_secret()
    sent = headers([secret], "msg_1", int(time.time()), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', sent)


_ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
_times = st.integers(min_value=0, max_value=2**33)


@given(msg_id=_ids, other_id=_ids, timestamp=_times, other_time=_times, body=st.binary(max_size=200),
       other_body=st.binary(max_size=200), key=st.binary(min_size=24, max_size=64),
       other_key=st.binary(min_size=24, max_size=64))
def test_the_signature_changes_with_the_id_timestamp_body_or_secret(msg_id, other_id, timestamp, other_time, body,
                                                                   other_body, key, other_key):
    secret = "whsec_" + base64.b64encode(key).decode()
    other_secret = "whsec_" + base64.b64encode(other_key).decode()
    signed = signature([secret], msg_id, timestamp, body)
    assert signature([secret], msg_id, timestamp, body) == signed
    if other_id != msg_id:
        assert signature([secret], other_id, timestamp, body) != signed
    if other_time != timestamp:
        assert signature([secret], msg_id, other_time, body) != signed
    if other_body != body:
        assert signature([secret], msg_id, timestamp, other_body) != signed
    if other_key != key:
        assert signature([other_secret], msg_id, timestamp, body) != signed


def test_headers_carry_the_standard_names():
    sent = headers([SECRET], "msg_h", 1_790_000_000, b"{}")
    assert sent == {"webhook-id": "msg_h", "webhook-timestamp": "1790000000",
                    "webhook-signature": signature([SECRET], "msg_h", 1_790_000_000, b"{}"),
                    "content-type": "application/json"}


@pytest.mark.parametrize(("secret", "why"), [
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with whsec_"), ("whsec_not base64!", "base64"),
    ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
    ("whsec_" + base64.b64encode(bytes(65)).decode(), "24 to 64 bytes")])
def test_a_malformed_secret_is_refused(secret, why):
    with pytest.raises(ValueError, match=why):
        signature([secret], "msg", 1, b"")


def test_signing_needs_a_secret():
    with pytest.raises(ValueError, match="at least one secret"):
        signature([], "msg", 1, b"")


def test_the_payload_is_compact_json_with_an_iso_timestamp():
    body = payload("trace.completed", 1_764_000_000_123, {"trace_id": "t1", "n": [1, 2]})
    assert body == (b'{"type":"trace.completed","timestamp":"2025-11-24T16:00:00.123Z",'
                    b'"data":{"trace_id":"t1","n":[1,2]}}')


@pytest.mark.parametrize("data", [{"x": float("nan")}, {"x": float("inf")}, {"x": object()}])
def test_a_payload_of_what_json_cannot_hold_is_refused(data):
    with pytest.raises(ValueError, match="data is not JSON"):
        payload("webhook.test", 0, data)


def test_a_delivery_id_is_stable_and_distinct():
    first = delivery_id("trace.completed:o:t1", "sub_1")
    assert first == delivery_id("trace.completed:o:t1", "sub_1")
    assert re.fullmatch(r"msg_[a-z2-7]{26}", first)
    others = {delivery_id("trace.completed:o:t1", "sub_2"), delivery_id("trace.completed:o:t2", "sub_1"),
              delivery_id("sub_1", "trace.completed:o:t1")}
    assert first not in others and len(others) == 3
    # The two ids are not simply concatenated: moving a character across the boundary changes the id.
    assert delivery_id("ab", "c") != delivery_id("a", "bc")


def test_an_empty_filter_matches_everything():
    assert Filter().matches({}) and Filter().matches({"type": "GENERATION", "class": "llm"})
    assert Filter.from_json(None) == Filter() and Filter.from_json({}) == Filter()


def test_each_filter_field_must_equal_the_events_where_the_event_has_it():
    only = Filter(type="approval_requested", klass="governance", agent_id="agent-7")
    assert only.matches({"type": "approval_requested", "class": "governance", "agent_id": "agent-7", "other": 1})
    assert not only.matches({"type": "GENERATION", "class": "governance", "agent_id": "agent-7"})
    assert not only.matches({"type": "approval_requested", "class": "llm", "agent_id": "agent-7"})
    assert not only.matches({"type": "approval_requested", "class": "governance", "agent_id": "agent-8"})
    assert only.matches({"type": "approval_requested", "agent_id": "agent-7"})  # no class: it does not narrow
    assert only.matches({"class": None, "agent_id": "agent-7"})


def test_a_filter_reads_the_apis_json_and_writes_it_back():
    parsed = Filter.from_json({"type": "approval_requested", "class": "policy", "agent_id": None})
    assert parsed == Filter(type="approval_requested", klass="policy")
    assert parsed.to_json() == {"type": "approval_requested", "class": "policy"}
    assert Filter.from_json(parsed.to_json()) == parsed


@pytest.mark.parametrize(("value", "field"), [
    ([], "filter"), ("trace.completed", "filter"), ({"type": ""}, "filter.type"),
    ({"type": 3}, "filter.type"), ({"class": ""}, "filter.class"), ({"agent_id": "x" * 257}, "filter.agent_id"),
    ({"agent_id": ["a"]}, "filter.agent_id"), ({"klass": "tool"}, "filter.klass")])
def test_an_invalid_filter_names_the_field(value, field):
    with pytest.raises(ValidationError) as exc:
        Filter.from_json(value)
    assert exc.value.field == field and str(exc.value).startswith(f"{field}: ")


@pytest.mark.parametrize(("text", "seconds"), [
    ("1m,5m,30m", (60.0, 300.0, 1800.0)), ("200ms,400ms", (0.2, 0.4)), ("5s", (5.0,)),
    (" 1.5s , 2h ", (1.5, 7200.0)), ("24h", (86_400.0,)), (",".join(["1s"] * 10), (1.0,) * 10)])
def test_a_retry_schedule_is_parsed_to_seconds(text, seconds):
    assert parse_retry_schedule(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "why"), [
    ("", "'' is not a duration"), ("1m,,5m", "'' is not a duration"), ("5", "'5' is not a duration"),
    ("5 m", "not a duration"), ("1d", "'1d' is not a duration"), ("-1s", "not a duration"),
    ("0s", "'0s' must be above 0"), ("0ms", "must be above 0"), ("25h", "at most 24h"), ("1441m", "at most 24h"),
    ("nanms", "not a duration"), ("1e3s", "not a duration"),
    (",".join(["1s"] * 11), "expected 1 to 10 comma-separated durations, got 11")])
def test_an_invalid_retry_schedule_says_why(text, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_retry_schedule(text)


def test_the_breaker_opens_after_the_threshold_and_a_half_open_probe_closes_it():
    breaker = Breaker(threshold=3, cooldown=30.0)
    for now in (0.0, 1.0):
        assert breaker.allow(now)
        breaker.record(False, now)
        assert breaker.state(now) == "closed"
    breaker.record(False, 2.0)
    assert breaker.state(2.0) == "open" and not breaker.allow(2.0) and not breaker.allow(31.9)
    assert breaker.state(32.0) == "half_open"
    assert breaker.allow(32.0)
    assert not breaker.allow(32.5), "half-open lets one attempt through"
    breaker.record(True, 33.0)
    assert breaker.state(33.0) == "closed" and breaker.allow(33.0) and breaker.failures == 0


def test_a_failed_probe_opens_the_breaker_again():
    breaker = Breaker(threshold=1, cooldown=10.0)
    breaker.record(False, 0.0)
    assert breaker.allow(10.0)
    breaker.record(False, 11.0)
    assert breaker.state(20.9) == "open" and not breaker.allow(20.9)
    assert breaker.state(21.0) == "half_open" and breaker.allow(21.0)


def test_a_success_resets_the_count_of_consecutive_failures():
    breaker = Breaker(threshold=2, cooldown=5.0)
    breaker.record(False, 0.0)
    breaker.record(True, 1.0)
    breaker.record(False, 2.0)
    assert breaker.state(2.0) == "closed"
    breaker.record(False, 3.0)
    assert breaker.state(3.0) == "open"


def test_a_probe_that_never_reports_frees_its_slot_after_the_cooldown():
    breaker = Breaker(threshold=1, cooldown=10.0)
    breaker.record(False, 0.0)
    assert breaker.allow(10.0) and not breaker.allow(19.9)
    assert breaker.allow(20.0)


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, float("nan"))])
def test_a_breaker_needs_a_threshold_and_a_cooldown(threshold, cooldown):
    with pytest.raises(ValueError):
        Breaker(threshold=threshold, cooldown=cooldown)


def test_a_rotated_out_secret_signs_until_its_grace_ends():
    from schemas.webhooks import unexpired

    current, old, gone = ({"secret": "a", "expires_at": None}, {"secret": "b", "expires_at": 2_000},
                          {"secret": "c", "expires_at": 1_000})
    assert unexpired([current, old, gone], 1_500) == [current, old]
    assert unexpired([current, old, gone], 2_000) == [current]


def test_a_new_delivery_is_due_at_once_with_its_stable_id():
    from schemas.webhooks import delivery_id, new_delivery, random_id

    event_id = random_id("webhook.test:")
    assert re.fullmatch(r"webhook\.test:[a-z2-7]{26}", event_id)
    made = new_delivery(event_id, "webhook.test", "acme", "wh_1", 0, {"ping": True}, 7)
    assert made["id"] == delivery_id(event_id, "wh_1") and made["due_at"] == made["created_at"] == 7
    assert made["attempts"] == 0 and json.loads(made["payload"])["data"] == {"ping": True}
