"""Auditors read without writing: the reading commands (audit verify, show, export, replay, queue list
and show) work on a log they cannot write — a read-only file, a read-only directory — creating nothing
beside it, and given anything that is not a vedtak audit log (an empty file, another kind of file,
another program's SQLite database) they say so and change nothing.

The tests run as root in CI, and root writes a file whatever its mode says: each command then runs in
a child process whose capability bounding set lacks CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (prctl
before exec), so that file modes bind it as they bind any user; a probe checks that they do.
"""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vedtak.audit import AuditLog, StoreError, open_store

from conftest import STUDY_GRANT
from workload import generate

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2
HANG_GUARD = 240  # seconds: only so that a hang fails the test instead of the run


def bound_by_modes() -> None:
    """For preexec_fn: as root, give up the capabilities that let root ignore file modes."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "vedtak.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=HANG_GUARD, preexec_fn=bound_by_modes)


def snapshot(folder: Path) -> dict:
    """Every file in the folder with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture
def folder():
    """A folder other users may enter (pytest's own are private to root), made writable again at the end."""
    path = Path(tempfile.mkdtemp(prefix="vedtak-ro-"))
    path.chmod(0o755)
    yield path
    path.chmod(0o755)
    for p in path.iterdir():
        p.chmod(0o644)
        p.unlink()
    path.rmdir()


def make_log(folder: Path, study_plan) -> tuple[Path, str]:
    """A log of decisions and referrals, closed cleanly (no -wal or -shm beside it); a referred case id."""
    db = folder / "audit.db"
    cases = generate(30, seed=5)
    with AuditLog.open(str(db)) as log:
        decided = list(log.decide_many(study_plan, cases))
    assert sorted(p.name for p in folder.iterdir()) == ["audit.db"]
    return db, str(next(d.case_id for d in decided if d.status == "referred"))


def reading(db: Path, case_id: str) -> list[tuple[tuple, str]]:
    with open_store(str(db), read_only=True) as store:
        item = store.work_item_rows()[0][0]
    return [(("audit", "verify", db), "ok: "), (("audit", "show", db), "seq"),
            (("audit", "show", db, case_id), f"Case {case_id}:"), (("audit", "export", db), '"hash"'),
            (("replay", db), "0 differences"), (("queue", "list", db), "general"),
            (("queue", "show", db, item), f"Work item {item}")]


def cannot_write(path: Path) -> bool:
    """Whether a child process bound by file modes is refused writing ``path`` (a file or a folder)."""
    target = path / "probe" if path.is_dir() else path
    code = f"open({str(target)!r}, 'a').close()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True,
                          preexec_fn=bound_by_modes).returncode != 0


@pytest.mark.parametrize("lock", ["file", "folder"])
def test_reading_commands_work_on_a_read_only_log_and_create_nothing(folder, study_plan, lock):
    """With the log's file (mode 444) or its folder (mode 555) read-only, every reading command completes
    with exit 0 and its usual output (they failed with "attempt to write a readonly database"), and the
    folder holds exactly what it held: the log's bytes and time unchanged, no -wal or -shm made."""
    db, case_id = make_log(folder, study_plan)
    commands = reading(db, case_id)
    db.chmod(0o444)
    if lock == "folder":
        folder.chmod(0o555)
    assert cannot_write(folder if lock == "folder" else db)
    before = snapshot(folder)
    for args, shown in commands:
        r = cli(*args)
        assert r.returncode == 0, (args, r.stderr[-2000:])
        assert shown in r.stdout, (args, r.stdout[-2000:])
        assert "Traceback" not in r.stderr
    assert snapshot(folder) == before


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text('{"case_id": 1}\n')


def _other_sqlite(path: Path) -> None:
    con = sqlite3.connect(str(path))
    con.execute("CREATE TABLE notes (text TEXT)")
    con.execute("INSERT INTO notes VALUES ('mine')")
    con.commit()
    con.close()


@pytest.mark.parametrize("make", [_empty, _text, _other_sqlite], ids=["empty", "text", "other-sqlite"])
def test_anything_else_is_not_a_vedtak_audit_log_and_is_left_as_it_was(folder, make):
    """An empty file, a text file or another program's SQLite database given to any reading command:
    it says "not a vedtak audit log" (no traceback, a non-zero exit) and the folder is byte for byte and
    time for time as it was (audit verify used to add the schema and report "ok: 0 records")."""
    path = folder / "thing.db"
    make(path)
    before = snapshot(folder)
    for args in (("audit", "verify", path), ("audit", "show", path), ("audit", "show", path, "A-1"),
                 ("audit", "export", path), ("replay", path), ("queue", "list", path), ("queue", "show", path, 1)):
        r = cli(*args)
        assert r.returncode in (1, 2), (args, r.stdout, r.stderr)
        assert "not a vedtak audit log" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert snapshot(folder) == before


@pytest.mark.parametrize("make", [_empty, _text, _other_sqlite], ids=["empty", "text", "other-sqlite"])
def test_the_library_refuses_anything_else_read_only_and_changes_nothing(folder, make):
    """open_store(path, read_only=True) on what is not a vedtak log raises StoreError saying so, and
    leaves the folder as it was."""
    path = folder / "thing.db"
    make(path)
    before = snapshot(folder)
    with pytest.raises(StoreError, match="not a vedtak audit log"):
        open_store(str(path), read_only=True)
    assert snapshot(folder) == before


def test_a_read_only_log_with_records_in_its_write_ahead_log_is_read_in_full(folder, study_plan):
    """A log whose last records are still in its write-ahead log (a writer died) and whose file is
    read-only: a reading command sees those records too (it reads the write-ahead log, not the main
    file alone)."""
    db, _ = make_log(folder, study_plan)
    code = ("import json, os, sys\nfrom vedtak.audit import AuditLog\nimport vedtak\n"
            "plan = vedtak.compile(vedtak.load(sys.argv[2]))\nlog = AuditLog.open(sys.argv[1])\n"
            "log.store._db.execute('PRAGMA wal_autocheckpoint = 0')\n"
            "for c in json.loads(sys.argv[3]):\n    log.decide(plan, c)\nos._exit(0)\n")
    more = [dict(c, case_id=f"wal-{i}") for i, c in enumerate(generate(3, seed=6))]
    r = subprocess.run([sys.executable, "-c", code, str(db), str(STUDY_GRANT), json.dumps(more)],
                       capture_output=True, text=True, timeout=HANG_GUARD)
    assert r.returncode == 0, r.stderr[-2000:]
    assert Path(f"{db}-wal").stat().st_size > 0
    db.chmod(0o444)
    verified = cli("audit", "verify", db)
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert "ok: 33 records" in verified.stdout


def _mount_namespaces() -> bool:
    """Whether this process may make a private mount namespace with a tmpfs remounted read-only."""
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs none $d && "
                               "mount -o remount,ro $d"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _mount_namespaces(), reason="needs unshare -m and mount (a private mount namespace)")
def test_reading_commands_work_on_a_read_only_file_system(tmp_path, study_plan):
    """The log on a read-only mount (a tmpfs remounted read-only in a private mount namespace): every
    reading command completes with exit 0 and its usual output."""
    db, case_id = make_log(tmp_path, study_plan)
    commands = reading(db, case_id)
    mount = tmp_path / "mnt"
    mount.mkdir()
    lines = [f"mount -t tmpfs none {mount}", f"cp {db} {mount}/audit.db", f"mount -o remount,ro {mount}"]
    for args, _ in commands:
        argv = " ".join(f"'{a}'" for a in (sys.executable, "-m", "vedtak.cli",
                                           *[str(mount / "audit.db") if a == db else str(a) for a in args]))
        lines.append(f"echo '=== {' '.join(map(str, args[:2]))}'; {argv}; echo \"rc=$?\"")
    r = subprocess.run(["unshare", "-m", "sh", "-c", "\n".join(lines)], capture_output=True, text=True,
                       timeout=HANG_GUARD)
    outputs = r.stdout.split("=== ")[1:]
    assert len(outputs) == len(commands), (r.stdout[-2000:], r.stderr[-2000:])
    for (args, shown), out in zip(commands, outputs):
        assert out.rstrip().endswith("rc=0") and shown in out, (args, out[-1000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
