"""The caseworkers' work items in the audit store: reads, and every change made under the chain head's lock.

Each change (open, claim, release, assign, close) runs inside an append transaction, which holds
the main chain head (SQLite: the database write lock; PostgreSQL: a row lock on the head), so a
check and the write it guards are atomic: of two caseworkers claiming at once one wins, and of two
review requests for one record at once one opens the item. Claims, releases, assignments and
changes to the supervisors are kept in ``audit_work_item_events``: who did what to which item, when.
"""

from __future__ import annotations

import json

from ..evaluation.decision import canonical_json
from .record import GENESIS, sha256, utc_now

# Appended to the store's SCHEMA: new tables only (CREATE ... IF NOT EXISTS), so a log written
# before they existed opens unchanged and gains them.
WORK_ITEM_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS audit_work_item_events (
        id BIGINT PRIMARY KEY,
        item_id BIGINT,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        assignee TEXT,
        detail TEXT,
        prev_hash TEXT,
        hash TEXT)""",
    """CREATE INDEX IF NOT EXISTS audit_work_item_events_item ON audit_work_item_events (item_id)""",
]

# Upgrading a log whose queue events were not yet chained (schema version 2): the events gain a hash
# chain, and audit_meta notes from which event and which work item on the queue is covered by it
# (earlier events keep no hash; earlier review items have no opening event). Run once, in the
# migration; `events_chained(columns)` tells whether a log needs it.
WORK_ITEM_MIGRATE = [
    "ALTER TABLE audit_work_item_events ADD COLUMN detail TEXT",
    "ALTER TABLE audit_work_item_events ADD COLUMN prev_hash TEXT",
    "ALTER TABLE audit_work_item_events ADD COLUMN hash TEXT",
    "INSERT INTO audit_meta (key, value) SELECT 'queue_events_chained_from', CAST(COALESCE(MAX(id), 0) + 1 AS TEXT) "
    "FROM audit_work_item_events WHERE 1 = 1 ON CONFLICT (key) DO NOTHING",
    "INSERT INTO audit_meta (key, value) SELECT 'queue_items_chained_from', CAST(COALESCE(MAX(id), 0) + 1 AS TEXT) "
    "FROM audit_work_items WHERE 1 = 1 ON CONFLICT (key) DO NOTHING",
]
EVENTS_CHAINED_FROM, ITEMS_CHAINED_FROM = "queue_events_chained_from", "queue_items_chained_from"

# The columns of an event its hash covers, in order (with the previous event's hash).
EVENT_COLUMNS = ("id", "item_id", "at", "action", "actor", "assignee", "detail")

SUPERVISORS_KEY = "queue_supervisors"  # in audit_meta: a JSON list of names


class WorkItemStore:
    """Work-item methods of :class:`~vedtak.audit.store.AuditStore` (a mixin: it uses the store's
    ``append``, ``_execute``, ``_query``, ``_sql``, ``WORK_ITEM_COLUMNS`` and ``_open_work_items``)."""

    # -- reading ---------------------------------------------------------------------------
    def work_item_rows(self, *, queue: str | None = None, status: str | None = None,
                       statuses: tuple[str, ...] | None = None) -> list[tuple]:
        """Work items as rows of :attr:`WORK_ITEM_COLUMNS`, highest priority first, then oldest;
        ``statuses`` keeps items in any of those statuses."""
        where = [(f"{column} = ?", (value,)) for column, value in (("queue", queue), ("status", status))
                 if value is not None]
        if statuses is not None:
            where.append((f"status IN ({', '.join('?' for _ in statuses)})", tuple(statuses)))
        sql = f"SELECT {self.WORK_ITEM_COLUMNS} FROM audit_work_items"
        if where:
            sql += " WHERE " + " AND ".join(cond for cond, _ in where)
        params = tuple(v for _, values in where for v in values)
        return list(self._query(self._sql(sql + " ORDER BY priority DESC, id"), params))

    def review_rows(self, record: tuple[int, str | None]) -> list[tuple]:
        """The review items asked for on the record (seq, chain), oldest first."""
        return list(self._query(self._sql(
            f"SELECT {self.WORK_ITEM_COLUMNS} FROM audit_work_items WHERE kind = 'review' AND record_seq = ? "
            "AND COALESCE(record_chain, '') = ? ORDER BY id"), (record[0], record[1] or "")))

    def work_item_events(self, item_id: int) -> list[tuple[str, str, str, str | None]]:
        """(at, action, actor, assignee) of every claim, release and assignment of an item, in order."""
        return [tuple(r) for r in self._query(self._sql(
            "SELECT at, action, actor, assignee FROM audit_work_item_events WHERE item_id = ? ORDER BY id"),
            (item_id,))]

    def work_item_event_rows(self) -> list[tuple]:
        """Every queue event in order, as (id, item_id, at, action, actor, assignee, detail, prev_hash, hash);
        in a log not yet upgraded to chained events the last three are None."""
        try:
            rows = list(self._query(f"SELECT {', '.join(EVENT_COLUMNS)}, prev_hash, hash FROM audit_work_item_events "
                                    "ORDER BY id"))
        except Exception:  # noqa: BLE001 - a log read before the upgrade that adds the columns
            rows = [(*r, None, None, None) for r in self._query(
                "SELECT id, item_id, at, action, actor, assignee FROM audit_work_item_events ORDER BY id")]
        return [tuple(r) for r in rows]

    def queue_chained_from(self) -> tuple[int, int]:
        """(first event id, first work item id) that the queue's event chain covers: 1 and 1 in a log
        created with it; in an upgraded log, the first ones written after the upgrade."""
        marks = dict(self._query(self._sql("SELECT key, value FROM audit_meta WHERE key IN (?, ?)"),
                                 (EVENTS_CHAINED_FROM, ITEMS_CHAINED_FROM)))
        if not marks and all(row[8] is None for row in self.work_item_event_rows()[-1:]):
            try:  # a log read before the upgrade that chains its events: nothing in its queue is covered yet
                list(self._query("SELECT hash FROM audit_work_item_events WHERE 1 = 0"))
            except Exception:  # noqa: BLE001 - the column does not exist yet
                top = [int(next(iter(self._query(f"SELECT COALESCE(MAX(id), 0) FROM {t}")))[0]) + 1
                       for t in ("audit_work_item_events", "audit_work_items")]
                return top[0], top[1]
        try:
            return int(marks.get(EVENTS_CHAINED_FROM, 1)), int(marks.get(ITEMS_CHAINED_FROM, 1))
        except ValueError:
            return 1, 1  # an edited mark covers everything: nothing is excused

    def queue_head(self) -> tuple[int, str] | None:
        """The last queue event's (id, hash), None if there is none (or it has no hash)."""
        rows = [r for r in self.work_item_event_rows()[-1:] if r[8] is not None]
        return (int(rows[0][0]), rows[0][8]) if rows else None

    def run_rows(self) -> list[tuple]:
        """Every distributed run as (run_id, run_key, spec, started_at, manifest_seq)."""
        return [tuple(r) for r in self._query(
            "SELECT run_id, run_key, spec, started_at, manifest_seq FROM audit_runs ORDER BY started_at, run_id")]

    def supervisors(self) -> list[str]:
        """The names that may reassign work items (kept in the log)."""
        rows = list(self._query(self._sql("SELECT value FROM audit_meta WHERE key = ?"), (SUPERVISORS_KEY,)))
        return json.loads(rows[0][0]) if rows else []

    # -- changing, each in a transaction of its own -----------------------------------------
    def _event(self, item_id: int | None, action: str, actor: str, assignee: str | None, at: str,
               detail: str | None = None) -> None:
        # every event is written under the head's lock, so MAX + 1 and the chain's last hash are safe
        # on both stores; an event written before the chain began (no hash) starts it afresh
        last = self._execute("SELECT id, hash FROM audit_work_item_events ORDER BY id DESC LIMIT 1")
        top, prev = (int(last[0][0]), last[0][1] or GENESIS) if last else (0, GENESIS)
        row = (top + 1, item_id, at, action, actor, assignee, detail)
        self._execute(self._sql(f"INSERT INTO audit_work_item_events ({', '.join(EVENT_COLUMNS)}, prev_hash, hash) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"), (*row, prev, event_hash(prev, row)))

    def _changed(self, change) -> object:
        """Run ``change(store)`` inside an append transaction (under the head's lock); return its result."""
        out: list = []
        self.append([], then=lambda s, done: out.append(change(s)))
        return out[0]

    def claim_work_item(self, item_id: int, by: str) -> bool:
        """Claim an open item; False if it was not open."""
        def take(s) -> bool:
            now = utc_now()
            won = s._execute_count(s._sql(
                "UPDATE audit_work_items SET status = 'claimed', assignee = ?, claimed_at = ? "
                "WHERE id = ? AND status = 'open'"), (by, now, item_id)) == 1
            if won:
                s._event(item_id, "claimed", by, by, now)
            return won
        return self._changed(take)

    def release_work_item(self, item_id: int, holder: str, by: str) -> bool:
        """Put an item claimed by ``holder`` back to open, released by ``by``; False if it is no
        longer claimed by ``holder``."""
        def give_back(s) -> bool:
            done = s._execute_count(s._sql(
                "UPDATE audit_work_items SET status = 'open', assignee = NULL, claimed_at = NULL "
                "WHERE id = ? AND status = 'claimed' AND assignee = ?"), (item_id, holder)) == 1
            if done:
                s._event(item_id, "released", by, None, utc_now())
            return done
        return self._changed(give_back)

    def assign_work_item(self, item_id: int, to: str, by: str) -> str:
        """A supervisor gives an open or claimed item to ``to``: "assigned", or why not
        ("not_supervisor"; "closed": decided or superseded); the check runs under the same lock."""
        def give(s) -> str:
            if by not in s._supervisors_locked():
                return "not_supervisor"
            now = utc_now()
            if s._execute_count(s._sql(
                    "UPDATE audit_work_items SET status = 'claimed', assignee = ?, claimed_at = ? "
                    "WHERE id = ? AND status IN ('open', 'claimed')"), (to, now, item_id)) != 1:
                return "closed"
            s._event(item_id, "assigned", by, to, now)
            return "assigned"
        return self._changed(give)

    def change_supervisors(self, name: str, add: bool, by: str) -> tuple[str, list[str]]:
        """Name or un-name a supervisor. While none is named anyone may name the first; after that
        only a supervisor may change the list, and the last one cannot be removed. Returns
        ("changed" | "not_supervisor" | "last" | "unchanged", the list after)."""
        def change(s) -> tuple[str, list[str]]:
            current = s._supervisors_locked()
            if current and by not in current:
                return "not_supervisor", current
            if (name in current) == add:
                return "unchanged", current
            if not add and current == [name]:
                return "last", current
            after = sorted(set(current) | {name}) if add else [n for n in current if n != name]
            s._execute(s._sql("INSERT INTO audit_meta (key, value) VALUES (?, ?) "
                              "ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
                       (SUPERVISORS_KEY, json.dumps(after, ensure_ascii=False)))
            s._event(None, "supervisor-added" if add else "supervisor-removed", by, name, utc_now())
            return "changed", after
        return self._changed(change)

    def _supervisors_locked(self) -> list[str]:
        rows = self._execute(self._sql("SELECT value FROM audit_meta WHERE key = ?"), (SUPERVISORS_KEY,))
        return json.loads(rows[0][0]) if rows else []

    def open_review(self, record: tuple[int, str | None], case_id, queue: str, reason_text: str,
                    proposed: str, by: str = "") -> tuple[int, bool]:
        """Open a review work item for the record (seq, chain) unless one is open for it already:
        (the new item's id, True), or (the open item's id, False). At most one review of a record
        is open at a time: the check and the insert run under the head's lock. The opening is a
        queue event (asked for ``by``) whose detail holds the item as opened, under the events' chain."""
        from .store import case_key

        def insert(s) -> tuple[int, bool]:
            open_ = s._execute(s._sql(
                "SELECT id FROM audit_work_items WHERE kind = 'review' AND record_seq = ? "
                "AND COALESCE(record_chain, '') = ? AND status IN ('open', 'claimed') ORDER BY id"),
                (record[0], record[1] or ""))
            if open_:
                return int(open_[0][0]), False
            (made,) = s.work_item_ids(1)
            row = (made, *record, "review", case_key(case_id), queue, "review-requested", reason_text, proposed, 1,
                   utc_now())
            s._open_work_items([row])
            s._event(made, "review-opened", by, None, row[-1], review_detail(row[1:]))
            return made, True
        return self._changed(insert)


def event_hash(prev_hash: str, row: tuple) -> str:
    """The hash of a queue event: its columns (:data:`EVENT_COLUMNS`, in order) after the previous event's hash."""
    return sha256(canonical_json([prev_hash, *row]))


def review_detail(opened: tuple) -> str:
    """What a review-opened event commits to: the item as opened (record seq, record chain, kind, case
    key, queue, reason code, reason text, proposed, priority, created at)."""
    return canonical_json(list(opened))
