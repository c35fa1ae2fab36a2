"""Helpers for the audit tests: fresh stores of each kind, and raw SQL for tampering."""

from __future__ import annotations

import os
import sqlite3

import pytest

PG_URL = os.environ.get("VEDTAK_TEST_POSTGRES")
TABLES = ("audit_records", "audit_head", "audit_rulesets", "audit_meta", "audit_work_items", "audit_work_item_events",
          "audit_chain_records", "audit_chains", "audit_runs", "audit_blocks", "audit_case_index")


def require_postgres() -> str:
    """The test server's URL; in CI a missing server fails the test instead of skipping it."""
    if PG_URL:
        return PG_URL
    if os.environ.get("CI"):
        pytest.fail("VEDTAK_TEST_POSTGRES is not set: CI must run the PostgreSQL tests (see .ci/postgres)")
    pytest.skip("no PostgreSQL server: set VEDTAK_TEST_POSTGRES (bash .ci/postgres starts one)")


def fresh_url(kind: str, tmp_path) -> str:
    if kind == "sqlite":
        return str(tmp_path / "audit.db")
    url = require_postgres()
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        for table in TABLES:
            db.execute(f"DROP TABLE IF EXISTS {table}")
        db.execute("DROP SEQUENCE IF EXISTS audit_work_item_ids")
    return url


def raw(url: str, sql: str, params: tuple = ()) -> list:
    """Run SQL directly against the store, bypassing vedtak (to tamper with it)."""
    if url.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(url, autocommit=True) as db:
            cur = db.execute(sql.replace("%", "%%").replace("?", "%s"), params) if params else db.execute(sql)
            return cur.fetchall() if cur.description else []
    db = sqlite3.connect(url, isolation_level=None)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()
