"""The audit store interface, shared by SQLite and PostgreSQL: one schema, one chain discipline.

Appending takes the chain head under a lock (SQLite: the database write lock; PostgreSQL:
a row lock on the head), links every record to the one before, and commits the records,
the new head and any new ruleset sources in one transaction. A crash at any instant leaves
either all of a transaction or none of it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .block_store import AuditRecordV2, BlockStoreMixin, EntryBlock, FrozenBlock
from .record import GENESIS, AuditRecordV1, Entry, case_key, sha256, utc_now  # noqa: F401 - case_key: re-exported
from .work_items import WORK_ITEM_SCHEMA, WorkItemStore

# 2: partition chains of distributed runs (audit_chains, audit_chain_records, audit_runs);
# 3: record version 2 in blocks (audit_blocks, audit_case_index); version 1 records stay as written
SCHEMA_VERSION = 3

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
        decided_seq BIGINT,
        record_chain TEXT)""",
    """CREATE INDEX IF NOT EXISTS audit_work_items_open ON audit_work_items (status, queue)""",
    """CREATE TABLE IF NOT EXISTS audit_rulesets (
        sha256 TEXT PRIMARY KEY,
        ruleset_id TEXT NOT NULL,
        version TEXT NOT NULL,
        path TEXT NOT NULL,
        source TEXT NOT NULL,
        stored_at TEXT NOT NULL)""",
    # A distributed run writes each partition to a chain of its own (the same record columns, and
    # each chain's head in audit_chains); the run's manifest record on the main chain commits to
    # every partition chain's head hash and record count.
    """CREATE TABLE IF NOT EXISTS audit_chain_records (
        chain TEXT NOT NULL,
        seq BIGINT NOT NULL,
        recorded_at TEXT NOT NULL,
        kind TEXT NOT NULL,
        case_id TEXT,
        input_sha256 TEXT NOT NULL,
        ruleset_sha256 TEXT,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (chain, seq))""",
    """CREATE INDEX IF NOT EXISTS audit_chain_records_case ON audit_chain_records (case_id)""",
    """CREATE TABLE IF NOT EXISTS audit_chains (
        chain TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        part INTEGER NOT NULL,
        spec TEXT NOT NULL,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        done TEXT)""",
    """CREATE TABLE IF NOT EXISTS audit_runs (
        run_id TEXT PRIMARY KEY,
        run_key TEXT NOT NULL,
        spec TEXT NOT NULL,
        started_at TEXT NOT NULL,
        manifest_seq BIGINT)""",
    # Record version 2 (engine/audit/blocks.py): one row per committed block of records, on the main
    # chain (chain '') or a partition chain, and one index row per record with a case id.
    """CREATE TABLE IF NOT EXISTS audit_blocks (
        chain TEXT NOT NULL,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        recorded_at TEXT NOT NULL,
        header TEXT NOT NULL,
        records BLOB NOT NULL,
        digests BLOB NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (chain, first_seq))""",
    """CREATE TABLE IF NOT EXISTS audit_case_index (
        case_id TEXT NOT NULL,
        chain TEXT NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        PRIMARY KEY (case_id, chain, seq)) WITHOUT ROWID""",
    *WORK_ITEM_SCHEMA,  # the queue's history: claims, releases, assignments (engine/audit/work_items.py)
]

# Upgrading a version 1 log: the only change to an existing table.
MIGRATE_FROM_1 = ["ALTER TABLE audit_work_items ADD COLUMN record_chain TEXT"]

# Every table and index the schema makes: a log that has them all, at SCHEMA_VERSION, is opened
# without any DDL or write (so that reading never waits for a writer's lock, nor needs disk space).
def postgres_ddl(stmt: str) -> str:
    """A schema statement in PostgreSQL's dialect (the schema is written in SQLite's)."""
    return stmt.replace(" BLOB ", " BYTEA ").replace(") WITHOUT ROWID", ")")


SCHEMA_OBJECTS = tuple(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", "\n".join(SCHEMA)))


def schema_problem(version: str | None, present: set[str]) -> str | None:
    """Why a log with this ``schema_version`` and these tables and indexes is not at the current
    schema (it must be created or upgraded first), or None when it is."""
    if "audit_meta" not in present or "audit_records" not in present:
        return "none"
    if version != str(SCHEMA_VERSION):
        return f"has schema version {version or 'unknown'} and needs an upgrade to version {SCHEMA_VERSION}"
    missing = [name for name in SCHEMA_OBJECTS if name not in present]
    return f"lacks {', '.join(missing)} and needs an upgrade" if missing else None


VERSION_3_OBJECTS = ("audit_blocks", "audit_case_index")


def older_schema_reads(version: str | None, present: set[str]) -> list[str] | None:
    """For a log at schema version 2 (written before record version 2), the statements that let a
    reading command read it as it is: the version 3 tables, empty, in the reader's temporary
    schema. None for any other log (current, older, or not a log)."""
    if version != "2" or any(name not in present for name in SCHEMA_OBJECTS if name not in VERSION_3_OBJECTS):
        return None
    return [stmt.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE IF NOT EXISTS", 1) for stmt in SCHEMA
            if any(f"EXISTS {name} " in stmt for name in VERSION_3_OBJECTS)]


def read_only_refusal(name: str, problem: str) -> "StoreError":
    """The error of a reading command that met a log it could only read after creating or upgrading
    its schema (``problem`` from :func:`schema_problem`; ``name``: the log as the user gave it)."""
    if problem == "none":
        return StoreError("upgrade", f"{name} holds no audit log (none of its tables): reading commands "
                                     "do not create one")
    return StoreError("upgrade", f"the audit log {name} {problem}, which reading commands do not make: open "
                                 "it once with a command that writes to it (vedtak run or decide with --audit, "
                                 f"or vedtak queue supervisors {name}, which only lists), then read it")


class StoreError(Exception):
    """The log could not be written or read: the disk is full, another process held the log
    locked longer than the timeout, or an I/O error. The transaction in progress was rolled
    back, so the log is exactly as it was before it. ``reason`` is "full", "locked" or "io"; or
    "upgrade" when a log opened read-only needs its schema created or upgraded first."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PriorRecord:
    """A record of a case already in the log (see :meth:`AuditStore.prior_records`)."""

    key: str
    chain: str | None
    seq: int
    kind: str
    input_sha256: str
    ruleset_sha256: str | None
    body: str | None

    @property
    def ref(self) -> str:
        return str(self.seq) if self.chain is None else f"{self.chain}:{self.seq}"


class ChainConflict(Exception):
    """Another writer appended to a partition chain since this one read its head (a duplicate
    attempt at the same partition); this attempt must stop and leave the chain to the other."""


@dataclass(frozen=True)
class ChainInfo:
    """A partition chain of a distributed run and its head; ``done`` is the partition's summary
    (JSON) once every case of the partition is recorded."""

    chain: str
    run_id: str
    part: int
    spec: str
    seq: int
    hash: str
    done: str | None


@dataclass(frozen=True)
class StoredRuleset:
    sha256: str
    ruleset_id: str
    version: str
    path: str
    source: str


class AuditStore(BlockStoreMixin, WorkItemStore, ABC):
    """An append-only, hash-chained log of audit records, and the caseworkers' work items (the
    claims, releases, assignments and reviews are in :class:`~vedtak.audit.work_items.WorkItemStore`)."""

    url: str

    # -- what each backend provides --------------------------------------------------------
    @abstractmethod
    def _begin_append(self) -> tuple[int, str]:
        """Start a transaction that holds the chain head; return the head (seq, hash)."""

    @abstractmethod
    def _begin_chain_append(self, chain: str) -> tuple[int, str]:
        """Start a transaction that holds a partition chain's head; return it (seq, hash)."""

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
        """Append entries to the main chain as one transaction; returns each committed record's
        (seq, hash), in order.

        Entries that carry a work item open it in the same transaction; ``then(store, done)``,
        if given, runs last inside it too (a caseworker's decision closes its item there).
        """
        if not entries and not rulesets and then is None:
            return []
        return self.append_prepared(lambda store: (entries, then), rulesets)

    def append_prepared(self, prepare, rulesets: Iterable[StoredRuleset] = ()) -> list[tuple[int, str]]:
        """Append to the main chain what ``prepare(store)`` returns, ``(entries, then or None)``
        (or ``(entries, then, block)``: the same entries built into a block already, by a worker),
        with ``prepare`` run inside the same transaction, under the append lock: what it reads
        (e.g. :meth:`prior_records`) cannot change before its entries are committed. New ruleset
        sources are stored first, in the same transaction."""
        if self._group is not None:
            raise RuntimeError("append_prepared inside a group of appends: use append_grouped")
        done = self.append_grouped(prepare, rulesets)
        self.commit_group()
        return done

    # -- group commit: several appends in one transaction (a batch's writer) ----------------------
    _group: list | None = None

    def append_grouped(self, prepare, rulesets: Iterable[StoredRuleset] = ()) -> list[tuple[int, str]]:
        """As :meth:`append_prepared`, but inside a transaction that stays open (taking the append
        lock at the first call) until :meth:`commit_group`: one commit, one fsync, for many blocks.
        Nothing appended this way is durable — nor may be released — before commit_group returns.
        On any failure the whole group is rolled back and the error raised."""
        if self._group is None:
            try:
                self._group = list(self._begin_append())
            except Exception as exc:
                raise self._as_store_error(exc) from exc
        try:
            for rs in rulesets:
                self._store_ruleset(rs)
            entries, then, *block = prepare(self)
            seq, prev = self._group
            done = self._insert_records(entries, seq, prev, None, *block)
            if then is not None:
                then(self, done)
            if done:
                self._group = [done[-1][0], done[-1][1]]
        except BaseException as exc:
            self._group = None
            raise self._abort(exc) from exc
        return done

    def commit_group(self) -> None:
        """Commit the group of appends in progress, if any."""
        if self._group is None:
            return
        self._group = None
        try:
            self._commit()
        except BaseException as exc:
            raise self._abort(exc) from exc

    def rollback_group(self) -> None:
        if self._group is not None:
            self._group = None
            self._abort(RuntimeError("group rolled back"))

    def _abort(self, exc: BaseException) -> BaseException:
        """Roll back the append in progress; what to raise for ``exc`` (see :meth:`_as_store_error`)."""
        try:
            self._rollback()
        except Exception:  # noqa: BLE001 - the backend may have rolled back itself
            pass
        return self._as_store_error(exc)

    def _as_store_error(self, exc: BaseException) -> BaseException:
        """``exc`` as a :class:`StoreError` when it is a fault of the backend (full, locked, I/O)."""
        if isinstance(exc, StoreError):
            return exc
        found = self._fault(exc) if isinstance(exc, Exception) else None
        return exc if found is None else StoreError(*found)

    def _fault(self, exc: Exception) -> tuple[str, str] | None:
        """(reason, message) when ``exc`` is a disk-full, lock-timeout or I/O error of the backend."""
        return None

    def append_to_chain(self, chain: str, entries: list[Entry] | None = None, *, expect_seq: int,
                        prepare=None) -> list[tuple[int, str]]:
        """Append entries to a partition chain as one transaction, holding only that chain's head.

        ``expect_seq`` is the head the caller last saw; if another writer has moved it since, nothing
        is written and :class:`ChainConflict` is raised — a partition is never recorded twice.
        Instead of ``entries``, ``prepare(store)`` may build them inside the transaction (SQLite: under
        the log's one write lock; PostgreSQL: under the chain head's lock); it may also return
        ``(entries, then, block)`` as :meth:`append_prepared`'s does (``block``: built by a worker).
        """
        try:
            seq, prev = self._begin_chain_append(chain)
        except KeyError:
            raise
        except Exception as exc:
            raise self._as_store_error(exc) from exc
        try:
            if seq != expect_seq:
                raise ChainConflict(f"partition chain {chain} is at record {seq}, not {expect_seq}: "
                                    "another attempt at this partition is writing it")
            then, block = None, []
            if prepare is not None:
                entries = prepare(self)
                if isinstance(entries, tuple):
                    entries, then, *block = entries
            done = self._insert_records(entries or [], seq, prev, chain, *block)
            if then is not None:
                then(self, done)
            self._commit()
        except BaseException as exc:
            raise self._abort(exc) from exc
        return done

    def _insert_records(self, entries: list[Entry], seq: int, prev: str, chain: str | None,
                        block: "EntryBlock | FrozenBlock | None" = None) -> list[tuple[int, str]]:
        """Link entries after (seq, prev) on a chain as one block of version 2 records (``block``: the
        same entries already built into one, by a worker), insert it, its index rows and its work
        items, and move the head."""
        now = utc_now()
        if block is None:
            block = EntryBlock(self.keep_released)
            for entry in entries:
                block.add_entry(entry)
        done = self._link_block(block, seq, prev, chain, now)
        items = block.work if isinstance(block, FrozenBlock) else block.work_items()
        if items:
            ids = self.work_item_ids(len(items))
            keys = block.keys() if isinstance(block, FrozenBlock) else block.case_keys
            self._open_work_items([(id_, done[i][0], chain, "referral", keys[i], *item, now)
                                   for id_, (i, item) in zip(ids, items)])
        return done

    def work_item_ids(self, n: int) -> list[int]:
        """``n`` new work item ids; call only inside an append. (SQLite: the database write lock
        makes MAX + 1 safe; PostgreSQL overrides this with a sequence, as partition chains append
        concurrently.)"""
        first = int(self._execute("SELECT COALESCE(MAX(id), 0) FROM audit_work_items")[0][0]) + 1
        return list(range(first, first + n))

    # -- the caseworkers' work items ------------------------------------------------------------
    WORK_ITEM_COLUMNS = ("id, record_seq, kind, case_id, queue, reason_code, reason_text, proposed, priority, "
                         "created_at, status, assignee, claimed_at, decided_seq, record_chain")

    def work_item_row(self, item_id: int) -> tuple | None:
        rows = list(self._query(self._sql(
            f"SELECT {self.WORK_ITEM_COLUMNS} FROM audit_work_items WHERE id = ?"), (item_id,)))
        return rows[0] if rows else None

    def _open_work_items(self, rows: list[tuple]) -> None:
        """Insert open work items: (id, record seq, record chain, kind, case key, queue, reason code,
        reason text, proposed, priority, created at); inside an append. One statement for up to 500
        items (a block's)."""
        for i in range(0, len(rows), 500):
            part = rows[i:i + 500]
            self._execute(self._sql(
                "INSERT INTO audit_work_items (id, record_seq, record_chain, kind, case_id, queue, reason_code, "
                "reason_text, proposed, priority, created_at, status) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')"] * len(part))),
                tuple(v for row in part for v in row))

    def close_work_item(self, item_id: int, by: str, decided_seq: int) -> bool:
        """Mark an item decided by the record ``decided_seq``; call only inside an append (the one
        that appends that record). False if it was decided already."""
        return self._execute_count(self._sql(
            "UPDATE audit_work_items SET status = 'decided', decided_seq = ?, assignee = ? "
            "WHERE id = ? AND status NOT IN ('decided', 'superseded')"), (decided_seq, by, item_id)) == 1

    # -- partition chains of distributed runs ---------------------------------------------------
    def start_run(self, run_id: str, run_key: str, spec: str, chains: list[tuple[str, int, str]],
                  rulesets: Iterable[StoredRuleset] = ()) -> None:
        """Register a distributed run and its partition chains (name, partition, spec), empty, and
        store the ruleset sources its workers compile, in one transaction."""
        def register(s: AuditStore, done) -> None:
            s._execute(s._sql("INSERT INTO audit_runs (run_id, run_key, spec, started_at) VALUES (?, ?, ?, ?)"),
                       (run_id, run_key, spec, utc_now()))
            s._executemany(s._sql("INSERT INTO audit_chains (chain, run_id, part, spec, seq, hash) "
                                  "VALUES (?, ?, ?, ?, 0, ?)"),
                           [(name, run_id, part, pspec, GENESIS) for name, part, pspec in chains])
        self.append([], list(rulesets), then=register)

    def unfinished_run(self, run_key: str) -> str | None:
        """The latest run with this key that has no manifest yet (to resume), if any."""
        rows = list(self._query(self._sql(
            "SELECT run_id FROM audit_runs WHERE run_key = ? AND manifest_seq IS NULL ORDER BY started_at DESC"),
            (run_key,)))
        return rows[0][0] if rows else None

    def runs(self) -> list[tuple[str, str, int | None]]:
        """(run id, spec, manifest seq or None) of every distributed run."""
        return [(r, spec, None if m is None else int(m)) for r, spec, m in self._query(
            "SELECT run_id, spec, manifest_seq FROM audit_runs ORDER BY started_at, run_id")]

    def chains(self, run_id: str | None = None) -> list[ChainInfo]:
        """The partition chains, of one run or all, in order."""
        sql = "SELECT chain, run_id, part, spec, seq, hash, done FROM audit_chains"
        rows = self._query(self._sql(sql + " WHERE run_id = ? ORDER BY part"), (run_id,)) if run_id is not None \
            else self._query(sql + " ORDER BY run_id, part")
        return [ChainInfo(c, r, int(p), spec, int(s), h, d) for c, r, p, spec, s, h, d in rows]

    def chain(self, name: str) -> ChainInfo | None:
        rows = list(self._query(self._sql(
            "SELECT chain, run_id, part, spec, seq, hash, done FROM audit_chains WHERE chain = ?"), (name,)))
        return ChainInfo(rows[0][0], rows[0][1], int(rows[0][2]), rows[0][3], int(rows[0][4]), rows[0][5],
                         rows[0][6]) if rows else None

    def chain_names(self) -> list[str]:
        """Every chain that has a head or records (a chain whose head row was deleted is listed too)."""
        names = {r[0] for r in self._query("SELECT DISTINCT chain FROM audit_chain_records")}
        names |= {r[0] for r in self._query("SELECT chain FROM audit_chains")}
        names |= set(self.block_chains())
        return sorted(names)

    def finish_chain(self, name: str, summary: str) -> None:
        """Mark a partition complete, keeping its summary (JSON)."""
        self._begin_chain_append(name)
        try:
            self._execute(self._sql("UPDATE audit_chains SET done = ? WHERE chain = ?"), (summary, name))
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def finish_run(self, run_id: str, manifest: Entry) -> int:
        """Append the run's manifest to the main chain and mark the run finished, in one transaction."""
        def mark(s: AuditStore, done) -> None:
            s._execute(s._sql("UPDATE audit_runs SET manifest_seq = ? WHERE run_id = ?"), (done[0][0], run_id))
        return self.append([manifest], then=mark)[0][0]

    def duplicate_cases(self, run_id: str) -> list[tuple[str, int]]:
        """Case ids decided or referred in more than one partition of a run, with how often (each
        partition rejects repeats within itself, as a local run does; across partitions they are
        found here, after the fact)."""
        return [(cid, int(n)) for cid, n in self._query(self._sql(
            "SELECT case_id, COUNT(*) FROM (SELECT case_id FROM audit_chain_records WHERE chain > ? AND chain < ? "
            "AND case_id IS NOT NULL AND kind <> 'rejection' UNION ALL SELECT case_id FROM audit_case_index "
            "WHERE chain > ? AND chain < ? AND kind IN ('d', 'r')) AS found "
            "GROUP BY case_id HAVING COUNT(*) > 1 ORDER BY case_id"),
            (run_id + "/", run_id + "0", run_id + "/", run_id + "0"))]

    def chain_rows(self, chain: str, start: int = 1) -> Iterator[tuple]:
        """A partition chain's raw rows in order, as :meth:`rows` gives the main chain's."""
        return self._query(self._sql(
            "SELECT seq, recorded_at, kind, case_id, input_sha256, ruleset_sha256, body, prev_hash, hash "
            "FROM audit_chain_records WHERE chain = ? AND seq >= ? ORDER BY seq"), (chain, start))

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

    def record(self, seq: int, chain: str | None = None) -> "AuditRecordV1 | AuditRecordV2 | None":
        """The record with this sequence number (on the main chain, or on a partition chain), if any."""
        rows = self.rows(seq) if chain is None else self.chain_rows(chain, seq)
        try:
            row = next(rows, None)
        finally:
            rows.close()
        if row is not None and int(row[0]) == seq:
            return AuditRecordV1.from_body(row[6], row[8])
        return self.block_record(seq, chain)

    def records_from(self, start: int) -> Iterator["AuditRecordV1 | AuditRecordV2"]:
        for row in self.rows(start):
            yield AuditRecordV1.from_body(row[6], row[8])
        yield from self.block_records(None, start)

    def records(self, case_id=None) -> Iterator[AuditRecordV1]:
        """Every record: the main chain's in sequence order, then each partition chain's; or only
        those of one case, in the order they were recorded."""
        if case_id is not None:
            yield from self._case_records(case_id)
            return
        yield from self.records_from(1)
        for name in self.chain_names():
            for row in self.chain_rows(name):
                yield AuditRecordV1.from_body(row[6], row[8])
            yield from self.block_records(name)

    def _case_records(self, case_id) -> list[AuditRecordV1]:
        key = (case_key(case_id),)
        columns = "seq, recorded_at, kind, case_id, input_sha256, ruleset_sha256, body, prev_hash, hash"
        found = [AuditRecordV1.from_body(row[6], row[8]) for row in self._query(self._sql(
            f"SELECT {columns} FROM audit_records WHERE case_id = ? ORDER BY seq"), key)]
        found += [AuditRecordV1.from_body(row[6], row[8]) for row in self._query(self._sql(
            f"SELECT {columns} FROM audit_chain_records WHERE case_id = ? ORDER BY chain, seq"), key)]
        refs = [(chain, seq) for _, chain, seq, _ in self.indexed(list(key), in_append=False)]
        at = self._records_at(refs, in_append=False)
        found += [at[ref] for ref in sorted(refs, key=lambda r: (r[0] or "", r[1])) if ref in at]
        return sorted(found, key=lambda r: r.recorded_at)  # stable: a chain's order is kept

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
        refs = [(chain, seq) for _, chain, seq, kind in self.indexed(keys, in_append=False)
                if chain is None and kind != "human"]
        for (chain, seq), r in sorted(self._records_at(refs, in_append=False).items(), key=lambda kv: kv[0][1]):
            out.append((case_key(r.case_id), r.input_sha256, r.ruleset_sha256, r.seq,
                        r.body if with_body else None))
        return out

    def prior_records(self, case_ids: list, ruleset_id: str, *, with_body: bool = False) -> list[PriorRecord]:
        """Every decision, referral and rejection of these cases under this ruleset id (any version),
        on the main chain and on partition chains, oldest first. Call it inside
        :meth:`append_prepared` so that the answer holds until the append commits."""
        return self.prior_records_by_key([case_key(c) for c in case_ids if c is not None], ruleset_id,
                                         with_body=with_body)

    def prior_records_by_key(self, keys: list[str], ruleset_id: str, *, with_body: bool = False) -> list[PriorRecord]:
        """:meth:`prior_records` of case ids given as :func:`case_key` writes them."""
        keys = sorted(set(keys))
        body = "body" if with_body else "NULL"
        found: list[PriorRecord] = []
        for i in range(0, len(keys) if self._has_version_1_rows() else 0, 500):  # rows of a version 1 log
            chunk = tuple(keys[i:i + 500])
            marks = ", ".join("?" for _ in chunk)
            of_ruleset = "ruleset_sha256 IN (SELECT sha256 FROM audit_rulesets WHERE ruleset_id = ?)"
            for table, chain in (("audit_records", "NULL"), ("audit_chain_records", "chain")):
                rows = self._execute(self._sql(
                    f"SELECT case_id, {chain}, seq, kind, input_sha256, ruleset_sha256, {body}, recorded_at "
                    f"FROM {table} WHERE case_id IN ({marks}) AND kind IN ('decision', 'referral', 'rejection') "
                    f"AND {of_ruleset}"), (*chunk, ruleset_id))
                found += [(r[7], r[1] or "", int(r[2]), PriorRecord(r[0], r[1], int(r[2]), r[3], r[4], r[5], r[6]))
                          for r in rows]
        hits = [h for h in self.indexed(keys) if h[3] in ("decision", "referral", "rejection")]
        if hits:
            of_id = {sha for (sha,) in self._execute(self._sql(
                "SELECT sha256 FROM audit_rulesets WHERE ruleset_id = ?"), (ruleset_id,))}
            at = self._records_at([(chain, seq) for _, chain, seq, _ in hits])
            for key, chain, seq, kind in hits:
                r = at.get((chain, seq))
                if r is not None and r.ruleset_sha256 in of_id:
                    found.append((r.recorded_at, chain or "", seq, PriorRecord(
                        key, chain, seq, kind, r.input_sha256, r.ruleset_sha256, r.body if with_body else None)))
        found.sort(key=lambda t: t[:3])
        return [r for *_, r in found]

    def supersede_work_items(self, record: PriorRecord, by_seq: int) -> None:
        """Close the open work items of a record that a newer decision supersedes; inside an append."""
        chain = "record_chain IS NULL" if record.chain is None else "record_chain = ?"
        self._execute(self._sql(
            f"UPDATE audit_work_items SET status = 'superseded', decided_seq = ? WHERE record_seq = ? AND {chain} "
            "AND status IN ('open', 'claimed')"), (by_seq, record.seq, *(() if record.chain is None else (record.chain,))))

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
        """How many records the log holds, on every chain."""
        blocks = next(iter(self._query("SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM audit_blocks")))[0]
        return int(blocks) + sum(int(next(iter(self._query(f"SELECT COUNT(*) FROM {table}")))[0])
                                 for table in ("audit_records", "audit_chain_records"))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stored_ruleset(version) -> StoredRuleset:
    """The stored form of a checked ruleset version (its exact source text)."""
    assert sha256(version.source.text) == version.sha256
    return StoredRuleset(version.sha256, version.id, version.version, version.source.path, version.source.text)
