"""Signed checkpoints end to end: a trace's head lands in a checkpoint, the inclusion proof
and the signature check out with nothing but the response, checkpoints chain together."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.checkpoints import Checkpoint, head_leaf, parse_public_key, verify_signature
from schemas.merkle import verify_inclusion
from tests.support.service import Api, eventually, uid, wait_event_count

pytestmark = pytest.mark.slow


def check_proof(proof: dict) -> Checkpoint:
    """What an offline verifier does: signature over the statement, then the leaf's path to the root."""
    checkpoint, signature = Checkpoint.from_json(proof["checkpoint"])
    assert verify_signature(parse_public_key(proof["checkpoint"]["public_key"]), checkpoint.statement(), signature)
    leaf = proof["leaf"]
    raw = head_leaf(leaf["kind"], leaf["org_id"], leaf["chain"], leaf["seq"], leaf["hash"])
    assert verify_inclusion(raw, proof["leaf_index"], checkpoint.tree_size,
                            [bytes.fromhex(h) for h in proof["path"]], bytes.fromhex(checkpoint.root))
    return checkpoint


async def proof_covering(api: Api, key: str, trace: str, seq: int) -> dict:
    async def probe():
        return await api.get(f"/api/v1/traces/{trace}/verify", key, proof="true")
    _, body = await eventually(probe, lambda r: r[0] == 200 and (r[1]["proof"] or {}).get("leaf", {}).get("seq") == seq)
    return body


async def test_a_trace_head_is_checkpointed_and_its_proof_verifies(stack):
    async with Api(stack.url) as api:
        org = uid("org")
        key, other = await api.org_key(org), await api.org_key(uid("org"))
        trace = uid("tr")
        events = [{"trace_id": trace, "event_id": f"e{i}"} for i in range(3)]
        assert (await api.post("/v1/events", key, events))[0] == 202
        await wait_event_count(api, key, f"/api/v1/traces/{trace}/verify", 3)
        body = await proof_covering(api, key, trace, 3)
        assert body["valid"] is True and body["event_count"] == 3
        first = check_proof(body["proof"])
        leaf = body["proof"]["leaf"]
        assert (leaf["kind"], leaf["org_id"], leaf["chain"]) == ("trace", org, trace)

        # more events: a later checkpoint covers the new head, and links back to earlier ones
        assert (await api.post("/v1/events", key, [{"trace_id": trace, "event_id": "e3"}]))[0] == 202
        later = check_proof((await proof_covering(api, key, trace, 4))["proof"])
        assert later.number > first.number
        # a forged proof fails: another seq for the same leaf
        forged = dict(body["proof"], leaf=dict(leaf, seq=4))
        with pytest.raises(AssertionError):
            check_proof(forged)

        assert (await api.get(f"/api/v1/traces/{trace}/verify", other, proof="true"))[0] == 404
        status, plain = await api.get(f"/api/v1/traces/{trace}/verify", key)
        assert status == 200 and "proof" not in plain and plain["valid"] is True


async def test_checkpoints_are_listed_newest_first_and_chained(stack):
    async with Api(stack.url) as api:
        key = await api.org_key(uid("org"))
        for _ in range(2):  # at least two checkpoints exist once two traces were checkpointed
            trace = uid("tr")
            assert (await api.post("/v1/events", key, [{"trace_id": trace}]))[0] == 202
            await wait_event_count(api, key, f"/api/v1/traces/{trace}/verify", 1)
            await proof_covering(api, key, trace, 1)
        status, body = await api.get("/v1/checkpoints", key, limit="1")
        assert status == 200 and len(body["checkpoints"]) == 1 and body["nextCursor"]
        newest = body["checkpoints"][0]
        status, older = await api.get("/v1/checkpoints", key, limit="200", cursor=body["nextCursor"])
        assert status == 200 and older["checkpoints"][0]["number"] == newest["number"] - 1
        public_key = parse_public_key(body["public_key"])
        chain = [newest] + older["checkpoints"]
        for cp, before in zip(chain, chain[1:], strict=False):
            checkpoint, signature = Checkpoint.from_json(cp)
            assert verify_signature(public_key, checkpoint.statement(), signature)
            assert checkpoint.previous == Checkpoint.from_json(before)[0].digest()
        for params, field in (({"limit": "0"}, "limit"), ({"cursor": "nope"}, "cursor"), ({"since": "x"}, "since")):
            status, answer = await api.get("/v1/checkpoints", key, **params)
            assert status == 400 and answer["error"]["details"]["field"] == field
        assert (await api.get("/v1/checkpoints"))[0] == 401


def verify_file(path, public_key: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "tracehouse.cli", "verify-export", str(path), "--public-key",
                           public_key], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout


REPO = Path(__file__).parents[2]
NODE = shutil.which("node")
#: The verifiers of docs/verifying.md, which share no code with tracehouse: (name, command before the file and
#: key). The JavaScript one where Node.js is installed (``make setup`` then installs its JCS library).
STANDALONE = [("python", [sys.executable, str(REPO / "docs" / "verifiers" / "verify_export.py")]),
              *([("javascript", [NODE, str(REPO / "docs" / "verifiers" / "verify_export.js")])] if NODE else [])]


def standalone(command: list[str], path, public_key: str) -> tuple[int, str]:
    env = {**os.environ, "NODE_PATH": str(REPO / "build" / "node" / "node_modules")}
    done = subprocess.run([*command, str(path), public_key], capture_output=True, text=True, timeout=120, env=env)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the JavaScript export verifier is not run")
def test_the_javascript_verifier_is_among_the_standalone_ones():
    assert [name for name, _ in STANDALONE] == ["python", "javascript"]


async def test_exported_trace_verifies_offline_and_any_edit_fails(stack, tmp_path):
    async with Api(stack.url) as api:
        org = uid("org")
        key = await api.org_key(org)
        admin = await api.org_key(org, scopes=["admin"])
        trace = uid("tr")
        events = [{"event_id": f"{trace}-{i}", "trace_id": trace, "type": t, "agent_name": "deploy-agent",
                   "approval_request_id": "ap-1" if t.startswith("approval") else None,
                   "metadata": {"note": "ünïcode ok", "flag_reason": "prod"} if i == 1 else {},
                   **({"app_id": "app_abc123"} if i == 1 else {})}
                  for i, t in enumerate(("trace_initiated", "approval_requested", "approval_granted"))]
        assert (await api.post("/v1/events", key, events))[0] == 202
        await wait_event_count(api, key, f"/api/v1/traces/{trace}/verify", 3)
        outcome = {"status": "success", "metadata": {"deployment_id": "d-12345"}}
        assert (await api.post(f"/api/v1/traces/{trace}/outcome", key, outcome))[0] == 204
        await proof_covering(api, key, trace, 5)
        assert (await api.get(f"/api/v1/traces/{trace}/export", key))[0] == 403  # admin scope only
        assert (await api.get(f"/api/v1/traces/{trace}/export", await api.org_key(uid("org"), ["admin"])))[0] == 404
        status, export = await api.get(f"/api/v1/traces/{trace}/export", admin)
        assert status == 200
        public_key = (await api.get("/v1/checkpoints", key))[1]["public_key"]

    assert export["trace"]["final_outcome"] == "completed_with_approval" and export["trace"]["agent_name"] == \
        "deploy-agent"
    assert [e["event_type"] for e in export["events"]] == [
        "trace_initiated", "approval_requested", "approval_granted", "operation_executed", "trace_closed"]
    assert export["events"][0]["integrity_hash"].startswith("sha256:")
    assert export["approval_requests"] == [{"id": "ap-1", "status": "approved", "flag_reason": "prod",
                                            "approver_name": None, "decision_note": None,
                                            "decided_at": export["events"][2]["timestamp"]}]
    # a link holds app_id only when it is set (a null one is not in the hashed document)
    assert [link.get("app_id", "(none)") for link in export["integrity"]["chain"]] == [
        "(none)", "app_abc123", "(none)", "(none)", "(none)"]
    text = json.dumps(export, ensure_ascii=False)
    (tmp_path / "ok.json").write_text(text)
    code, out = verify_file(tmp_path / "ok.json", public_key)
    assert code == 0 and "export verified" in out, out

    # one byte changed, in the chain's copy of an event or in the readable copy: both fail
    first, last = text.index("d-12345"), text.rindex("d-12345")
    assert first != last
    for name, at in (("view.json", first), ("chain.json", last)):  # the readable events come first
        (tmp_path / name).write_text(text[:at + 6] + "6" + text[at + 7:])
        code, out = verify_file(tmp_path / name, public_key)
        assert code == 1 and "NOT verified" in out, out
    wrong_key = base64.b64encode(bytes(32)).decode()
    code, out = verify_file(tmp_path / "ok.json", wrong_key)
    assert code == 1 and "not signed by this public key" in out, out

    # the standalone verifiers: the untouched export passes, one byte changed in the chain fails
    for name, command in STANDALONE:
        code, out = standalone(command, tmp_path / "ok.json", public_key)
        assert code == 0 and "export verified" in out, (name, out)
        code, out = standalone(command, tmp_path / "chain.json", public_key)
        assert code == 1 and "hash does not match" in out, (name, out)
        code, out = standalone(command, tmp_path / "ok.json", wrong_key)
        assert code == 1 and "not signed by this key" in out, (name, out)


async def test_an_export_made_before_the_first_checkpoint_verifies_offline(tmp_path):
    """Checkpoints every hour: the key is shown from the first start, and an export of a fresh trace
    asks the checkpointer for a checkpoint and waits for it, so it verifies as it is made."""
    from tests.conftest import start_stack

    broker, service = start_stack(tmp_path / "hourly", TRACEHOUSE_CHECKPOINT_INTERVAL_SECONDS="3600")
    try:
        async with Api(service.url) as api:
            org = uid("org")
            key, admin = await api.org_key(org), await api.org_key(org, scopes=["reviewer"])
            status, listed = await api.get("/v1/checkpoints", key)
            assert status == 200 and listed["checkpoints"] == [] and listed["public_key"]
            trace = uid("tr")
            assert (await api.post("/v1/events", key, [{"event_id": f"{trace}-0", "trace_id": trace,
                                                        "type": "trace_initiated"}]))[0] == 202
            await wait_event_count(api, key, f"/api/v1/traces/{trace}/verify", 1)
            status, export = await api.get(f"/api/v1/traces/{trace}/export", admin)
            assert status == 200 and export["integrity"]["proof"] is not None
            assert export["integrity"]["proof"]["checkpoint"]["public_key"] == listed["public_key"]
            (tmp_path / "fresh.json").write_text(json.dumps(export))
            code, out = verify_file(tmp_path / "fresh.json", listed["public_key"])
            assert code == 0 and "export verified" in out, out
    finally:
        service.stop()
        broker.stop()
