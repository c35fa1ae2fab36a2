"""The SQLite audit store (standard library): one file in WAL mode, the embedded default."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

from .record import GENESIS
from .store import MIGRATE_FROM_1, SCHEMA, SCHEMA_VERSION, AuditStore, StoreError


class SQLiteStore(AuditStore):
    """An audit log in one SQLite file. Several processes may append: each append takes the
    database's write lock first (BEGIN IMMEDIATE), so the chain stays unbroken."""

    def __init__(self, path: str, *, timeout: float = 60.0, synchronous: str = "FULL"):
        self.url = str(path)
        self.timeout = timeout
        try:
            self._db = sqlite3.connect(self.url, timeout=timeout, isolation_level=None, check_same_thread=False)
            self._open(synchronous)
        except sqlite3.Error as exc:
            found = self._fault(exc)
            if found is None:
                raise
            raise StoreError(*found) from exc

    def _open(self, synchronous: str = "FULL") -> None:
        # Records are about 2 KB: with 64 KB pages they are stored without overflow pages, which
        # makes appending several times faster (measured in benchmarks/bench_audit.py). It only
        # takes effect when the file is created.
        self._db.execute("PRAGMA page_size=65536")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")  # FULL: a commit survives power loss too
        self._db.execute("PRAGMA foreign_keys=ON")
        self._begin_immediate()
        try:
            for stmt in SCHEMA:
                self._db.execute(stmt)
            found = self._db.execute("SELECT value FROM audit_meta WHERE key = 'schema_version'").fetchone()
            if found is not None and found[0] == "1":
                for stmt in MIGRATE_FROM_1:
                    self._db.execute(stmt)
            self._db.execute("INSERT INTO audit_meta (key, value) VALUES ('schema_version', ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))
            self._db.execute("INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, ?)", (GENESIS,))
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _fault(self, exc: Exception) -> tuple[str, str] | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc)
        if name.startswith("SQLITE_FULL") or "is full" in text:
            return ("full", f"the audit log {self.url} is full: no space left on its disk ({text})")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
            return ("locked", f"the audit log {self.url} is locked by another process, longer than the "
                              f"{self.timeout:g} s timeout ({text})")
        if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY")) or "disk I/O" in text:
            return ("io", f"the audit log {self.url} cannot be written ({text}: is its disk full?)")
        return None

    def _begin_immediate(self) -> None:
        """Take the database's write lock, waiting up to the timeout. The wait is a loop of short
        waits, not one long one inside SQLite, so that Ctrl-C is heard while another process holds
        the lock."""
        deadline = time.monotonic() + self.timeout
        self._db.execute(f"PRAGMA busy_timeout = {min(100, int(self.timeout * 1000))}")
        try:
            while True:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    name = getattr(exc, "sqlite_errorname", "") or ""
                    if not (name.startswith("SQLITE_BUSY") or "locked" in str(exc)) or time.monotonic() >= deadline:
                        raise
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")

    def _begin_append(self) -> tuple[int, str]:
        self._begin_immediate()
        seq, hash_ = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        return int(seq), hash_

    def _begin_chain_append(self, chain: str) -> tuple[int, str]:
        self._begin_immediate()  # SQLite has one write lock: it serialises every chain
        row = self._db.execute("SELECT seq, hash FROM audit_chains WHERE chain = ?", (chain,)).fetchone()
        if row is None:
            self._db.execute("ROLLBACK")
            raise KeyError(f"no partition chain {chain} in this log")
        return int(row[0]), row[1]

    def _execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._db.execute(sql, params).fetchall()

    def _execute_count(self, sql: str, params: tuple = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        self._db.executemany(sql, rows)

    def _commit(self) -> None:
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _query(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        cur = self._db.execute(sql, params)
        while True:
            rows = cur.fetchmany(1000)
            if not rows:
                return
            yield from rows

    def close(self) -> None:
        self._db.close()
