"""``tracehouse verify-export FILE --public-key KEY``: check a single-trace export offline (or, given a
daily dump's ``manifest.json``, the dump: ``tracehouse.verify_dump``).

Three checks, each needing nothing but the file and the public key:

1. the chain: every link's hash recomputed from the event as exported (schemas.integrity);
2. the readable parts (``trace``, ``events``, ``approval_requests``) are exactly what the
   chain says (schemas.trace_export), so an edit there is caught too;
3. the anchor: the checkpoint's signature with KEY, the chain's head at the checkpointed
   seq, and its Merkle inclusion proof up to the signed root.

Only ``exported_at`` is covered by none of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.checkpoints import Checkpoint, head_leaf, parse_public_key, verify_signature
from schemas.integrity import verify
from schemas.merkle import verify_inclusion
from schemas.timefmt import parse_ms
from schemas.trace_export import trace_export


@dataclass
class Report:
    """What verify-export found: ``problems`` empty means the export checks out."""

    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(document: Any, public_key_text: str) -> Report:
    """Check an export (the parsed JSON) against the signing key's public half."""
    report = Report()
    try:
        chain = document["integrity"]["chain"]
        proof = document["integrity"]["proof"]
        trace_id = document["trace"]["id"]
    except (KeyError, TypeError):
        report.problems.append("not a tracehouse trace export (integrity.chain, integrity.proof or trace.id missing)")
        return report
    if not chain:
        report.problems.append("the export holds no events")
        return report
    head = (proof["leaf"]["seq"], proof["leaf"]["hash"]) if proof else None
    verdict = verify(chain, "event_id", expected_head=head)
    if not verdict.valid:
        where = f" at event {verdict.first_invalid_event}" if verdict.first_invalid_event else ""
        report.problems.append(f"chain broken{where}: {verdict.reason}")
    else:
        report.notes.append(f"chain: {verdict.event_count} events, every hash recomputed")
    _check_views(document, trace_id, chain, proof, report)
    if proof is None:
        report.problems.append("no checkpoint covers this trace yet: nothing anchors its head (export it again later)")
    else:
        _check_anchor(proof, trace_id, chain, public_key_text, report)
    return report


def _check_views(document: Any, trace_id: str, chain: list, proof: Any, report: Report) -> None:
    try:
        expected = trace_export(trace_id, chain, proof, parse_ms(document["exported_at"]))
    except (KeyError, TypeError, ValueError) as exc:
        report.problems.append(f"the events cannot be read back: {exc!r}")
        return
    for part in ("trace", "events", "approval_requests"):
        if document.get(part) != expected[part]:
            report.problems.append(f"'{part}' differs from what the chain records")


def _check_anchor(proof: Any, trace_id: str, chain: list, public_key_text: str, report: Report) -> None:
    try:
        checkpoint, signature = Checkpoint.from_json(proof["checkpoint"])
        leaf = proof["leaf"]
        raw = head_leaf(leaf["kind"], leaf["org_id"], leaf["chain"], leaf["seq"], leaf["hash"])
        path = [bytes.fromhex(h) for h in proof["path"]]
        key = parse_public_key(public_key_text)
    except (KeyError, TypeError, ValueError) as exc:
        report.problems.append(f"malformed proof or key: {exc}")
        return
    if not verify_signature(key, checkpoint.statement(), signature):
        report.problems.append(f"checkpoint {checkpoint.number} is not signed by this public key")
    if (leaf["kind"], leaf["org_id"], leaf["chain"]) != ("trace", chain[0]["org_id"], trace_id):
        report.problems.append("the proof is for another chain")
    if not verify_inclusion(raw, proof["leaf_index"], checkpoint.tree_size, path, bytes.fromhex(checkpoint.root)):
        report.problems.append(f"the head is not included in checkpoint {checkpoint.number}'s root")
    if report.ok:
        later = len(chain) - leaf["seq"]
        report.notes.append(f"checkpoint {checkpoint.number}: signature valid, head seq {leaf['seq']} included"
                            + (f" ({later} later events not yet checkpointed)" if later else ""))


def read_public_key(value: str) -> str:
    """``--public-key``: the key itself (base64 or PEM), or a file holding it."""
    path = Path(value)
    return path.read_text() if len(value) < 4096 and path.is_file() else value


def main(file: str, public_key: str) -> int:
    """Print the findings; exit status 0 when the export (or the dump) checks out, 1 otherwise. ``file``
    is a path or, for a daily dump's manifest, any fsspec URL."""
    import fsspec

    from tracehouse.verify_dump import is_manifest, verify_dump

    try:
        with fsspec.open(file, "rb") as f:
            document = json.loads(f.read())
    except (OSError, ValueError) as exc:
        print(f"cannot read {file}: {exc}")
        return 1
    dump = is_manifest(document)
    if dump:
        report = verify_dump(file, document, read_public_key(public_key))
    else:
        report = verify_export(document, read_public_key(public_key))
    for note in report.notes:
        print(f"ok: {note}")
    for problem in report.problems:
        print(f"FAILED: {problem}")
    what = "dump" if dump else "export"
    print(f"{what} verified" if report.ok else f"{what} NOT verified")
    return 0 if report.ok else 1
