"""Verifying an audit log: recompute every chain and name the first record that is not as written.

Detects a record whose content was edited (with or without recomputing its hash), a deleted,
inserted or reordered record, a back-dated record (earlier than the one before it), a record
whose body is not a well-formed record (reported as edited, never a crash), a head that does
not match the last record (a truncated tail), a stored ruleset whose source no longer matches
its SHA-256 or whose id and version are not those its records name, and — given a signed
checkpoint — a tail truncated together with the head, on any chain.

Every row the log holds is covered by a hash or checked against one:

- a distributed run's partition chains are checked each against its own head, then against the
  run's manifest on the main chain, which committed to every partition chain's record count, last
  hash, spec and summary and to the run's registration (``verify_runs``). Records that no manifest
  commits to are a failure: a run without a manifest is named ``unfinished``, a chain of no run
  ``inserted``;
- work items are checked against the records that open and close them, and the queue's events
  (claims, releases, assignments, review requests) form a hash chain of their own from which each
  item's status, assignee and claim follow (``verify_items``).

Each chain kind is checked by one function (``check_row_chain`` for version 1 rows) that feeds
what later checks need into :class:`Facts`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..evaluation.decision import canonical_json
from .checkpoint import (CHECKPOINT_FIELDS, KeyFileError, check_checkpoint, generate_key,  # noqa: F401 - re-exported
                         load_checkpoint, load_private_key, load_public_key, sign_checkpoint)
from .record import GENESIS, KINDS, RECORD_VERSION, record_ref, sha256
from .store import AuditStore, case_key

MAX_PROBLEMS = 1000


@dataclass(frozen=True, order=True)
class Problem:
    """One inconsistency: the sequence number it concerns, what kind it is, and an explanation;
    ``subject`` names what it concerns when that is not a record ("work item 7", "queue event 3",
    "run R", "ruleset S")."""

    seq: int
    # edited, deleted, inserted, reordered, backdated, broken_chain, truncated, ruleset, checkpoint, partition,
    # unfinished, work_item, queue_event
    kind: str
    message: str
    chain: str = ""  # the partition chain it concerns; "" for the main chain
    subject: str = ""

    @property
    def ref(self) -> str:
        return self.subject or record_ref(self.seq, self.chain or None)

    @property
    def where(self) -> str:
        """How a report names what the problem concerns: "record 5", "record run-1/00000:3", "work item 7"."""
        return self.subject or f"record {self.ref}"


@dataclass
class VerifyReport:
    records: int = 0
    head: tuple[int, str] = (0, GENESIS)
    problems: list[Problem] = field(default_factory=list)
    checkpoint: dict | None = None
    chains: int = 0  # partition chains verified
    runs: int = 0  # distributed runs whose manifest was checked
    unfinished: list[str] = field(default_factory=list)  # runs with no manifest yet (each also a problem)
    work_items: int = 0  # work items checked against their records and events
    queue_events: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> int | None:
        """The first bad record of the main chain (else of any chain); None if only other rows are bad."""
        records = [p for p in self.problems if not p.subject]
        main = [p.seq for p in records if not p.chain]
        return min(main) if main else min(p.seq for p in records) if records else None

    def to_dict(self) -> dict:
        return {"ok": self.ok, "records": self.records, "head": {"seq": self.head[0], "hash": self.head[1]},
                "first_bad_seq": self.first_bad, "partition_chains": self.chains, "runs": self.runs,
                "unfinished_runs": self.unfinished, "work_items": self.work_items, "queue_events": self.queue_events,
                "problems": [{"seq": p.seq, "kind": p.kind, "message": p.message,
                              **({"chain": p.chain} if p.chain else {}), **({"subject": p.subject} if p.subject
                                                                           else {})}
                             for p in sorted(self.problems)]}


class _Problems:
    """Collects one chain's problems (up to MAX_PROBLEMS in all) and which records they flag."""

    def __init__(self, problems: list[Problem], chain: str):
        self.problems, self.chain, self.flagged = problems, chain, set()

    def __call__(self, seq: int, kind: str, message: str) -> None:
        self.flagged.add(seq)
        if len(self.problems) < MAX_PROBLEMS:
            text = f"partition chain {self.chain}: {message}" if self.chain else message
            self.problems.append(Problem(seq, kind, text, self.chain))


def other_problem(problems: list[Problem]):
    """An adder for problems of rows that are not records: ``add(subject, kind, message)``."""
    def add(subject: str, kind: str, message: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(Problem(0, kind, message, "", subject))
    return add


class _Rulesets:
    """The stored ruleset sources, checked against their SHA-256 once, and their id and version against
    what the records that use them name; each bad one reported once."""

    def __init__(self, store: AuditStore):
        self.store = store
        self.stored = {rs.sha256: rs for rs in store.rulesets()}
        self.bad = {sha for sha, rs in self.stored.items()
                    if not isinstance(rs.source, str) or not isinstance(sha, str) or sha256(rs.source) != sha}
        self.reported: set[str] = set()
        self.named: set[str] = set()
        self._versions: dict = {None: None}

    def check(self, rs_sha: str | None, seq: int, add, named: dict | None = None) -> None:
        if rs_sha is None or rs_sha in self.reported:
            return
        if rs_sha not in self.stored:
            add(seq, "ruleset", f"record {seq} names ruleset {rs_sha[:12]}, whose source is not in the log")
            self.reported.add(rs_sha)
        elif rs_sha in self.bad:
            rs = self.stored[rs_sha]
            add(seq, "ruleset", f"the stored source of ruleset {rs.ruleset_id} {rs.version} no longer matches "
                f"its SHA-256 {rs_sha[:12]}")
            self.reported.add(rs_sha)
        elif named is not None and rs_sha not in self.named:
            rs = self.stored[rs_sha]
            self.named.add(rs_sha)
            if (rs.ruleset_id, rs.version) != (named.get("id"), named.get("version")):
                add(seq, "ruleset", f"the stored ruleset {rs_sha[:12]} is listed as {rs.ruleset_id} {rs.version}, "
                    f"but record {seq} names it {named.get('id')} {named.get('version')}")
                self.reported.add(rs_sha)

    def _version(self, rs_sha: str | None):
        """The ruleset version its stored source loads as (None: not stored, not as hashed, or not loading)."""
        if rs_sha not in self._versions:
            version = None
            rs = self.stored.get(rs_sha)  # type: ignore[arg-type]
            if rs is not None and rs_sha not in self.bad:
                from ..language.load import load_text
                try:
                    version = load_text(rs.source, rs.path).latest
                except Exception:  # noqa: BLE001 - a source that no longer loads is reported by replay
                    pass
            self._versions[rs_sha] = version
        return self._versions[rs_sha]

    def review_queue(self, rs_sha: str | None) -> str:
        """The review queue of the ruleset version (where its rejections go), as the engine chose it."""
        version = self._version(rs_sha)
        return "review" if version is None else version.model.review_queue

    def check_columns(self, other) -> None:
        """Every stored ruleset's id and version columns against what its source (checked against its
        SHA-256) says; ``other(subject, kind, message)`` for each that differs."""
        for sha, rs in sorted(self.stored.items()):
            version = self._version(sha)
            if version is not None and (rs.ruleset_id, rs.version) != (version.id, version.version):
                other(f"ruleset {sha[:12]}", "ruleset", f"the stored ruleset {sha[:12]} is listed as {rs.ruleset_id} "
                      f"{rs.version}, but its source is {version.id} {version.version}")


@dataclass
class Facts:
    """What the chains' records commit to that later checks need: the work items records open, the
    items caseworkers' records close, the records decisions made again supersede, and the manifests.
    Filled by each chain kind's check function from records whose hash verifies."""

    # (chain, seq) -> the item it opened: (case key, queue, reason code, reason text, proposed, priority, created at)
    opens: dict = field(default_factory=dict)
    closes: dict = field(default_factory=dict)  # item id -> (seq, record seq, record chain, decided by, case key)
    supersedes: dict = field(default_factory=dict)  # (chain, seq) -> the superseding record's seq (main chain)
    manifests: list = field(default_factory=list)  # (seq, manifest dict, input text)
    ends: dict = field(default_factory=dict)  # chain (None: main) -> its last record's seq


def verify(store: AuditStore, *, checkpoint: dict | None = None, public_key: bytes | None = None) -> VerifyReport:
    """Recompute every hash and link of the log — the main chain and every partition chain of a
    distributed run — check each run's manifest against its partition chains, the work items
    against their records and the queue's event chain, and optionally a signed checkpoint of
    every chain's head."""
    from .verify_items import check_work_items
    from .verify_runs import check_runs
    report = VerifyReport(head=store.head())
    problems = report.problems

    def adder(chain: str) -> "_Problems":
        return _Problems(problems, chain)

    rulesets = _Rulesets(store)
    facts = Facts()
    add = adder("")
    from .verify_blocks import check_blocks
    end = check_row_chain(store.rows(), None, add, rulesets, report, facts)
    last_seq, _ = end = check_blocks(store, None, end, add, report, rulesets, facts)
    check_head(report.head, end, add)

    heads = {c.chain: c for c in store.chains()}
    ends: dict[str, tuple[int, int, str]] = {}  # chain -> (records, last seq, last hash)
    for name in store.chain_names():
        report.chains += 1
        info = heads.get(name)
        chain_add = adder(name)
        if info is None:
            chain_add(1, "partition", "the chain's head is missing (records of a chain the log does not list)")
        head = (info.seq, info.hash) if info is not None else (0, GENESIS)
        n_before = report.records
        end = check_row_chain(store.chain_rows(name), None, chain_add, rulesets, report, facts, chain=name)
        end_seq, end_hash = end = check_blocks(store, name, end, chain_add, report, rulesets, facts)
        check_head(head, end, chain_add)
        ends[name] = (report.records - n_before, end_seq, end_hash)
    rulesets.check_columns(other_problem(problems))
    check_runs(store, facts, ends, heads, report, add, adder, other_problem(problems))
    check_work_items(store, facts, report, adder, other_problem(problems))
    if checkpoint is not None:
        report.checkpoint = checkpoint
        check_checkpoint(store, checkpoint, public_key, last_seq, add, adder, other_problem(problems))
    return report


# -- one function per chain kind ------------------------------------------------------------------

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_FIELDS = {"seq": int, "recorded_at": str, "kind": str, "prev_hash": str, "decision": dict, "engine_version": str}


_NONE = type(None)
_CASE_TYPES, _OPTIONAL_TEXT, _OPTIONAL_OBJECT = (str, int, _NONE), (str, _NONE), (dict, _NONE)


def malformed(data) -> str | None:
    """Why a parsed body is not a well-formed version 1 record (None when it is): a correctly hashed
    body of the wrong shape is a forgery, reported as an edit."""
    if data.__class__ is dict and data.get("record_version") == RECORD_VERSION and data.get("seq").__class__ is int \
            and data.get("prev_hash").__class__ is str and data.get("decision").__class__ is dict \
            and data.get("engine_version").__class__ is str and data.get("kind") in KINDS \
            and data.get("recorded_at").__class__ is str and _TIME.fullmatch(data["recorded_at"]) \
            and "input" in data and data.get("case_id", ...).__class__ in _CASE_TYPES \
            and data.get("decision_date", ...).__class__ in _OPTIONAL_TEXT and data.get("pii", ...).__class__ in \
            _OPTIONAL_OBJECT and data.get("chain").__class__ in _OPTIONAL_TEXT:
        rs = data.get("ruleset", ...)
        if rs is None or (rs.__class__ is dict and rs.get("id").__class__ is str and rs.get("sha256").__class__ is str
                          and rs.get("version").__class__ is str):
            return None
    return _why_malformed(data)


def _why_malformed(data) -> str:
    if not isinstance(data, dict):
        return f"its body is a JSON {type(data).__name__}, not a record"
    if data.get("record_version") != RECORD_VERSION:
        return "its body has no record_version 1"
    for key, kind in _FIELDS.items():
        if type(data.get(key)) is not kind:
            return f"its field {key} is missing or not a {kind.__name__}"
    for key in ("input", "case_id", "decision_date", "ruleset", "pii"):
        if key not in data:
            return f"its field {key} is missing"
    if data["kind"] not in KINDS:
        return f"its kind {data['kind']!r} is not a record kind"
    if not _TIME.fullmatch(data["recorded_at"]):
        return "its recorded_at is not a time as the log writes it"
    if type(data["case_id"]) not in (str, int, type(None)) or type(data["decision_date"]) not in (str, type(None)):
        return "its case_id or decision_date is not a string, a number or null"
    if type(data.get("chain")) not in (str, type(None)) or type(data["pii"]) not in (dict, type(None)):
        return "its chain or pii field is of the wrong type"
    return "its ruleset is not an object of id, sha256 and version"


def check_row_chain(rows, head: tuple[int, str] | None, add, rulesets: _Rulesets, report: VerifyReport, facts: Facts,
                    chain: str | None = None) -> tuple[int, str]:
    """Check one chain of version 1 rows (one record a row) in order against its head; feed ``facts``.
    Returns the last (seq, hash)."""
    flagged = add.flagged
    expected, prev_hash, prev_prev_hash, prev_time = 1, GENESIS, None, ""
    last_seq, last_hash = 0, GENESIS
    backdated: list[tuple[int, str]] = []
    for seq, recorded_at, kind, cid, input_sha, rs_sha, body, prev_col, hash_ in rows:
        seq = int(seq)
        report.records += 1
        if seq > expected:
            gap = f"{expected}" if seq == expected + 1 else f"{expected} to {seq - 1}"
            add(expected, "deleted", f"record{'s' if seq > expected + 1 else ''} {gap} "
                f"{'are' if seq > expected + 1 else 'is'} missing")
        hashed = sha256(body) == hash_
        if not hashed:
            add(seq, "edited", f"record {seq} was changed: its content does not match its hash")
        try:
            data = json.loads(body)
            why = malformed(data)
        except (ValueError, RecursionError):
            data, why = None, "its body is not valid JSON"
        if why is not None:
            if hashed:
                add(seq, "edited", f"record {seq} was forged or changed: {why}")
            prev_prev_hash, prev_hash, expected = prev_hash, hash_, seq + 1
            last_seq, last_hash = seq, hash_
            continue
        body_seq = data["seq"]
        if body_seq != seq:
            if body_seq == seq - 1:
                add(seq - 1, "inserted", f"record {seq - 1} was inserted: the record now at {seq} was "
                    f"written as {body_seq}")
            elif body_seq == seq + 1:
                add(seq, "deleted", f"record {seq} was deleted and later records renumbered")
            else:
                add(seq, "reordered", f"record {seq} holds the record written as {body_seq}")
        elif data["prev_hash"] != prev_hash and seq == expected and not flagged & {seq, seq - 1}:
            if prev_prev_hash is not None and data["prev_hash"] == prev_prev_hash:
                add(seq - 1, "inserted", f"record {seq - 1} was inserted: record {seq} follows record {seq - 2}")
            elif seq > 1:
                add(seq - 1, "edited", f"record {seq - 1} was changed and its hash recomputed: record {seq} "
                    "names a different predecessor")
            else:
                add(seq, "broken_chain", "the first record does not start the chain")
        if data.get("chain") != chain:
            add(seq, "inserted", f"record {seq} was written to chain {data.get('chain') or 'main'}, not this one")
        if data["recorded_at"] < prev_time:  # reported at the end, unless the record is named for more already
            backdated.append((seq, f"record {seq} is dated {data['recorded_at']}, before the record before it "
                              f"({prev_time}): it was written out of order or back-dated"))
        try:
            _check_columns(seq, data, kind, cid, input_sha, rs_sha, prev_col, recorded_at, add)
        except (ValueError, TypeError, RecursionError):
            add(seq, "edited", f"record {seq} was forged or changed: its input cannot be read")
        rulesets.check(rs_sha, seq, add, data["ruleset"])
        if hashed:
            try:
                record_facts(facts, data, seq, chain, rulesets)
            except (ValueError, TypeError, RecursionError) as exc:
                add(seq, "edited", f"record {seq} was forged or changed: {exc}")
        prev_prev_hash, prev_hash, expected = prev_hash, hash_, seq + 1
        last_seq, last_hash, prev_time = seq, hash_, max(prev_time, data["recorded_at"])
    facts.ends[chain] = last_seq
    for seq, message in backdated:
        if seq not in flagged:
            add(seq, "backdated", message)
    if head is not None:
        check_head(head, (last_seq, last_hash), add)
    return last_seq, last_hash


def check_head(head: tuple[int, str], end: tuple[int, str], add) -> None:
    """A chain's head row against its last record (a cut tail, or a head that was changed)."""
    (head_seq, head_hash), (last_seq, last_hash) = head, end
    if head_seq > last_seq:
        add(last_seq + 1, "truncated", f"the log ends at record {last_seq} but its head says {head_seq}")
    elif (head_seq, head_hash) != (last_seq, last_hash):
        add(min(head_seq, last_seq) or 1, "broken_chain",
            f"the head (record {head_seq}) does not match the last record ({last_seq})")


def _check_columns(seq: int, data: dict, kind, cid, input_sha, rs_sha, prev_col, recorded_at, add) -> None:
    """The row's indexed columns must be what its body says."""
    columns = {"kind": (kind, data["kind"]), "case_id": (cid, case_key(data["case_id"])),
               "prev_hash": (prev_col, data["prev_hash"]), "recorded_at": (recorded_at, data["recorded_at"]),
               "ruleset_sha256": (rs_sha, (data["ruleset"] or {}).get("sha256"))}
    if data["input"] is not None:
        columns["input_sha256"] = (input_sha, sha256(canonical_json(data["input"])))
    for name, (col, val) in columns.items():
        if col != val:
            add(seq, "edited", f"record {seq}: column {name} was changed ({col!r}, the record says {val!r})")
            break


def _codes(decision: dict) -> set:
    errors = decision.get("errors")
    return {e.get("code") for e in errors if isinstance(e, dict)} if isinstance(errors, list) else set()


class _StoredDecision:
    """A stored decision JSON read as :func:`~vedtak.audit.log.work_item` reads a decision."""

    def __init__(self, d: dict):
        referral = d.get("referral")
        self.status, self.outcome, self.queue = d.get("status"), d.get("outcome"), d.get("queue")
        self.values, self.reasons = d.get("values") or {}, d.get("reasons") or []
        self.referral_reason = referral.get("reason") if isinstance(referral, dict) else None
        if not isinstance(self.reasons, list) or not all(isinstance(r, str) for r in self.reasons) \
                or not isinstance(self.values, dict):
            raise ValueError("its decision's reasons or values are malformed")


class _Version:
    """What :func:`~vedtak.audit.log.work_item` reads of a ruleset version: the review queue."""

    def __init__(self, review_queue: str):
        self.model = type("Model", (), {"review_queue": review_queue})


def record_facts(facts: Facts, data: dict, seq: int, chain: str | None, rulesets: _Rulesets) -> None:
    """Note what a well-formed, correctly hashed record commits to (see :class:`Facts`); raises
    ValueError for a decision of the wrong shape."""
    kind, decision = data["kind"], data["decision"]
    if kind == "decision" and "supersedes" not in decision:
        return  # the common case: an automated decision opens, closes and supersedes nothing
    from .log import work_item
    if kind == "referral" or (kind == "rejection" and "already_decided" not in _codes(decision)):
        # the same function that built the item when the record was written
        rs_sha = (data["ruleset"] or {}).get("sha256")
        version = _Version(rulesets.review_queue(rs_sha)) if rs_sha is not None else None
        queue, reason, text, proposed, priority = work_item(_StoredDecision(decision), version)
        facts.opens[(chain, seq)] = (case_key(data["case_id"]), queue, reason, text, proposed, priority,
                                     data["recorded_at"])
    elif kind == "human":
        closes = decision.get("closes")
        if closes is not None:
            if not isinstance(closes, dict) or type(closes.get("work_item")) is not int \
                    or type(closes.get("record")) not in (int, type(None)) \
                    or type(closes.get("chain")) not in (str, type(None)) \
                    or type(decision.get("decided_by")) is not str:
                raise ValueError("it closes a work item it does not name as the queue writes it")
            facts.closes.setdefault(closes["work_item"], []).append(
                (seq, closes.get("record"), closes.get("chain"), decision["decided_by"], case_key(data["case_id"])))
    elif kind == "manifest" and chain is None:
        facts.manifests.append((seq, decision, canonical_json(data["input"])))
    if kind in ("decision", "referral") and "supersedes" in decision and chain is None:  # decided again
        target = decision["supersedes"]
        if type(target) is not int or type(decision.get("supersedes_chain")) not in (str, type(None)):
            raise ValueError("it supersedes a record it does not name as the engine writes it")
        facts.supersedes[(decision.get("supersedes_chain"), target)] = seq
