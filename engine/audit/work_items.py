"""The caseworkers' work items in the audit store: reads, and every change made under the chain head's lock.

Each change (open, claim, release, assign, close) runs inside an append transaction, which holds
the main chain head (SQLite: the database write lock; PostgreSQL: a row lock on the head), so a
check and the write it guards are atomic: of two caseworkers claiming at once one wins, and of two
review requests for one record at once one opens the item. Claims, releases, assignments and
changes to the supervisors are kept in ``audit_work_item_events``: who did what to which item, when.
"""

from __future__ import annotations

import json

from .record import utc_now

# Appended to the store's SCHEMA: new tables only (CREATE ... IF NOT EXISTS), so a log written
# before they existed opens unchanged and gains them.
WORK_ITEM_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS audit_work_item_events (
        id BIGINT PRIMARY KEY,
        item_id BIGINT,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        assignee TEXT)""",
    """CREATE INDEX IF NOT EXISTS audit_work_item_events_item ON audit_work_item_events (item_id)""",
]

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

    def supervisors(self) -> list[str]:
        """The names that may reassign work items (kept in the log)."""
        rows = list(self._query(self._sql("SELECT value FROM audit_meta WHERE key = ?"), (SUPERVISORS_KEY,)))
        return json.loads(rows[0][0]) if rows else []

    # -- changing, each in a transaction of its own -----------------------------------------
    def _event(self, item_id: int | None, action: str, actor: str, assignee: str | None, at: str) -> None:
        # every event is written under the head's lock, so MAX + 1 is safe on both stores
        (top,) = self._execute("SELECT COALESCE(MAX(id), 0) FROM audit_work_item_events")[0]
        self._execute(self._sql("INSERT INTO audit_work_item_events (id, item_id, at, action, actor, assignee) "
                                "VALUES (?, ?, ?, ?, ?, ?)"), (int(top) + 1, item_id, at, action, actor, assignee))

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
                    proposed: str) -> tuple[int, bool]:
        """Open a review work item for the record (seq, chain) unless one is open for it already:
        (the new item's id, True), or (the open item's id, False). At most one review of a record
        is open at a time: the check and the insert run under the head's lock."""
        from .store import case_key

        def insert(s) -> tuple[int, bool]:
            open_ = s._execute(s._sql(
                "SELECT id FROM audit_work_items WHERE kind = 'review' AND record_seq = ? "
                "AND COALESCE(record_chain, '') = ? AND status IN ('open', 'claimed') ORDER BY id"),
                (record[0], record[1] or ""))
            if open_:
                return int(open_[0][0]), False
            (made,) = s.work_item_ids(1)
            s._open_work_items([(made, *record, "review", case_key(case_id), queue, "review-requested",
                                 reason_text, proposed, 1, utc_now())])
            return made, True
        return self._changed(insert)
