"""The audit record: one versioned, hash-chained entry per outcome, and its canonical JSON body."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from ..evaluation.decision import canonical_json, encode_scalar

RECORD_VERSION = 1
_VERSION = str(RECORD_VERSION)
GENESIS = "0" * 64  # the prev_hash of the first record
KINDS = ("decision", "referral", "rejection", "human", "manifest")

# The main chain has no name; a partition chain of a distributed run is named "<run id>/<partition>".
MAIN = None


def case_key(case_id) -> str | None:
    """The case id as the indexed text column holds it (its canonical JSON: "A1" or 17)."""
    if case_id.__class__ is int:
        return str(case_id)
    return None if case_id is None else json.dumps(case_id, ensure_ascii=False)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_s = encode_scalar


@functools.lru_cache(maxsize=256)
def _ruleset_json(ruleset_id, version, sha) -> str:
    if sha is None:
        return "null"
    return '{"id":' + _s(ruleset_id) + ',"sha256":' + _s(sha) + ',"version":' + _s(version) + "}"


@dataclass(frozen=True)
class Entry:
    """What a caller asks to record; the store adds sequence number, time and the chain."""

    kind: str
    case_id: object
    input: str  # canonical JSON of the case as given
    decision: str  # canonical JSON of the decision
    ruleset_id: str | None
    ruleset_version: str | None
    ruleset_sha256: str | None
    decision_date: str | None
    engine_version: str
    pii: str | None = None  # canonical JSON: which personal fields were pseudonymised or dropped
    work_item: tuple | None = None  # (queue, reason code, reason text, proposed JSON, priority): opens one
    released: str | None = None  # the decision JSON as returned, when the log keeps it masked (pii); not stored
    # record version 2: the compact decision (engine/audit/compact.py), when the decision JSON can be
    # rendered again from ``input``; None keeps the full decision JSON in the record
    meta: str | None = None

    @property
    def input_sha256(self) -> str:
        return sha256(self.input)

    def __reduce__(self):  # a plain tuple: entries travel from batch workers by the thousand
        return (Entry, (self.kind, self.case_id, self.input, self.decision, self.ruleset_id, self.ruleset_version,
                        self.ruleset_sha256, self.decision_date, self.engine_version, self.pii, self.work_item,
                        self.released, self.meta))


@dataclass(frozen=True)
class AuditRecordV1:
    """One record of the audit log. ``hash`` is SHA-256 over ``body``, the canonical JSON of the
    record without its hash; ``body`` embeds the case input and the decision as JSON objects."""

    seq: int
    recorded_at: str
    kind: str
    case_id: object
    input: str
    decision: str
    ruleset_id: str | None
    ruleset_version: str | None
    ruleset_sha256: str | None
    decision_date: str | None
    engine_version: str
    prev_hash: str
    hash: str
    pii: str | None = None
    chain: str | None = None  # None: the main chain; else the partition chain holding the record

    @staticmethod
    def make_body(entry: Entry, seq: int, recorded_at: str, prev_hash: str, chain: str | None = None) -> str:
        # keys in sorted order; every embedded part is itself canonical JSON. A partition chain's
        # records name their chain, so that no record can be moved from one chain to another.
        ruleset = _ruleset_json(entry.ruleset_id, entry.ruleset_version, entry.ruleset_sha256)
        return "".join((
            '{"case_id":', _s(entry.case_id), ',"chain":' + _s(chain) if chain is not None else "",
            ',"decision":', entry.decision,
            ',"decision_date":', _s(entry.decision_date), ',"engine_version":', _s(entry.engine_version),
            ',"input":', entry.input, ',"kind":"', entry.kind, '","pii":', entry.pii or "null",
            ',"prev_hash":"', prev_hash, '","record_version":', _VERSION, ',"recorded_at":"', recorded_at,
            '","ruleset":', ruleset, ',"seq":', str(seq), "}"))

    @classmethod
    def from_body(cls, body: str, hash_: str) -> "AuditRecordV1":
        """Rebuild a record from its stored body (raises ValueError if the body is malformed)."""
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("record_version") != RECORD_VERSION:
            raise ValueError("not a version 1 audit record")
        rs = data.get("ruleset") or {}
        return cls(data["seq"], data["recorded_at"], data["kind"], data["case_id"], canonical_json(data["input"]),
                   canonical_json(data["decision"]), rs.get("id"), rs.get("version"), rs.get("sha256"),
                   data["decision_date"], data["engine_version"], data["prev_hash"], hash_,
                   None if data.get("pii") is None else canonical_json(data["pii"]), data.get("chain"))

    @property
    def body(self) -> str:
        entry = Entry(self.kind, self.case_id, self.input, self.decision, self.ruleset_id, self.ruleset_version,
                      self.ruleset_sha256, self.decision_date, self.engine_version, self.pii)
        return self.make_body(entry, self.seq, self.recorded_at, self.prev_hash, self.chain)

    @property
    def ref(self) -> str:
        """How reports name the record: its sequence number, prefixed by its partition chain if any."""
        return record_ref(self.seq, self.chain)

    @property
    def input_sha256(self) -> str:
        return sha256(self.input)

    def to_dict(self) -> dict:
        """The record as exported (JSONL): its body's fields plus ``hash``."""
        data = json.loads(self.body)
        data["hash"] = self.hash
        return data


def record_ref(seq: int, chain: str | None) -> str:
    return str(seq) if chain is None else f"{chain}:{seq}"
