"""The audit store interface, shared by SQLite and PostgreSQL: one schema, one chain discipline.

Appending takes the chain head under a lock (SQLite: the database write lock; PostgreSQL:
a row lock on the head), links every record to the one before, and commits the records,
the new head and any new ruleset sources in one transaction. A crash at any instant leaves
either all of a transaction or none of it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .record import GENESIS, AuditRecordV1, Entry, sha256, utc_now

SCHEMA_VERSION = 1

# The same tables in both stores; the SQL dialects differ only in placeholders and locking.
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audit_records (
        seq BIGINT PRIMARY KEY,
        recorded_at TEXT NOT NULL,
        kind TEXT NOT NULL,
        case_id TEXT,
        input_sha256 TEXT NOT NULL,
        ruleset_sha256 TEXT,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS audit_records_case ON audit_records (case_id)""",
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audit_work_items (
        id BIGINT PRIMARY KEY,
        record_seq BIGINT,
        kind TEXT NOT NULL,
        case_id TEXT,
        queue TEXT NOT NULL,
        reason_code TEXT NOT NULL,
        reason_text TEXT NOT NULL,
        proposed TEXT,
        priority INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL,
        assignee TEXT,
        claimed_at TEXT,
        decided_seq BIGINT)""",
    """CREATE INDEX IF NOT EXISTS audit_work_items_open ON audit_work_items (status, queue)""",
    """CREATE TABLE IF NOT EXISTS audit_rulesets (
        sha256 TEXT PRIMARY KEY,
        ruleset_id TEXT NOT NULL,
        version TEXT NOT NULL,
        path TEXT NOT NULL,
        source TEXT NOT NULL,
        stored_at TEXT NOT NULL)""",
]


@dataclass(frozen=True)
class StoredRuleset:
    sha256: str
    ruleset_id: str
    version: str
    path: str
    source: str


def case_key(case_id) -> str | None:
    """The case id as the indexed text column holds it (its canonical JSON: "A1" or 17)."""
    if case_id.__class__ is int:
        return str(case_id)
    return None if case_id is None else json.dumps(case_id, ensure_ascii=False)


class AuditStore(ABC):
    """An append-only, hash-chained log of audit records."""

    url: str

    # -- what each backend provides --------------------------------------------------------
    @abstractmethod
    def _begin_append(self) -> tuple[int, str]:
        """Start a transaction that holds the chain head; return the head (seq, hash)."""

    @abstractmethod
    def _execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one statement in the current transaction; return its rows."""

    @abstractmethod
    def _executemany(self, sql: str, rows: list[tuple]) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _query(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        """Read outside any append transaction, streaming rows."""

    @abstractmethod
    def close(self) -> None: ...

    placeholder = "?"

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    # -- appending -------------------------------------------------------------------------
    def append(self, entries: list[Entry], rulesets: Iterable[StoredRuleset] = (),
               then=None) -> list[tuple[int, str]]:
        """Append entries as one transaction; returns each committed record's (seq, hash), in order.

        Entries that carry a work item open it in the same transaction; ``then(store, done)``,
        if given, runs last inside it too (a caseworker's decision closes its item there).
        """
        if not entries and not rulesets and then is None:
            return []
        seq, prev = self._begin_append()
        try:
            for rs in rulesets:
                self._store_ruleset(rs)
            now = utc_now()
            done, rows = [], []
            make_body = AuditRecordV1.make_body
            for entry in entries:
                seq += 1
                body = make_body(entry, seq, now, prev)
                hash_ = sha256(body)
                rows.append((seq, now, entry.kind, case_key(entry.case_id), entry.input_sha256,
                             entry.ruleset_sha256, body, prev, hash_))
                done.append((seq, hash_))
                prev = hash_
            if rows:
                self._executemany(self._sql(
                    "INSERT INTO audit_records (seq, recorded_at, kind, case_id, input_sha256, ruleset_sha256, "
                    "body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"), rows)
                self._execute(self._sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"), (seq, prev))
            items = [(e, s) for e, (s, _) in zip(entries, done) if e.work_item is not None]
            if items:
                next_id = self.next_work_item_id()
                self._executemany(self._sql(
                    "INSERT INTO audit_work_items (id, record_seq, kind, case_id, queue, reason_code, reason_text, "
                    "proposed, priority, created_at, status) VALUES (?, ?, 'referral', ?, ?, ?, ?, ?, ?, ?, 'open')"),
                    [(next_id + i, s, case_key(e.case_id), *e.work_item[:4], e.work_item[4], now)
                     for i, (e, s) in enumerate(items)])
            if then is not None:
                then(self, done)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return done

    def next_work_item_id(self) -> int:
        """The next work item id; call only inside an append, which holds the chain's lock."""
        return int(self._execute("SELECT COALESCE(MAX(id), 0) FROM audit_work_items")[0][0]) + 1

    @abstractmethod
    def _execute_count(self, sql: str, params: tuple = ()) -> int:
        """Run one statement in the current transaction; return how many rows it changed."""

    def _store_ruleset(self, rs: StoredRuleset) -> None:
        found = self._execute(self._sql("SELECT sha256 FROM audit_rulesets WHERE sha256 = ?"), (rs.sha256,))
        if not found:
            self._execute(self._sql("INSERT INTO audit_rulesets (sha256, ruleset_id, version, path, source, "
                                    "stored_at) VALUES (?, ?, ?, ?, ?, ?)"),
                          (rs.sha256, rs.ruleset_id, rs.version, rs.path, rs.source, utc_now()))

    def store_rulesets(self, rulesets: Iterable[StoredRuleset]) -> None:
        """Store ruleset sources (once per SHA-256) in their own transaction."""
        self.append([], list(rulesets))

    # -- reading ---------------------------------------------------------------------------
    def head(self) -> tuple[int, str]:
        rows = list(self._query("SELECT seq, hash FROM audit_head WHERE id = 1"))
        return (int(rows[0][0]), rows[0][1]) if rows else (0, GENESIS)

    def rows(self, start: int = 1) -> Iterator[tuple]:
        """Raw rows in sequence order: (seq, recorded_at, kind, case_id, input_sha256,
        ruleset_sha256, body, prev_hash, hash)."""
        return self._query(self._sql(
            "SELECT seq, recorded_at, kind, case_id, input_sha256, ruleset_sha256, body, prev_hash, hash "
            "FROM audit_records WHERE seq >= ? ORDER BY seq"), (start,))

    def record(self, seq: int) -> AuditRecordV1 | None:
        """The record with this sequence number, if the log holds it."""
        rows = self.rows(seq)
        try:
            row = next(rows, None)
        finally:
            rows.close()
        return AuditRecordV1.from_body(row[6], row[8]) if row is not None and int(row[0]) == seq else None

    def records_from(self, start: int) -> Iterator[AuditRecordV1]:
        for row in self.rows(start):
            yield AuditRecordV1.from_body(row[6], row[8])

    def records(self, case_id=None) -> Iterator[AuditRecordV1]:
        """Records in sequence order, optionally only those of one case."""
        if case_id is None:
            rows = self.rows()
        else:
            rows = self._query(self._sql(
                "SELECT seq, recorded_at, kind, case_id, input_sha256, ruleset_sha256, body, prev_hash, hash "
                "FROM audit_records WHERE case_id = ? ORDER BY seq"), (case_key(case_id),))
        for row in rows:
            yield AuditRecordV1.from_body(row[6], row[8])

    def case_records(self, case_ids: list, *, with_body: bool = False) -> list[tuple]:
        """(case key, input_sha256, ruleset_sha256, seq, body or None) of every record of these cases."""
        keys = sorted({case_key(c) for c in case_ids if c is not None})
        out: list[tuple] = []
        column = "body" if with_body else "NULL"
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ", ".join("?" for _ in chunk)
            for cid, input_sha, rs_sha, seq, body in self._query(self._sql(
                    f"SELECT case_id, input_sha256, ruleset_sha256, seq, {column} FROM audit_records "
                    f"WHERE case_id IN ({marks}) AND kind <> 'human' ORDER BY seq"), tuple(chunk)):
                out.append((cid, input_sha, rs_sha, int(seq), body))
        return out

    def recorded(self, keys: list[tuple]) -> set[tuple]:
        """Which (case_id, input_sha256, ruleset_sha256) keys already have a record (case ids as
        :func:`case_key` writes them)."""
        wanted = {(case_key(c), i, r) for c, i, r in keys}
        have = {(cid, i, r) for cid, i, r, _, _ in self.case_records([c for c, _, _ in keys])}
        return wanted & have

    def rulesets(self) -> list[StoredRuleset]:
        return [StoredRuleset(*row) for row in self._query(
            "SELECT sha256, ruleset_id, version, path, source FROM audit_rulesets ORDER BY stored_at, sha256")]

    def ruleset(self, sha: str) -> StoredRuleset | None:
        rows = list(self._query(self._sql(
            "SELECT sha256, ruleset_id, version, path, source FROM audit_rulesets WHERE sha256 = ?"), (sha,)))
        return StoredRuleset(*rows[0]) if rows else None

    def count(self) -> int:
        return int(next(iter(self._query("SELECT COUNT(*) FROM audit_records")))[0])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stored_ruleset(version) -> StoredRuleset:
    """The stored form of a checked ruleset version (its exact source text)."""
    assert sha256(version.source.text) == version.sha256
    return StoredRuleset(version.sha256, version.id, version.version, version.source.path, version.source.text)
