"""Helpers for tests that run `vedtak run` in a child process and then read its log and output."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

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


def signal_once_recording(cmd: list, recorded, before: int, signum: int, pause: float = 0.0, *,
                          to_group: bool = True) -> tuple[int, str]:
    """Start ``cmd`` in a session of its own, wait until ``recorded()`` passes ``before`` (the run has
    recorded something), wait ``pause`` seconds more, send ``signum`` (to the process group, or to the
    process alone) unless it has ended, and return its exit code and standard error. The 60 s wait
    for it to end is a hang guard, not a speed threshold."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    waited = time.monotonic()
    while recorded() <= before and proc.poll() is None and time.monotonic() - waited < 120:
        time.sleep(0.02)
    time.sleep(pause)
    if proc.poll() is None:
        (os.killpg if to_group else os.kill)(proc.pid, signum)
    try:
        _, err = proc.communicate(timeout=60)  # communicate also waits for the workers' pipes
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(map(str, cmd[2:5]))} did not stop within 60 s of signal {signum}")
    return proc.returncode, err
