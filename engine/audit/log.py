"""Deciding with an audit log: each decision is committed to the log before it is returned."""

from __future__ import annotations

import dataclasses
import json
import re

import msgspec
from collections.abc import Iterable, Iterator

from ..evaluation.compile import Plan
from ..evaluation.decision import Decision, canonical_json
from .blocks import CODECS, compress_check
from .compact import compact_fields
from .pii import PII_MODES, PiiPolicy, stored_decision  # noqa: F401 - PII_MODES, PiiPolicy: re-exported
from .record import Entry
from .store import AuditStore, PriorRecord, case_key, stored_ruleset

KIND_OF_STATUS = {"decided": "decision", "referred": "referral", "rejected": "rejection"}


# Referrals a caseworker should see first: the rules could not run, or data is missing.
PRIORITY = {"evaluation-error": 2, "missing-data": 1, "missing-parameter": 1}


def work_item(decision: Decision, version, reasons: list[str] | None = None, values: dict | None = None) -> tuple:
    """The work item a referral or rejection opens: queue, reason code and text, proposal, priority.

    ``reasons`` and ``values`` are the reasons and values as the log stores them (without personal
    data), when they differ from the decision's own."""
    text = " ".join(decision.reasons if reasons is None else reasons)
    if decision.status == "rejected":
        queue = version.model.review_queue if version is not None else "review"
        return (queue, "invalid-input", text, None, 1)
    proposed = None
    if decision.outcome is not None:
        proposed = canonical_json({"outcome": decision.outcome,
                                   "values": decision.values if values is None else values})
    reason = decision.referral_reason or "rule"
    return (decision.queue, reason, text, proposed, PRIORITY.get(reason, 0))


def as_released(stored: str, entry: Entry) -> str:
    """A decision recorded earlier, to release again (resuming a run), as it was released: ``stored``
    is its decision JSON from the log, ``entry`` the entry of the same case decided again now.

    When the log keeps the decision masked (personal data), the same input decided again by the
    same ruleset version gives exactly the stored masked text, and with it the text released then:
    that is released, never the masked copy. Otherwise the stored text is."""
    if entry.released is None:
        return stored
    recorded = json.loads(stored)
    extra = {k: recorded.pop(k) for k in ("supersedes", "supersedes_chain") if k in recorded}
    if canonical_json(recorded) != entry.decision:
        return stored
    return canonical_json({**json.loads(entry.released), **extra}) if extra else entry.released


def open_store(db: str, *, timeout: float = 60.0, read_only: bool = False) -> AuditStore:
    """Open (creating if need be) the audit store at ``db``: a SQLite path or a postgresql:// URL.
    ``timeout``: how many seconds a write waits for another process's lock on the log before it
    fails with :class:`~vedtak.audit.store.StoreError`. ``read_only``: open an existing log to read
    it only; opening writes nothing and waits for no writer (a log whose schema must be created or
    upgraded first is a StoreError with reason "upgrade")."""
    if db.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore
        return PostgresStore(db, timeout=timeout, read_only=read_only)
    from .sqlite import SQLiteStore
    return SQLiteStore(db, timeout=timeout, read_only=read_only)


_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def input_text(raw) -> str:
    """The canonical encoding a library caller's case is recorded in: JSON with sorted keys and
    no whitespace, decimals and dates as strings (read back, the same case)."""
    try:
        text = _encode_sorted(raw).decode("utf-8")
    except (TypeError, ValueError, UnicodeError, OverflowError, RecursionError, msgspec.EncodeError):
        try:
            return canonical_json(raw)
        except TypeError:  # keys of mixed types cannot be sorted: written as strings
            return canonical_json(_string_keys(raw))
    return text if text.isascii() or not _LONE.search(text) else canonical_json(raw)


_LONE = re.compile("[\ud800-\udfff]")


def _string_keys(value):
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_string_keys(v) for v in value]
    return value


def make_entry(decision: Decision, raw, pii: PiiPolicy, text: str | None = None) -> Entry:
    """The audit entry for a decision on the raw case it was made from (``text``: the case as
    received, a batch's line, which the log then keeps instead of the canonical JSON of ``raw``)."""
    period = decision.period
    version = period.version if period is not None else None
    meta, as_received = None, False
    if pii.mode == "keep" or (type(raw) is dict and {e.code for e in decision.errors} == {"malformed_input"}):
        # a line the batch could not read is recorded as the reader's note of where it was and
        # why (source, line, error), never with its content: there is nothing personal to remove
        kept, note, stored, reasons, values, released = raw, None, decision.to_json(), None, None, None
        # a rejection keeps its decision JSON: what it was made from need not read back the same
        meta = compact_fields(decision) if decision.status != "rejected" else None
        as_received = True
    else:
        # nothing personal reaches the log: not the input, the decision text, nor a work item's reason
        kept, touched, withheld = pii.scrub_input(version.model.case if version else {}, raw)
        stored, masked, reasons, values = stored_decision(decision, touched, withheld, pii)
        released = decision.to_json() if masked else None
        note = pii.note(touched, masked, released or "")
    day = decision.decision_date
    item = None if decision.status == "decided" else work_item(decision, version, reasons, values)
    kind = KIND_OF_STATUS[decision.status]
    given = text if as_received and text is not None else input_text(kept)
    if version is None:
        return Entry(kind, decision.case_id, given, stored, None, None, None, None,
                     decision.engine_version, note, item, released)
    return Entry(kind, decision.case_id, given, stored, version.id, version.version,
                 version.sha256, day.isoformat() if day else None, decision.engine_version, note, item, released, meta)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class AuditLog:
    """An audit store plus the policy for writing to it.

    >>> log = AuditLog.open("audit.db")                   # doctest: +SKIP
    >>> decision = log.decide(plan, case)                  # recorded, then returned
    >>> for d in log.decide_many(plan, cases): ...         # committed in batches, then released
    """

    def __init__(self, store: AuditStore, *, pii: str = "keep", pii_key: bytes | None = None,
                 batch_size: int = 1000, compress: str = "none", keep_released: bool = False):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if compress not in CODECS:
            raise ValueError(f"compress must be one of {', '.join(CODECS)}, not {compress!r}")
        compress_check(compress)
        self.store = store
        # what each block's records keep: compressed with zstd or not; the full released decision JSON
        # too (keep_released), or only its SHA-256 and what renders it again
        store.codec, store.keep_released = compress, keep_released
        self.pii = PiiPolicy(pii, pii_key)
        self.batch_size = batch_size
        self._stored: set[str] = set()

    @classmethod
    def open(cls, db: str, *, timeout: float = 60.0, **options) -> "AuditLog":
        return cls(open_store(db, timeout=timeout), **options)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def entry(self, decision: Decision, raw) -> Entry:
        """The audit entry for a decision on the raw case it was made from."""
        return make_entry(decision, raw, self.pii)

    def _new_rulesets(self, plan: Plan) -> list:
        return [stored_ruleset(v) for v in plan.ruleset.versions if v.sha256 not in self._stored]

    def record(self, plan: Plan, pairs: list[tuple[object, Decision]]) -> list[tuple[int, str]]:
        """Commit the records of already-made decisions, in one transaction; their (seq, hash)."""
        rulesets = self._new_rulesets(plan)
        records = self.store.append([self.entry(d, raw) for raw, d in pairs], rulesets)
        self._stored.update(r.sha256 for r in rulesets)
        return records

    def decide(self, plan: Plan, raw) -> Decision:
        """Decide one case and commit its record; the decision is returned only once recorded."""
        decision = plan.decide(raw)
        self.record(plan, [(raw, decision)])
        return decision

    def decide_once(self, plan: Plan, raw, *, redecide: bool = False) -> tuple[Decision, PriorRecord | None]:
        """Decide one case and commit its record, as a batch run does with a case id this ruleset
        (any version) already decided or referred in the log: it is rejected (``already_decided``,
        naming the earlier record, opening no work item); with ``redecide`` it is decided again
        and the new record names the one it supersedes, whose open work items are closed. The
        check and the append happen under the log's append lock. Returns the decision (as
        recorded, once committed) and the record it supersedes, if any.

        >>> decision, superseded = log.decide_once(plan, case)   # doctest: +SKIP
        """
        from ..batch.runner import already_decided_decision, superseding  # late: the batch module imports this one
        decision = plan.decide(raw)
        entry = self.entry(decision, raw)
        key = case_key(entry.case_id)
        outcome: list = [decision, None]

        def prepare(store: AuditStore) -> tuple:
            prior = store.prior_records([entry.case_id], plan.id) if key is not None else []
            active = next((r for r in reversed(prior) if r.key == key and r.kind in ("decision", "referral")), None)
            if active is None:
                outcome[:] = [decision, None]
                return [entry], None
            if redecide:
                outcome[:] = [decision, active]
                return [superseding(entry, active)], lambda s, done: s.supersede_work_items(active, done[0][0])
            rejection = already_decided_decision(plan, raw, entry.case_id, active)
            outcome[:] = [rejection, None]
            return [dataclasses.replace(self.entry(rejection, raw), work_item=None)], None

        rulesets = self._new_rulesets(plan)
        self.store.append_prepared(prepare, rulesets)
        self._stored.update(r.sha256 for r in rulesets)
        return outcome[0], outcome[1]

    def decide_many(self, plan: Plan, raws: Iterable, *, skip_recorded: bool = False) -> Iterator[Decision]:
        """Decide cases in batches of ``batch_size``; each batch is committed, then its decisions yielded.

        With ``skip_recorded``, a case already in the log with the same case id, input and
        ruleset is not decided or recorded again (resuming an interrupted run).
        """
        fast = not skip_recorded and self.pii.mode == "keep" and not self.store.keep_released
        batches = _batches(raws, self.batch_size)
        if not fast:
            for batch in batches:
                yield from self._flush(plan, batch, skip_recorded)
            return
        # The common case, pipelined: while one block commits (SQLite's fsync, PostgreSQL's round
        # trip, without the GIL) the next is decided and built. A block's decisions are yielded only
        # once it is committed; a block left unyielded (the caller stopped) is recorded, not released.
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(1, thread_name_prefix="vedtak-commit") as writer:
            pending = None
            try:
                for batch in batches:
                    built = self._build(plan, batch)
                    if pending is not None:
                        committed, decisions = pending
                        pending = None
                        committed.result()
                        yield from decisions
                    pending = (writer.submit(self._commit_block, plan, built[0]), built[1])
                if pending is not None:
                    committed, decisions = pending
                    pending = None
                    committed.result()
                    yield from decisions
            finally:
                if pending is not None:
                    pending[0].result()

    def _build(self, plan: Plan, batch: list) -> tuple:
        """A batch decided and built into a block (records, digests) without audit entries."""
        from ..batch.runner import _fast_block
        from ..batch.inputs import Item
        decisions: list = []
        items = [Item("", 0, raw, None, input_text(raw) if type(raw) is dict else None) for raw in batch]
        chunk = _fast_block(items, plan, self.pii, self.store.codec, decisions)
        return chunk.block, [d if d is not None else plan.decide(raw) for d, raw in zip(decisions, batch)]

    def _commit_block(self, plan: Plan, block) -> None:
        rulesets = self._new_rulesets(plan)
        self.store.append_prepared(lambda store: ([], None, block), rulesets)
        self._stored.update(r.sha256 for r in rulesets)

    def _flush(self, plan: Plan, batch: list, skip_recorded: bool) -> Iterator[Decision]:
        batch = [(raw, plan.decide(raw)) for raw in batch]
        if skip_recorded:
            entries = [(raw, d, self.entry(d, raw)) for raw, d in batch]
            keys = [(e.case_id, e.input_sha256, e.ruleset_sha256) for _, _, e in entries]
            done = self.store.recorded(keys)
            fresh = [(raw, d) for (raw, d, e) in entries
                     if (case_key(e.case_id), e.input_sha256, e.ruleset_sha256) not in done]
            self.record(plan, fresh)
            yield from (d for _, d in fresh)
            return
        self.record(plan, batch)
        for _, decision in batch:
            yield decision

