"""Helpers for tests that run `vedtak run` in a child process and then read its log and output."""

from __future__ import annotations

import json
import sqlite3

from vedtak.audit import open_store
from vedtak.audit.verify import verify

DECIDING = ("decision", "referral")


def write_jsonl(path, cases):
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return path


def records(db) -> list:
    with open_store(str(db)) as store:
        return list(store.records())


def verifies(db) -> bool:
    with open_store(str(db)) as store:
        return verify(store).ok


def deciding_ids(db) -> list:
    """The case ids of every decision and referral record, one entry per record."""
    return [r.case_id for r in records(db) if r.kind in DECIDING]


def head(db) -> int:
    """The log's head seq as another process sees it (0 while it is being created)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT seq FROM audit_head").fetchone()[0])
        finally:
            con.close()
    except (sqlite3.Error, TypeError):
        return 0


def output_ids(path) -> list:
    """The case ids of an output file's decisions, in order; the file never ends in a partial line."""
    text = path.read_text() if path.exists() else ""
    assert text == "" or text.endswith("\n"), "the output ends in a partial line"
    return [json.loads(line)["case_id"] for line in text.split("\n")[:-1]]
