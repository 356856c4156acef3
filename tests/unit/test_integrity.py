"""Hash chains: linking, retries, and verification naming the first bad event."""

import hashlib
import json

import pytest
import rfc8785

from schemas.integrity import GENESIS, JCS_HASH, LEGACY_HASH, Verdict, as_link, link_hash, omitted_when_null, verify


def ev(i: int, **kw) -> dict:
    return {"event_id": f"e{i}", "org_id": "o", "trace_id": "t", "type": "SPAN", "occurred_at": 1_795_428_000_000 + i,
            "metadata": {"k": str(i)}, "tags": [], "scores": {}, "input": None} | kw


def chained(n: int, versions: tuple[int, ...] = (JCS_HASH,)) -> list[dict]:
    """``n`` stored links; link i hashed with ``versions[(i - 1) % len(versions)]``."""
    rows, prev = [], GENESIS
    for i in range(1, n + 1):
        version = versions[(i - 1) % len(versions)]
        rows.append(ev(i) | {"seq": i, "prev_hash": prev, "hash": link_hash(ev(i), i, prev, version),
                             "hash_version": version})
        prev = rows[-1]["hash"]
    return rows


def test_hash_is_sha256_of_rfc8785_json_with_seq_prev_hash_and_version():
    event = ev(1, cost=2.0, scores={"q": 1e-07, "\U0001f600": 0.5, "\ufb33": 1.5})  # where JCS differs
    doc = event | {"seq": 1, "prev_hash": GENESIS, "hash_version": 2}
    assert link_hash(event, 1, GENESIS) == hashlib.sha256(rfc8785.dumps(doc)).hexdigest()
    legacy = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(legacy.encode()).hexdigest() != link_hash(event, 1, GENESIS)


def test_legacy_links_hash_python_sorted_json_without_the_version():
    doc = ev(1) | {"seq": 1, "prev_hash": GENESIS}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert link_hash(ev(1), 1, GENESIS, LEGACY_HASH) == hashlib.sha256(text.encode()).hexdigest()


def test_a_chain_sealed_partly_before_and_partly_after_the_change_verifies():
    rows = chained(6, versions=(LEGACY_HASH, LEGACY_HASH, JCS_HASH))
    assert verify(rows, "event_id").valid
    for row in rows[:2]:
        del row["hash_version"]  # what a reader of the earlier rows saw: no version means 1
    assert verify(rows, "event_id").valid


@pytest.mark.parametrize("version", [LEGACY_HASH, 3, "2"])
def test_relabelling_a_links_version_breaks_it(version):
    rows = chained(3)
    rows[1]["hash_version"] = version
    verdict = verify(rows, "event_id")
    assert not verdict.valid and verdict.first_invalid_event == "e2"


def test_links_count_from_one_and_point_back():
    rows = chained(3)
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[0]["prev_hash"] == GENESIS and rows[1]["prev_hash"] == rows[0]["hash"]
    assert verify(rows, "event_id").valid


@pytest.mark.parametrize("tamper, first_bad", [
    (lambda rows: rows[2]["metadata"].update(k="changed"), "e3"),
    (lambda rows: rows.pop(1), "e3"),                      # deleted
    (lambda rows: rows.insert(2, dict(rows[1])), "e2"),     # duplicated (second copy is the bad one)
    (lambda rows: rows.__setitem__(slice(1, 3), [rows[2], rows[1]]), "e3"),  # reordered
    (lambda rows: rows.insert(1, ev(99) | {"seq": 2, "prev_hash": rows[0]["hash"],
                                           "hash": link_hash(ev(99), 2, rows[0]["hash"]),
                                           "hash_version": JCS_HASH}), "e2"),  # inserted
    (lambda rows: rows[3].update(occurred_at=1), "e4"),
])
def test_tampering_names_the_first_invalid_event(tamper, first_bad):
    rows = chained(5)
    tamper(rows)
    verdict = verify(rows, "event_id")
    assert not verdict.valid and verdict.first_invalid_event == first_bad


def test_truncated_tail_is_caught_only_with_a_checkpointed_head():
    rows = chained(5)
    head = (5, rows[4]["hash"])
    assert verify(rows[:3], "event_id").valid  # nothing says a tail existed
    verdict = verify(rows[:3], "event_id", expected_head=head)
    assert not verdict.valid and "seq 5" in verdict.reason
    assert verify(rows, "event_id", expected_head=head).valid


def test_a_null_app_id_is_left_out_of_the_hashed_document_so_earlier_links_verify():
    """Links sealed before TraceEvent had app_id were hashed without it: read back with app_id null
    (the default), they still verify, in both hash versions; a set app_id is hashed."""
    earlier = chained(4, (LEGACY_HASH, JCS_HASH))
    assert all("app_id" not in row for row in earlier)
    read_back = [row | {"app_id": None} for row in earlier]
    assert verify(read_back, "event_id").valid
    assert link_hash(ev(1, app_id=None), 1, GENESIS) == link_hash(ev(1), 1, GENESIS)
    with_app = ev(1, app_id="app_abc123")
    doc = with_app | {"seq": 1, "prev_hash": GENESIS, "hash_version": 2}
    assert link_hash(with_app, 1, GENESIS) == hashlib.sha256(rfc8785.dumps(doc)).hexdigest()
    assert link_hash(with_app, 1, GENESIS) != link_hash(ev(1), 1, GENESIS)


def test_an_app_id_set_or_cleared_after_sealing_breaks_the_link():
    rows = chained(2)
    tampered = [rows[0] | {"app_id": "app_x"}, rows[1]]
    assert verify(tampered, "event_id") == Verdict(False, 1, "e1", "hash does not match the event's content")
    sealed = [ev(1, app_id="app_x") | {"seq": 1, "prev_hash": GENESIS, "hash_version": JCS_HASH,
                                       "hash": link_hash(ev(1, app_id="app_x"), 1, GENESIS)}]
    assert verify(sealed, "event_id").valid
    assert not verify([sealed[0] | {"app_id": None}], "event_id").valid


def test_as_link_drops_only_null_omit_null_fields():
    assert omitted_when_null("TraceEvent") == ("app_id",)
    assert omitted_when_null("AuditEvent") == ()
    assert as_link({"app_id": None, "name": None, "x": 1}) == {"name": None, "x": 1}
    assert as_link({"app_id": "a", "name": None}) == {"app_id": "a", "name": None}
