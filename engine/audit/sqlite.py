"""The SQLite audit store (standard library): one file in WAL mode, the embedded default."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from urllib.parse import quote

from .record import GENESIS
from .store import (MIGRATE_FROM_1, older_schema_reads, SCHEMA, SCHEMA_VERSION, AuditStore, StoreError, read_only_refusal,
                    schema_problem)
from .work_items import WORK_ITEM_MIGRATE

# Errors of a read-only connection that cannot set up the readers' shared memory (the -shm file
# beside the log): it cannot be created or grown, e.g. on a full disk or a read-only directory.
_NO_SHARED_MEMORY = ("SQLITE_IOERR_SHM", "SQLITE_READONLY_CANTINIT", "SQLITE_READONLY_CANTLOCK", "SQLITE_CANTOPEN",
                     "SQLITE_READONLY_DIRECTORY")


def _unwritable(path: str) -> bool:
    """Whether this process cannot write the file or create files beside it (read-only file, directory
    or file system). (Root may write a file whatever its mode says: for root only a read-only file
    system or directory counts.)"""
    folder = os.path.dirname(path)
    try:
        if os.statvfs(path).f_flag & getattr(os, "ST_RDONLY", 1):
            return True
    except OSError:
        return False
    return not os.access(path, os.W_OK) or not os.access(folder, os.W_OK | os.X_OK)


class SQLiteStore(AuditStore):
    """An audit log in one SQLite file. Several processes may append: each append takes the
    database's write lock first (BEGIN IMMEDIATE), so the chain stays unbroken.

    ``read_only``: open an existing log for reading only (verify, show, export, replay, queue
    list): nothing is written, not even at open, so that a reader never waits for a writer's lock
    (in WAL mode readers and the one writer do not block each other) and works on a full disk.
    A log whose schema must first be created or upgraded is a :class:`StoreError` ("upgrade").
    """

    def __init__(self, path: str, *, timeout: float = 60.0, synchronous: str = "FULL", read_only: bool = False):
        self.url = str(path)
        self.timeout = timeout
        self.read_only = read_only
        try:
            if read_only:
                self._open_read_only()
            else:
                self._db = sqlite3.connect(self.url, timeout=timeout, isolation_level=None, check_same_thread=False)
                self._open(synchronous)
        except sqlite3.Error as exc:
            found = self._fault(exc)
            if found is None:
                raise
            raise StoreError(*found) from exc

    def _schema(self) -> str | None:
        """Why the log is not at the current schema, or None; a read, taking no write lock."""
        present = {name for (name,) in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
        version = None
        if "audit_meta" in present:
            row = self._db.execute("SELECT value FROM audit_meta WHERE key = 'schema_version'").fetchone()
            version = None if row is None else row[0]
        return schema_problem(version, present)

    def _open_read_only(self) -> None:
        path = os.path.abspath(self.url)
        uri = "file:" + quote(path) + "?mode=ro"
        wal = path + "-wal"
        pending = os.path.isfile(wal) and os.path.getsize(wal) > 0
        if not pending and _unwritable(path):
            # Nothing can write the log (a read-only file, directory or file system) and no write-ahead
            # log holds records: read the file as it is, creating nothing beside it (no -wal, no -shm)
            uri += "&immutable=1"
        self._db = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            problem = self._schema()
        except sqlite3.DatabaseError as exc:
            name = getattr(exc, "sqlite_errorname", "") or ""
            if name.startswith("SQLITE_NOTADB") or "not a database" in str(exc):
                self._db.close()
                raise StoreError("upgrade", f"{self.url} is not a vedtak audit log (not a SQLite database)") from None
            if not name.startswith(_NO_SHARED_MEMORY):
                raise
            # No shared memory for readers (a full disk: the -shm file cannot be made). Read without
            # it: the write-ahead log's index is then built in this process's memory, and the file is
            # read without locks (a writer could not commit on this disk either).
            self._db.close()
            self._db = sqlite3.connect(uri + "&vfs=unix-none", uri=True, timeout=self.timeout,
                                       isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA locking_mode = EXCLUSIVE")
            problem = self._schema()
        if problem is not None and self._read_older():
            problem = None
        if problem is not None:
            self._db.close()
            if problem == "none":
                raise StoreError("upgrade", f"{self.url} holds no audit log (none of its tables): it is not a "
                                            "vedtak audit log, and reading commands do not create one")
            raise read_only_refusal(self.url, problem)

    def _read_older(self) -> bool:
        """A log of schema version 2 (record version 1, before blocks) is read as it is: the tables
        that version 3 adds are made empty in this connection's own temporary schema, and the log's
        file is not touched. True when that was done."""
        present = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
        row = self._db.execute("SELECT value FROM audit_meta WHERE key = 'schema_version'").fetchone() \
            if "audit_meta" in present else None
        statements = older_schema_reads(None if row is None else row[0], present)
        if statements is None:
            return False
        for stmt in statements:
            self._db.execute(stmt)
        return True

    def _open(self, synchronous: str = "FULL") -> None:
        deadline = time.monotonic() + self.timeout
        while self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            # A block of records is one large row: with 4 KB pages its overflow pages waste least
            # (version 1's 2 KB rows wanted 64 KB pages). It only takes effect when the file is created.
            self._db.execute("PRAGMA page_size=4096")
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                # several processes creating one log at once: switching to WAL needs the file alone,
                # and SQLite says "locked" at once rather than waiting; wait here, up to the timeout
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)
        self._db.execute(f"PRAGMA synchronous={synchronous}")  # FULL: a commit survives power loss too
        self._db.execute("PRAGMA foreign_keys=ON")
        # A writer takes the write lock at open, so that a log another process holds is reported before
        # anything is decided; with the schema current it then writes nothing (a full disk is found
        # by the first append). Readers (read_only) take no lock at all.
        self._begin_immediate()
        try:
            problem = self._schema()
            chained = self._events_chained()
            if problem is None and chained:
                self._db.execute("COMMIT")
                return
            for stmt in SCHEMA:
                self._db.execute(stmt)
            found = self._db.execute("SELECT value FROM audit_meta WHERE key = 'schema_version'").fetchone()
            if found is not None and found[0] == "1":
                for stmt in MIGRATE_FROM_1:
                    self._db.execute(stmt)
            if problem != "none" and not chained:  # an existing log whose queue events are not chained yet
                have = self._event_columns()
                for stmt in WORK_ITEM_MIGRATE:
                    if not (stmt.startswith("ALTER") and stmt.split()[-2] in have):
                        self._db.execute(stmt)
            self._db.execute("INSERT INTO audit_meta (key, value) VALUES ('schema_version', ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))
            self._db.execute("INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, ?)", (GENESIS,))
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _event_columns(self) -> set[str]:
        return {row[1] for row in self._db.execute("PRAGMA table_info(audit_work_item_events)")}

    def _events_chained(self) -> bool:
        """Whether the queue's events table has its hash chain's columns (WORK_ITEM_MIGRATE adds them)."""
        return "hash" in self._event_columns()

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
        if name.startswith("SQLITE_CANTOPEN"):  # a directory gone or made unwritable after the command's checks
            return ("io", f"the audit log {self.url} cannot be opened or created ({text}): does its directory "
                          "exist, and may this user write there?")
        if name.startswith("SQLITE_READONLY"):
            return ("io", f"the audit log {self.url} cannot be written ({text}): is it, its directory or its file "
                          "system read-only?")
        if name.startswith("SQLITE_IOERR") or "disk I/O" in text:
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
