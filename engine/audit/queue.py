"""The caseworkers' queue: referrals as work items, and human decisions recorded in the audit chain.

Every referral (and every rejected case, which a person can correct) opens a work item in
the audit store, in the same transaction as its record. A caseworker claims an item and
decides it; the decision is an audit record of kind ``human`` — who, when, why, and the
item and record it closes — appended to the chain in the same transaction that closes the
item. A person may also ask for a human review of the case's current decision (its latest,
automated or by a caseworker): at most one review of a case is open at a time, and a later
review's decision names the one before it.

A claimed item can be released by its holder, or given to someone else by a supervisor (the
log names its supervisors); every claim, release and assignment is kept with who and when.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from .pii import MASK, masked_values
from .record import Entry, utc_now
from .store import AuditStore
from ..evaluation.decision import ENGINE_VERSION, canonical_json
from ..evaluation.cases import _NUMBER_LITERAL, LONE_SURROGATE
from ..language.limits import DIGITS, clip, number_in_range
from ..language.load import load_text

STATUSES = ("open", "claimed", "decided", "superseded")
OPEN_STATUSES = ("open", "claimed")  # work still to do; decided and superseded items are closed
_INT_LITERAL = re.compile(r"-?[0-9]+")  # ASCII digits only, as in case input
KIND_WORDS = {"int": "a whole number", "decimal": "a number", "date": "a date (YYYY-MM-DD)",
              "bool": "true or false"}


class QueueError(Exception):
    """A queue operation that cannot be done; ``code`` says which kind of refusal it is."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class WorkItem:
    id: int
    record_seq: int | None
    kind: str  # "referral" (opened by a referral or rejection) or "review" (asked for by a person)
    case_id: object
    queue: str
    reason_code: str
    reason_text: str
    proposed: dict | None
    priority: int
    created_at: str
    status: str
    assignee: str | None
    claimed_at: str | None
    decided_seq: int | None
    record_chain: str | None = None  # the partition chain of the record, for a distributed run's referral

    @classmethod
    def from_row(cls, row) -> "WorkItem":
        (id_, seq, kind, cid, queue, code, text, proposed, prio, created, status, assignee, claimed, decided,
         chain) = row
        return cls(int(id_), None if seq is None else int(seq), kind, None if cid is None else json.loads(cid),
                   queue, code, text, None if proposed is None else json.loads(proposed), int(prio), created,
                   status, assignee, claimed, None if decided is None else int(decided), chain)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def list_items(store: AuditStore, *, queue: str | None = None, status: str | None = None,
               open_only: bool = False) -> list[WorkItem]:
    """Work items, highest priority first, then oldest first; ``open_only``: only open and claimed ones."""
    statuses = OPEN_STATUSES if open_only and status is None else None
    return [WorkItem.from_row(r) for r in store.work_item_rows(queue=queue, status=status, statuses=statuses)]


def get_item(store: AuditStore, item_id: int) -> WorkItem:
    row = store.work_item_row(item_id)
    if row is None:
        raise QueueError("unknown_item", f"there is no work item {item_id}")
    return WorkItem.from_row(row)


def claim(store: AuditStore, item_id: int, by: str) -> WorkItem:
    """Claim an open item for a caseworker; of two claims at once, exactly one wins."""
    _need(by, "who claims it (--by)")
    won = store.claim_work_item(item_id, by)
    item = get_item(store, item_id)
    if not won and not (item.status == "claimed" and item.assignee == by):
        if item.status not in OPEN_STATUSES:
            raise QueueError("already_decided",
                             f"work item {item_id} is already {item.status} (record {item.decided_seq})")
        raise QueueError("already_claimed", f"work item {item_id} is already claimed by {item.assignee}")
    return item


def release(store: AuditStore, item_id: int, by: str) -> WorkItem:
    """Put a claimed item back in its queue: by the caseworker holding it, or by a supervisor."""
    _need(by, "who releases it (--by)")
    item = get_item(store, item_id)
    if item.status not in ("claimed",):
        raise QueueError("not_claimed",
                         f"work item {item_id} is {item.status}, not claimed: there is nothing to release")
    if item.assignee != by and by not in store.supervisors():
        raise QueueError("claimed_by_other", f"work item {item_id} is claimed by {item.assignee}, not {by}; "
                         "only the holder or a supervisor may release it")
    if not store.release_work_item(item_id, item.assignee, by):
        raise QueueError("changed", f"work item {item_id} changed just now; look again (vedtak queue show)")
    return get_item(store, item_id)


def assign(store: AuditStore, item_id: int, to: str, by: str) -> WorkItem:
    """A supervisor gives an open or claimed item to a caseworker (it is then claimed by them)."""
    _need(to, "who gets it (--to)")
    _need(by, "which supervisor assigns it (--by)")
    item = get_item(store, item_id)
    if item.status not in OPEN_STATUSES:
        raise QueueError("already_decided", f"work item {item_id} is {item.status}"
                         + (f" (record {item.decided_seq})" if item.decided_seq else "") + ": it cannot be assigned")
    outcome = store.assign_work_item(item_id, to, by)
    if outcome == "not_supervisor":
        named = store.supervisors()
        raise QueueError("not_supervisor", f"{by} is not a supervisor of this log"
                         + (f" (supervisors: {', '.join(named)})" if named else
                            "; no supervisor is named yet (vedtak queue supervisors DB --add NAME --by NAME)"))
    if outcome == "closed":
        raise QueueError("already_decided", f"work item {item_id} was closed just now: it cannot be assigned")
    return get_item(store, item_id)


def change_supervisors(store: AuditStore, name: str, *, add: bool, by: str) -> list[str]:
    """Name (``add``) or un-name a supervisor; returns the supervisors after. The first may be named by
    anyone; after that only a supervisor changes the list, and the last one stays."""
    _need(name, "whom (--add NAME or --remove NAME)")
    _need(by, "who makes the change (--by)")
    outcome, after = store.change_supervisors(name.strip(), add, by)
    if outcome == "not_supervisor":
        raise QueueError("not_supervisor", f"{by} is not a supervisor of this log (supervisors: {', '.join(after)}); "
                         "only a supervisor may change the list")
    if outcome == "last":
        raise QueueError("last_supervisor", f"{name} is the only supervisor; name another before removing them")
    return after


def request_review(store: AuditStore, case_id, by: str, reason: str) -> WorkItem:
    """Open a work item for a human review of the case's current decision: its latest decision,
    automated or by a caseworker (an earlier review's decision among them). Deciding the item
    confirms or overrides that decision.

    At most one review of a record is open at a time: asking again while one is open (or claimed)
    is refused naming it (``review_open``). A review asked for after an earlier one of the case was
    decided says so in its reason, and its decision names the earlier one (``review.follows``)."""
    _need(by, "who asks for the review (--by)")
    _need(reason, "why (--reason)")
    record = current_decision(store, case_id)
    for r in store.records(record.case_id):  # a review of an earlier decision, still open, is the case's review
        pending = [WorkItem.from_row(row) for row in store.review_rows((r.seq, r.chain))] \
            if r.kind in DECIDING_KINDS and (r.seq, r.chain) != (record.seq, record.chain) else []
        for item in pending:
            if item.status in OPEN_STATUSES:
                raise QueueError("review_open", f"a review of record {r.ref} (case {record.case_id}) is already "
                                 f"open: work item {item.id}, {item.status}" + (f" by {item.assignee}" if item.assignee
                                                                               else "")
                                 + "; decide it before asking for another")
    recorded = json.loads(record.decision)
    stored = store.ruleset(record.ruleset_sha256) if record.ruleset_sha256 else None
    queue = "review"
    if stored is not None:
        queue = load_text(stored.source, stored.path).latest.model.review_queue
    proposed = canonical_json({"outcome": recorded.get("outcome"), "values": recorded.get("values") or {}})
    text = f"Review asked for by {by}: {reason}"
    earlier = earlier_review(store, (record.seq, record.chain))
    if earlier is not None:
        text += f" (follows review work item {earlier.id}, {earlier.status}" + (
            f" in record {earlier.decided_seq})" if earlier.decided_seq else ")")
    item_id, opened = store.open_review((record.seq, record.chain), record.case_id, queue, text, proposed, by)
    if not opened:
        item = get_item(store, item_id)
        raise QueueError("review_open", f"a review of record {record.ref} (case {record.case_id}) is already open: "
                         f"work item {item_id}, {item.status}" + (f" by {item.assignee}" if item.assignee else "")
                         + "; decide it before asking for another")
    return get_item(store, item_id)


DECIDING_KINDS = ("decision", "referral", "human")  # records that set or replace a case's decision


def current_decision(store: AuditStore, case_id):
    """The case's current decision: its latest automated decision or caseworker decision. A later
    referral (a decision made again that a caseworker has still to decide) leaves none to review."""
    records = [r for r in store.records(case_id) if r.kind in DECIDING_KINDS]
    if not any(r.kind != "referral" for r in records):
        raise QueueError("nothing_to_review", f"case {case_id} has no decision to review")
    latest = records[-1]
    if latest.kind == "referral":
        raise QueueError("not_decided", f"case {case_id} has no decision to review: its latest record {latest.ref} "
                         "is a referral still to be decided by a caseworker (vedtak queue list)")
    return latest


def earlier_review(store: AuditStore, record: tuple[int, str | None], before: int | None = None) -> WorkItem | None:
    """The latest closed review of the case of the record (seq, chain), of those opened before item
    ``before``: reviews of any of the case's decisions, automated or human, so that each review
    names the one before it."""
    found = store.record(*record)
    targets = [record] if found is None else [(r.seq, r.chain) for r in store.records(found.case_id)
                                              if r.kind in DECIDING_KINDS]
    closed = [WorkItem.from_row(row) for target in dict.fromkeys(targets) for row in store.review_rows(target)]
    closed = sorted((i for i in closed if i.status not in OPEN_STATUSES and (before is None or i.id < before)),
                    key=lambda i: i.id)
    return closed[-1] if closed else None


def decide(store: AuditStore, item_id: int, *, outcome: str, values: dict[str, str], by: str,
           reason: str) -> int:
    """Record a caseworker's decision on an item and close it; returns the human record's seq.

    The outcome must be one of the ruleset's outcomes, and the values those the ruleset's
    rules give that outcome, each of its type. A decided item is never decided again.
    """
    _need(by, "who decides (--by)")
    _need(reason, "why (--reason)")
    item = get_item(store, item_id)
    if item.status not in OPEN_STATUSES:
        raise QueueError("already_decided", f"work item {item_id} is already {item.status} (record {item.decided_seq})")
    if item.status == "claimed" and item.assignee != by:
        raise QueueError("claimed_by_other", f"work item {item_id} is claimed by {item.assignee}, not {by}")
    source = store.record(item.record_seq, item.record_chain) if item.record_seq else None
    if source is None:
        raise QueueError("no_record", f"the record behind work item {item_id} is missing from the log")
    opens = ("referral", "rejection") if item.kind == "referral" else DECIDING_KINDS
    if source.kind not in opens or source.case_id != item.case_id:
        # an item pointed at another record (the log was changed): deciding it would decide that case
        raise QueueError("not_its_record", f"work item {item_id} (case {item.case_id}) names record {source.ref}, "
                         f"a {source.kind} of case {source.case_id}, which does not open it: the log was changed; "
                         "vedtak audit verify names what")
    typed, version = _check_decision(store, source.ruleset_sha256, outcome, values)
    original = json.loads(source.decision)
    # under --pii drop or pseudonymise the log keeps a value the ruleset computes from personal data
    # masked: so too when a caseworker gives it
    mode = json.loads(source.pii).get("mode") if source.pii else "keep"
    masked = _personal_values(version, outcome) if mode != "keep" else frozenset()
    stored = {n: (MASK if n in masked else v) for n, v in json.loads(canonical_json(typed)).items()}
    body = {
        "status": "decided", "outcome": outcome, "values": stored, "decided_by": by, "reason": reason,
        "decided_at": utc_now(), "closes": {"work_item": item_id, "record": item.record_seq,
                                            **({"chain": item.record_chain} if item.record_chain else {})},
        "rule": None, "basis": "caseworker decision", "queue": None, "case_id": source.case_id,
        "reasons": [reason], "ruleset": original.get("ruleset"), "decision_date": original.get("decision_date"),
    }
    if item.kind == "review":
        body["review"] = {"of_record": item.record_seq, **({"chain": item.record_chain} if item.record_chain else {}),
                          "confirms": original.get("outcome") == outcome and (original.get("values") or {}) == stored}
        if body["review"]["confirms"] and MASK in stored.values():  # values the log does not keep: not known
            body["review"]["confirms"] = None
        earlier = earlier_review(store, (item.record_seq, item.record_chain), before=item_id)
        if earlier is not None:  # the story of the case: this review follows that one
            body["review"]["follows"] = {"work_item": earlier.id, "record": earlier.decided_seq}
    entry = Entry("human", source.case_id, source.input, canonical_json(body), source.ruleset_id,
                  source.ruleset_version, source.ruleset_sha256, source.decision_date, ENGINE_VERSION)

    def close(s: AuditStore, done) -> None:
        if not s.close_work_item(item_id, by, done[0][0]):  # decided by someone else since we looked: undo all
            raise QueueError("already_decided", f"work item {item_id} was decided by someone else just now")

    done = store.append([entry], then=close)
    return done[0][0]


def _need(value: str, what: str) -> None:
    if not value or not value.strip():
        raise QueueError("missing_argument", f"say {what}")
    _text(value, what)


def _text(value: str, what: str) -> None:
    """Text that goes into the log is Unicode the log can store: no lone surrogate (what Python makes
    of a byte that is not UTF-8 in a command-line argument)."""
    if not value.isascii() and LONE_SURROGATE.search(value):
        raise QueueError("not_text", f"{what}: the text holds a character that is not Unicode text (a lone "
                         "surrogate, or a byte that is not UTF-8)")


def accepted(store: AuditStore, item: WorkItem) -> dict[str, dict[str, str]]:
    """What ``decide`` accepts for an item: each outcome of its ruleset with its values' names and
    types (``int``, ``decimal``, ``date``, ``bool``, ``string``); empty if the ruleset is not in the log."""
    source = store.record(item.record_seq, item.record_chain) if item.record_seq else None
    stored = store.ruleset(source.ruleset_sha256) if source is not None and source.ruleset_sha256 else None
    if stored is None:
        return {}
    version = load_text(stored.source, stored.path).latest
    return {outcome: _outcome_values(version, outcome) for outcome in version.model.outcomes}


def describe_kind(kind: str) -> str:
    """A value type as a caseworker reads it: "a whole number", "a date (YYYY-MM-DD)", "text"."""
    return KIND_WORDS.get(kind, "text")


def _outcome_values(version, outcome: str) -> dict[str, str]:
    wanted: dict = {}
    for rule in version.rules:
        if rule.decide == outcome:
            for name, expr in rule.values.items():
                wanted.setdefault(name, expr.type.kind)
    return wanted


def _personal_values(version, outcome: str) -> frozenset[str]:
    """The values of ``outcome`` that a rule deciding it computes from personal data."""
    return frozenset(n for rule in version.rules if rule.decide == outcome for n in masked_values(version, rule))


def _check_decision(store: AuditStore, sha: str | None, outcome: str, values: dict[str, str]) -> tuple:
    stored = store.ruleset(sha) if sha else None
    if stored is None:
        raise QueueError("no_ruleset", "the ruleset of this case is not stored in the log")
    version = load_text(stored.source, stored.path).latest
    outcomes = version.model.outcomes
    if outcome not in outcomes:
        raise QueueError("unknown_outcome", f'outcome "{outcome}" is not one of the ruleset\'s outcomes: '
                         + ", ".join(outcomes))
    wanted = _outcome_values(version, outcome)
    unknown = sorted(set(values) - set(wanted))
    if unknown:
        raise QueueError("unknown_value", f'"{unknown[0]}" is not a value of outcome "{outcome}"'
                         + (f" (its values: {', '.join(wanted)})" if wanted else " (it has no values)"))
    missing = [n for n in wanted if n not in values]
    if missing:
        raise QueueError("missing_value", f'outcome "{outcome}" needs a value for {", ".join(missing)} '
                         f"(--value {missing[0]}=...)")
    return {name: _parse(name, values[name], kind) for name, kind in wanted.items()}, version


def _parse(name: str, text: str, kind: str):
    """A caseworker's value as its type, by the number rules of case input: ASCII digits only
    (``int()`` and ``Decimal()`` also read ``٥``), and a number the engine holds exactly (at most
    34 significant digits, below 10^34), never rounded."""
    try:
        if kind in ("int", "decimal"):
            literal = text.strip()
            pattern = _INT_LITERAL if kind == "int" else _NUMBER_LITERAL
            if not pattern.fullmatch(literal):
                raise ValueError
            if not number_in_range(Decimal(literal)):
                raise QueueError("bad_value", f'value {name}: "{clip(literal)}" is out of range: a number may have at '
                                 f"most {DIGITS} significant digits and must be below 10^{DIGITS}")
            return int(Decimal(literal)) if kind == "int" else Decimal(literal)
        if kind == "date":
            return date.fromisoformat(text.strip())
        if kind == "bool":
            if text.strip() not in ("true", "false"):
                raise ValueError
            return text.strip() == "true"
        _text(text, f"value {name}")
        return text
    except (ValueError, InvalidOperation):
        article = KIND_WORDS[kind]
        raise QueueError("bad_value", f'value {name}: "{clip(text)}" is not {article}') from None
