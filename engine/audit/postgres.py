"""The PostgreSQL audit store (psycopg 3): the same schema and guarantees, for a shared server.

Writers in several processes serialise on a row lock of the chain head (SELECT ... FOR
UPDATE), so the chain stays unbroken however many append at once.
"""

from __future__ import annotations

import itertools
from urllib.parse import urlsplit
from collections.abc import Iterator

from .record import GENESIS
from .store import MIGRATE_FROM_1, SCHEMA, postgres_ddl, SCHEMA_VERSION, AuditStore, read_only_refusal, schema_problem
from .work_items import WORK_ITEM_MIGRATE

_names = itertools.count()


class PostgresStore(AuditStore):
    """An audit log in a PostgreSQL database, given as a ``postgresql://`` URL."""

    placeholder = "%s"

    def __init__(self, url: str, *, timeout: float = 60.0, read_only: bool = False):
        import psycopg  # imported here so that SQLite users need no PostgreSQL client library

        self.url = url
        self.timeout = timeout
        self.read_only = read_only
        self._db = psycopg.connect(url, autocommit=False)
        self._reader = psycopg.connect(url, autocommit=False)
        try:
            if read_only:  # no DDL, no advisory lock, no write: a reader never waits for a writer
                self._db.read_only = self._reader.read_only = True
                self._check_schema()
            else:
                self._create(timeout)
        except psycopg.Error as exc:
            self._db.rollback()
            raise self._as_store_error(exc) from exc

    def _schema_problem(self) -> str | None:
        """What the log lacks of the current schema (see :func:`schema_problem`), read without locks."""
        with self._db.cursor() as cur:
            cur.execute("SELECT relname FROM pg_class WHERE relkind IN ('r', 'p', 'i', 'S') AND pg_table_is_visible(oid)")
            present = {row[0] for row in cur.fetchall()}
            version = None
            if "audit_meta" in present:
                cur.execute("SELECT value FROM audit_meta WHERE key = 'schema_version'")
                row = cur.fetchone()
                version = None if row is None else row[0]
        self._db.rollback()
        problem = schema_problem(version, present)
        if problem is None and "audit_work_item_ids" not in present:
            problem = "lacks audit_work_item_ids and needs an upgrade"
        return problem

    def _events_chained(self) -> bool:
        """Whether the queue's events table has its hash chain's columns (WORK_ITEM_MIGRATE adds them)."""
        with self._db.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'audit_work_item_events' "
                        "AND column_name = 'hash'")
            found = cur.fetchone() is not None
        self._db.rollback()
        return found

    def _check_schema(self) -> None:
        problem = self._schema_problem()
        if problem is not None:
            self.close()
            raise read_only_refusal(urlsplit(self.url)._replace(netloc=urlsplit(self.url).netloc.rpartition("@")[2])
                                    .geturl(), problem)  # shown without user name or password

    def _create(self, timeout: float) -> None:
        with self._db.cursor() as cur:
            # waiting for the chain head (another writer's transaction) ends after the timeout
            cur.execute(f"SET lock_timeout = {max(1, int(timeout * 1000))}")
        self._db.commit()
        self._lz4()
        problem = self._schema_problem()
        chained = self._events_chained()
        if problem is None and chained:
            # no DDL on a current schema: CREATE INDEX IF NOT EXISTS takes a share lock on its table
            # even when the index exists, which deadlocks with partitions appending at the same time
            return
        with self._db.cursor() as cur:
            # concurrent first opens must not race to create the tables
            cur.execute("SELECT pg_advisory_xact_lock(7365420871)")
            for stmt in SCHEMA:
                cur.execute(postgres_ddl(stmt))
            cur.execute("SELECT value FROM audit_meta WHERE key = 'schema_version'")
            found = cur.fetchone()
            if found is None or found[0] == "1":
                # partition chains append concurrently, so work item ids come from a sequence
                for stmt in (MIGRATE_FROM_1 if found is not None else []):
                    cur.execute(stmt)
                cur.execute("CREATE SEQUENCE IF NOT EXISTS audit_work_item_ids")
                cur.execute("SELECT COALESCE(MAX(id), 0) FROM audit_work_items")
                top = int(cur.fetchone()[0])
                if top:
                    cur.execute("SELECT setval('audit_work_item_ids', %s)", (top,))
            if problem != "none" and not chained:  # an existing log whose queue events are not chained yet
                cur.execute("SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = 'audit_work_item_events'")
                have = {row[0] for row in cur.fetchall()}
                for stmt in WORK_ITEM_MIGRATE:
                    if not (stmt.startswith("ALTER") and stmt.split()[-2] in have):
                        cur.execute(stmt)
            cur.execute("INSERT INTO audit_meta (key, value) VALUES ('schema_version', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))
            cur.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, %s) ON CONFLICT (id) DO NOTHING",
                        (GENESIS,))
        self._db.commit()

    def _lz4(self) -> None:
        """Have the server compress what this writer stores out of line (a block's records) with lz4,
        where it can (PostgreSQL 14 and later, built with lz4): half pglz's cost for about the same
        size on disk (benchmarks/bench_pg_insert.py). Elsewhere the server's default stands."""
        import psycopg

        try:
            with self._db.cursor() as cur:
                cur.execute("SET default_toast_compression = 'lz4'")
            self._db.commit()
        except psycopg.Error:
            self._db.rollback()

    def _fault(self, exc: Exception) -> tuple[str, str] | None:
        import psycopg

        if not isinstance(exc, psycopg.Error):
            return None
        state = getattr(exc, "sqlstate", None) or ""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if state.startswith("53"):
            return ("full", f"the audit log server is out of space or resources: {text}")
        if state in ("55P03", "57014", "40P01"):
            return ("locked", f"the audit log is locked by another process, longer than the {self.timeout:g} s "
                              f"timeout ({text})")
        if isinstance(exc, psycopg.OperationalError):
            return ("io", f"the audit log server cannot be reached or written: {text}")
        return None

    INDEX_INSERT = ("INSERT INTO audit_case_index (case_id, chain, seq, kind) SELECT x->>0, ?, ?::bigint + ord - 1, "
                    "x->>1 FROM jsonb_array_elements(?::jsonb) WITH ORDINALITY AS t(x, ord) "
                    "WHERE jsonb_typeof(x->0) = 'string'")
    # = ANY(ARRAY(...)), not IN (SELECT ...): the planner made that a hash semi-join over a scan of
    # the whole index table (27 ms a chunk at 200 000 rows, growing with the log), this probes
    # the primary key (1.8 ms)
    KEYS_IN_JSON = "= ANY(ARRAY(SELECT jsonb_array_elements_text(?::jsonb)))"
    KEYS_OF_INDEX = "SELECT x->>0 FROM jsonb_array_elements(?::jsonb) AS t(x)"
    VERIFY_COLUMNS = "chain, first_seq, last_seq, recorded_at, header, records, digests, prev_hash, hash, TRUE"

    def _begin_append(self) -> tuple[int, str]:
        with self._db.cursor() as cur:
            cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            seq, hash_ = cur.fetchone()
        return int(seq), hash_

    def _begin_chain_append(self, chain: str) -> tuple[int, str]:
        with self._db.cursor() as cur:
            cur.execute("SELECT seq, hash FROM audit_chains WHERE chain = %s FOR UPDATE", (chain,))
            row = cur.fetchone()
        if row is None:
            self._db.rollback()
            raise KeyError(f"no partition chain {chain} in this log")
        return int(row[0]), row[1]

    def _open_work_items(self, rows: list[tuple]) -> None:
        """As the store's, by COPY: 5 µs an item against 25 for one multi-row INSERT, whose hundreds
        of parameters psycopg parses anew each time (benchmarks/bench_pg_insert.py)."""
        with self._db.cursor() as cur:
            with cur.copy("COPY audit_work_items (id, record_seq, record_chain, kind, case_id, queue, reason_code, "
                          "reason_text, proposed, priority, created_at, status) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((*row, "open"))

    def work_item_ids(self, n: int) -> list[int]:
        rows = self._execute("SELECT nextval('audit_work_item_ids') FROM generate_series(1, %s)", (n,))
        return [int(r[0]) for r in rows]

    def _execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._db.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def _execute_count(self, sql: str, params: tuple = ()) -> int:
        with self._db.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        with self._db.cursor() as cur:
            cur.executemany(sql, rows)

    def _commit(self) -> None:
        self._db.commit()

    def _rollback(self) -> None:
        self._db.rollback()

    def _query(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        try:
            with self._reader.cursor(name=f"vedtak_read_{next(_names)}") as cur:
                cur.itersize = 1000
                cur.execute(sql, params)
                yield from cur
        finally:
            self._reader.rollback()

    def close(self) -> None:
        self._db.close()
        self._reader.close()
