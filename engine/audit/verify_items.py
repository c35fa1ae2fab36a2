"""Verifying the caseworkers' queue: work items against the records that open and close them, and
the queue's events (claims, releases, assignments, review requests) as a hash chain of their own.

- A referral or rejection record opens one work item (not an ``already_decided`` rejection): its
  queue, reason, proposal, case, priority and creation time are re-derived from the record with
  the function that built them (:func:`~vedtak.audit.log.work_item`). A record whose item row is
  missing, an item that names a record which opens none, or a second item for one record, is
  a failure.
- A review item is opened by a ``review-opened`` queue event whose detail holds the item as opened.
- A decided item needs the caseworker's record that closed it, naming it; a superseded item the
  decision made again that superseded its record.
- Each item's status, assignee and claim time follow from its events and closing record; the
  supervisors list (audit_meta) follows from the supervisor events.

A log upgraded to chained events keeps its earlier events without hashes and its earlier review
items without opening events: ``queue_chained_from`` says from where the chain covers them.
"""

from __future__ import annotations

import json

from .record import GENESIS
from .work_items import event_hash, review_detail

_OPENED = ("case_id", "queue", "reason_code", "reason_text", "proposed", "priority", "created_at")


def check_work_items(store, facts, report, adder, other) -> None:
    """Check the queue's event chain, then every work item; problems go to ``other(subject, kind, message)``
    (a referral record whose item is missing: to ``adder(chain)``)."""
    events = store.work_item_event_rows()
    events_from, items_from = store.queue_chained_from()
    report.queue_events = len(events)
    _check_events(events, events_from, other)
    by_item: dict[int, list[tuple]] = {}
    for row in events:
        if row[1] is not None:
            by_item.setdefault(int(row[1]), []).append(row)
    _check_supervisors(store, events, other)

    claimed: dict[tuple, int] = {}  # opening record -> the item that names it
    seen: set[int] = set()
    numbered: dict = {}  # chain -> (record seq, item id) of each referral item: ids follow the records
    for row in store.work_item_rows():
        report.work_items += 1
        (id_, record_seq, kind, cid, queue, reason_code, reason_text, proposed, priority, created_at,
         status, assignee, claimed_at, decided_seq, record_chain) = row
        id_ = int(id_)
        seen.add(id_)
        subject = f"work item {id_}"
        ref = (record_chain or None, None if record_seq is None else int(record_seq))
        shown = f"{ref[0]}:{ref[1]}" if ref[0] else str(ref[1])
        if record_chain is not None and (type(record_chain) is not str or not record_chain):
            other(subject, "work_item", f"work item {id_}: column record_chain was changed ({record_chain!r} names "
                  "no chain; the main chain's items hold none)")
        if kind == "referral" and ref[1] is not None:
            numbered.setdefault(ref[0], []).append((ref[1], id_))
        item_events = by_item.get(id_, [])
        if ref[1] is not None and ref[1] > facts.ends.get(ref[0], 0):
            pass  # its record was cut from the end of its chain: that chain's problem says so
        elif kind == "referral":
            opened = facts.opens.get(ref)
            if opened is None:
                other(subject, "work_item", f"work item {id_} names record {shown}, which opens no work item "
                      "(it was pointed at another record, or forged)")
            elif ref in claimed:
                other(subject, "work_item", f"work item {id_} names record {shown}, which opened work item "
                      f"{claimed[ref]}: a record opens one work item")
            else:
                claimed[ref] = id_
                actual = (cid, queue, reason_code, reason_text, proposed, int(priority), created_at)
                for column, have, want in zip(_OPENED, actual, opened):
                    if have != want:
                        other(subject, "work_item", f"work item {id_}: column {column} was changed ({_short(have)}; "
                              f"record {shown} opened it with {_short(want)})")
                        break
        elif kind == "review":
            opening = [e for e in item_events if e[3] == "review-opened" and e[8] is not None]
            as_is = review_detail((ref[1], ref[0], kind, cid, queue, reason_code, reason_text, proposed,
                                   int(priority), created_at))
            if not opening:
                if id_ >= items_from:
                    other(subject, "work_item", f"work item {id_} is a review no queue event opened (forged)")
            elif opening[0][6] != as_is:
                other(subject, "work_item", f"work item {id_} was changed: it is not the review queue event "
                      f"{opening[0][0]} opened")
        else:
            other(subject, "work_item", f"work item {id_} is of kind {kind!r}, which the queue never opens")
        _check_state(id_, row, ref, shown, item_events, facts, other)
    for chain, pairs in numbered.items():  # items are numbered as their records are appended
        pairs.sort()
        for (seq_a, id_a), (seq_b, id_b) in zip(pairs, pairs[1:]):
            if id_b < id_a:
                other(f"work item {id_b}", "work_item", f"work items {id_a} and {id_b} are numbered out of the "
                      f"order of the records that opened them ({seq_a} and {seq_b}): their ids were swapped or "
                      "changed")
    for ref, opened in facts.opens.items():
        if ref not in claimed:
            adder(ref[0] or "")(ref[1], "work_item", f"record {ref[1]} opened a work item (queue {opened[1]}), "
                                "which the log no longer holds")
    for item_id, closers in facts.closes.items():
        if item_id not in seen:
            other(f"work item {item_id}", "work_item", f"work item {item_id}, closed by record {closers[0][0]}, "
                  "is missing from the log")
    for item_id in sorted(set(by_item) - seen):
        other(f"work item {item_id}", "work_item", f"work item {item_id}, named by queue event "
              f"{by_item[item_id][0][0]}, is missing from the log")


def _check_state(id_: int, row: tuple, ref: tuple, shown: str, events: list, facts, other) -> None:
    """The item's status, assignee, claim time and closing record must follow from its events and records."""
    status, assignee, claimed_at, decided_seq = row[10], row[11], row[12], row[13]
    subject = f"work item {id_}"
    state = ["open", None, None]
    for event in events:
        action = event[3]
        if action in ("claimed", "assigned"):
            state = ["claimed", event[5], event[2]]
        elif action == "released":
            state = ["open", None, None]
    closers = facts.closes.get(id_, [])
    superseded_by = facts.supersedes.get(ref)
    if len(closers) > 1:
        other(subject, "work_item", f"work item {id_} is closed by records {closers[0][0]} and {closers[1][0]}: "
              "an item is decided once")
    if closers:
        seq, record, chain, by, case = closers[0]
        if (chain or None, record) != ref or case != row[3]:
            other(subject, "work_item", f"work item {id_} names record {shown} of case {row[3]}, but record {seq}, "
                  f"which closed it, decided record {record} of case {case}")
        wanted = ["decided", by, state[2], seq]
    elif superseded_by is not None and status != "decided":
        wanted = ["superseded", state[1], state[2], superseded_by]
    else:
        wanted = [*state, None]
    have = [status, assignee, claimed_at, None if decided_seq is None else int(decided_seq)]
    if have == wanted:
        return
    if status == "decided" and not closers:
        other(subject, "work_item", f"work item {id_} is marked decided (record {decided_seq}), but no caseworker's "
              "record closes it")
    elif status == "superseded" and superseded_by is None:
        other(subject, "work_item", f"work item {id_} is marked superseded (by record {decided_seq}), but no record "
              f"supersedes record {shown}")
    else:
        names = ("status", "assignee", "claimed_at", "decided_seq")
        column, value, want = next((n, h, w) for n, h, w in zip(names, have, wanted) if h != w)
        other(subject, "work_item", f"work item {id_}: column {column} is {_short(value)}, but its queue events and "
              f"records make it {_short(want)}")


def _check_events(events: list[tuple], events_from: int, other) -> None:
    """The queue's events as a hash chain: each names the one before; none edited, deleted or inserted."""
    prev, last_id, last_at, started = GENESIS, None, "", False
    for row in events:
        id_, at, hash_ = int(row[0]), row[2], row[8]
        subject = f"queue event {id_}"
        if hash_ is None:
            if started or id_ >= events_from:
                other(subject, "queue_event", f"queue event {id_} has no hash: it was forged or changed")
            continue
        if not started and id_ < events_from:
            other(subject, "queue_event", f"queue event {id_} is chained, but the log says its chain begins at "
                  f"event {events_from}: the mark of where the queue's chain begins was changed")
        elif not started and id_ > events_from:
            other(f"queue event {events_from}", "queue_event",
                  f"queue events {events_from} to {id_ - 1} are missing (deleted)")
        elif last_id is not None and id_ != last_id + 1:
            other(f"queue event {last_id + 1}", "queue_event", f"queue event {last_id + 1}"
                  + (f" to {id_ - 1} are" if id_ > last_id + 2 else " is") + " missing (deleted)")
        started = True
        if event_hash(row[7], tuple(row[:7])) != hash_:
            other(subject, "queue_event", f"queue event {id_} was changed: its content does not match its hash")
        elif row[7] != prev:
            other(subject, "queue_event", f"queue event {id_} does not follow the event before it: an event was "
                  "deleted, inserted or changed and its hash recomputed")
        if isinstance(at, str) and at < last_at:
            other(subject, "queue_event", f"queue event {id_} is dated {at}, before the event before it ({last_at})")
        prev, last_id, last_at = hash_, id_, max(last_at, at if isinstance(at, str) else "")


def _check_supervisors(store, events: list[tuple], other) -> None:
    named: list[str] = []
    for row in events:
        if row[3] == "supervisor-added" and row[5] not in named:
            named.append(row[5])
        elif row[3] == "supervisor-removed" and row[5] in named:
            named.remove(row[5])
    try:
        listed = store.supervisors()
    except (ValueError, TypeError):
        listed = None
    if listed is None or sorted(listed) != sorted(named):
        other("supervisors", "queue_event", f"the supervisors listed in the log ({_short(listed)}) are not those "
              f"the queue's events named ({_short(sorted(named))})")


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
