"""`vedtak run --executor dask`: partitions, partition chains and manifests, worker failures, resume.

The cluster tests start a local Dask cluster of 2 worker processes and write to the real
PostgreSQL server of `.ci/run` (a SQLite file where the store does not matter).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vedtak.audit import open_store
from vedtak.audit.log import PiiPolicy
from vedtak.audit.record import GENESIS, AuditRecordV1, sha256, utc_now
from vedtak.audit.store import case_key
from vedtak.audit.verify import verify
from vedtak.batch.runner import decide_chunk
from vedtak.evaluation.compile import compile as compile_plan
from vedtak.evaluation.decision import canonical_json
from vedtak.batch.distributed import DistributedRun, IncompleteRun, chain_name
from vedtak.batch.inputs import partitions, read, read_partition
from vedtak.language.load import load

from audit_support import fresh_url, raw
from block_support import block_at, frame, write_block
from conftest import STUDY_GRANT
from dist_support import InProcessRun, fail_at_once, fail_partition_1, stop_after_first_block
from workload import generate

SG = str(STUDY_GRANT)
SCHEMA = load(STUDY_GRANT).latest.model.case


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vedtak.cli", "run", SG, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def write_jsonl(path, cases, extra_lines=()):
    lines = [json.dumps(c) for c in cases]
    for i, line in extra_lines:
        lines.insert(i, line)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def content(url: str) -> list[tuple]:
    """Per case, in input order: what the log holds (kind, case id, input, decision, ruleset)."""
    with open_store(url) as store:
        return [(r.kind, r.case_id, r.input, r.decision, r.ruleset_sha256) for r in store.records()
                if r.kind != "manifest"]


def items(parts):
    return [(i.source, i.line, i.raw, i.error) for p in parts for i in read_partition(p, SCHEMA)]


# -- partitions ------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["", "{not json", "[1]", "  "]),
                          st.integers(0, 299)), min_size=0, max_size=60),
       st.integers(1, 4000))
def test_partitions_of_a_jsonl_file_read_exactly_what_the_whole_file_holds(tmp_path_factory, lines, target):
    cases = [json.loads(x) for x in (STUDY_GRANT / "cases.jsonl").read_text().splitlines()]
    path = tmp_path_factory.mktemp("p") / "cases.jsonl"
    path.write_text("".join((json.dumps(cases[x]) if isinstance(x, int) else x) + "\n" for x in lines))
    parts = partitions([str(path)], None, target)
    assert items(parts) == [(i.source, i.line, i.raw, i.error) for i in read(str(path), SCHEMA)]
    assert [p.index for p in parts] == list(range(len(parts)))
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))


@pytest.mark.parametrize("target", [1, 64, 1000, 10**9])
def test_csv_partitions_never_cut_a_quoted_record(tmp_path, target):
    cases = generate(120, seed=8)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(list(cases[0]))
    for n, c in enumerate(cases):
        row = [str(c[k]).lower() if isinstance(c[k], bool) else c[k] for k in cases[0]]
        if n % 9 == 0:
            row[0] = f'{row[0]}\n"quoted"\nacross lines'  # an id with line breaks: rejected, but one record
        w.writerow(row)
    buf.write("too,few\n")
    path = tmp_path / "cases.csv"
    path.write_text(buf.getvalue())
    parts = partitions([str(path)], None, target)
    assert items(parts) == [(i.source, i.line, i.raw, i.error) for i in read(str(path), SCHEMA)]
    assert len(parts) > 1 or target == 10**9


# -- on a local cluster of 2 worker processes ----------------------------------------------------------

def test_a_two_worker_cluster_decides_and_records_as_one_local_worker_does(tmp_path):
    url = fresh_url("postgresql", tmp_path)
    cases = generate(3000, seed=9)
    for c in cases[::101]:
        c["income"] = "lots"  # invalid: rejected
    path = write_jsonl(tmp_path / "cases.jsonl", cases, [(10, "{not json"), (2000, "[1, 2]")])
    local = cli(path, "--audit", tmp_path / "local.db", "--out", tmp_path / "local.jsonl", "--workers", 1,
                "--summary-json", tmp_path / "local.json")
    dist = cli(path, "--audit", url, "--executor", "dask", "--workers", 2, "--partition-size", "64KB",
               "--out", tmp_path / "parts", "--summary-json", tmp_path / "dist.json", "--batch-size", 300)
    assert (local.returncode, dist.returncode) == (1, 1), dist.stderr
    parts = sorted((tmp_path / "parts").glob("part-*.jsonl"))
    assert len(parts) > 4
    assert "".join(p.read_text() for p in parts) == (tmp_path / "local.jsonl").read_text()
    assert content(url) == content(str(tmp_path / "local.db"))
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("local.json", "dist.json"))
    ignore = ("seconds", "cases_per_second")
    assert {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}
    assert a["read"] == len(cases) + 2 == a["decided"] + a["referred"] + a["rejected"]
    with open_store(url) as store:
        report = verify(store)
        assert report.ok and report.chains == len(parts) and report.runs == 1
        (manifest,) = [r for r in store.records() if r.kind == "manifest"]
        assert [c["records"] for c in json.loads(manifest.decision)["chains"]] == \
            [len(p.read_text().splitlines()) for p in parts]
    # replay and the queue see the partition chains as they see the main chain
    replay = subprocess.run([sys.executable, "-m", "vedtak.cli", "replay", url, "--json"], capture_output=True,
                            text=True)
    report = json.loads(replay.stdout)
    assert (replay.returncode, report["replayed"], report["differences"]) == (0, len(cases), 0)
    assert report["skipped_batch_rejections"] == 2  # the two lines that held no case
    listed = subprocess.run([sys.executable, "-m", "vedtak.cli", "queue", "list", url, "--json"],
                            capture_output=True, text=True)
    referred = [json.loads(line) for line in (tmp_path / "local.jsonl").read_text().splitlines()
                if json.loads(line)["status"] != "decided"]
    items = json.loads(listed.stdout)
    assert len(items) == len(referred) and all(i["record_chain"] for i in items)
    item = next(i for i in items if i["queue"] == "general")
    decided = subprocess.run([sys.executable, "-m", "vedtak.cli", "queue", "decide", url, str(item["id"]),
                              "--outcome", "deny", "--by", "kari", "--reason", "Checked by hand"],
                             capture_output=True, text=True)
    assert decided.returncode == 0, decided.stdout + decided.stderr
    with open_store(url) as store:
        assert verify(store).ok
        (human,) = [r for r in store.records(item["case_id"]) if r.kind == "human"]
        assert json.loads(human.decision)["closes"] == {"work_item": item["id"], "record": item["record_seq"],
                                                        "chain": item["record_chain"]}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_same_command_runs_on_a_started_scheduler_and_workers(tmp_path):
    """`dask scheduler` and two `dask worker` processes, as an agency would start them; vedtak
    connects with --scheduler and the log verifies with every case once."""
    url = fresh_url("postgresql", tmp_path)
    cases = generate(2000, seed=15)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            started.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                             "--nthreads", "1", "--no-dashboard"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        r = cli(path, "--audit", url, "--executor", "dask", "--scheduler", address, "--partition-size", "64KB",
                "--out", tmp_path / "parts", "--summary-json", tmp_path / "s.json")
        assert r.returncode == 0, r.stderr
    finally:
        for p in started:
            p.terminate()
        for p in started:
            p.wait(timeout=30)
    assert json.loads((tmp_path / "s.json").read_text())["read"] == len(cases)
    with open_store(url) as store:
        report = verify(store)
        assert report.ok and report.chains > 1 and report.runs == 1
        assert sorted(r.case_id for r in store.records() if r.kind != "manifest") == \
            sorted(c["case_id"] for c in cases)


def _workers_of(pid: int) -> list[psutil.Process]:
    """The Dask worker processes a `vedtak run` process started (spawned by its local cluster)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_killing_a_worker_mid_run_still_records_every_case_once(tmp_path):
    url = fresh_url("postgresql", tmp_path)
    cases = generate(40000, seed=10)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    proc = subprocess.Popen([sys.executable, "-m", "vedtak.cli", "run", SG, str(path), "--audit", url,
                             "--executor", "dask", "--workers", "2", "--partition-size", "1MB", "--batch-size", "500",
                             "--out", str(tmp_path / "parts")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        recorded = raw(url, "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM audit_blocks "
                            "WHERE chain <> ''")[0][0] if _has_chains(url) else 0
        workers = _workers_of(proc.pid)
        if recorded >= 3000 and workers:
            killed = workers[0].pid
            os.kill(killed, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "the run ended before a worker could be killed"
    assert proc.returncode == 0, err
    with open_store(url) as store:
        assert verify(store).ok
        ids = [r.case_id for r in store.records() if r.kind != "manifest"]
    assert sorted(ids) == sorted(c["case_id"] for c in cases)  # every case, once
    released = [json.loads(line)["case_id"] for p in sorted((tmp_path / "parts").glob("part-*.jsonl"))
                for line in p.read_text().splitlines()]
    assert released == [c["case_id"] for c in cases]


def _has_chains(url: str) -> bool:
    return bool(raw(url, "SELECT 1 FROM information_schema.tables WHERE table_name = 'audit_blocks'"))


def test_a_failing_partition_is_named_and_resume_completes_only_it(tmp_path):
    db = str(tmp_path / "audit.db")
    cases = generate(2000, seed=11)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    run = DistributedRun(SG, [str(path)], db, out_dir=str(tmp_path / "parts"), workers=2, partition_bytes=50_000,
                         retries=1, task=fail_partition_1)
    with pytest.raises(IncompleteRun) as failed:
        run.run()
    assert [(p.index, "injected failure" in why) for p, why in failed.value.missing] == [(1, True)]
    assert failed.value.summary.read == len(cases) - len(items([failed.value.missing[0][0]]))
    with open_store(db) as store:
        report = verify(store)  # nothing commits to the run's chains yet: a failure, named as unfinished
        assert report.unfinished == [run.info.run_id]
        assert [(p.kind, p.subject) for p in report.problems] == [("unfinished", f"run {run.info.run_id}")]
    again = DistributedRun(SG, [str(path)], db, out_dir=str(tmp_path / "parts"), workers=2, partition_bytes=50_000,
                           resume=True)
    summary = again.run()
    assert again.info.run_id == run.info.run_id and again.info.resumed_run
    assert again.info.partitions_done_before == again.info.partitions - 1
    assert summary.read == len(cases) and summary.resumed == 0
    with open_store(db) as store:
        report = verify(store)
        assert report.ok and not report.unfinished
        assert sorted(r.case_id for r in store.records() if r.kind != "manifest") == \
            sorted(c["case_id"] for c in cases)


def test_a_killed_run_resumes_from_its_partition_chains(tmp_path):
    """kill -9 the whole run (driver and workers) mid-way; verify finds nothing wrong but the run
    being unfinished (no manifest commits to its chains yet), and --resume completes it with every
    case recorded once."""
    url = fresh_url("postgresql", tmp_path)
    cases = generate(30000, seed=14)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    args = [sys.executable, "-m", "vedtak.cli", "run", SG, str(path), "--audit", url, "--executor", "dask",
            "--workers", "2", "--partition-size", "512KB", "--out", str(tmp_path / "parts")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if _has_chains(url) and raw(url, "SELECT COUNT(*) FROM audit_chains WHERE done IS NOT NULL")[0][0] >= 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    with open_store(url) as store:
        report = verify(store)
        assert len(report.unfinished) == 1 and {p.kind for p in report.problems} == {"unfinished"}
        before = sum(1 for r in store.records())
    assert 0 < before < len(cases)
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "(resumed:" in done.stderr
    with open_store(url) as store:
        report = verify(store)
        assert report.ok and not report.unfinished and report.runs == 1
        ids = [r.case_id for r in store.records() if r.kind != "manifest"]
    assert sorted(ids) == sorted(c["case_id"] for c in cases)
    released = [json.loads(line)["case_id"] for p in sorted((tmp_path / "parts").glob("part-*.jsonl"))
                for line in p.read_text().splitlines()]
    assert released == [c["case_id"] for c in cases]


def test_verify_catches_a_tampered_partition_chain_and_a_deleted_partition(tmp_path):
    """A partition chain's blocks: an edited record is named (chain and seq); a tail block cut with
    the head moved back to match is found by the manifest; a deleted partition is named as missing."""
    url = fresh_url("postgresql", tmp_path)
    path = write_jsonl(tmp_path / "cases.jsonl", generate(1500, seed=12))
    assert cli(path, "--audit", url, "--executor", "dask", "--workers", 2, "--partition-size", "64KB",
               "--batch-size", 100).returncode == 0
    with open_store(url) as store:
        chains = [c.chain for c in store.chains()]
    assert len(chains) >= 3
    # an edited decision in the second partition's chain
    block = block_at(url, 7, chains[1])
    stored = frame(block["records"], block["codec"])
    record = block["records"][7 - block["first"]]
    block["records"][7 - block["first"]] = record.replace(b'"age": ', b'"age": 1', 1)
    write_block(url, block, chains[1])
    with open_store(url) as store:
        problems = verify(store).problems
    assert [(p.chain, p.seq, p.kind) for p in problems] == [(chains[1], 7, "edited")]
    raw(url, "UPDATE audit_blocks SET records = ? WHERE chain = ? AND first_seq = ?",
        (stored, chains[1], block["first"]))
    with open_store(url) as store:
        assert verify(store).ok
    # the first partition's tail block cut, with its head moved back to match: only the manifest knows
    (first, last, _), (_, kept, prev) = raw(url, "SELECT first_seq, last_seq, hash FROM audit_blocks WHERE chain = ? "
                                                 "ORDER BY first_seq DESC LIMIT 2", (chains[0],))
    saved = raw(url, "SELECT * FROM audit_blocks WHERE chain = ? AND first_seq = ?", (chains[0], first))[0]
    index = raw(url, "SELECT * FROM audit_case_index WHERE chain = ? AND seq >= ?", (chains[0], first))
    raw(url, "DELETE FROM audit_blocks WHERE chain = ? AND first_seq = ?", (chains[0], first))
    raw(url, "DELETE FROM audit_case_index WHERE chain = ? AND seq >= ?", (chains[0], first))
    raw(url, "UPDATE audit_chains SET seq = ?, hash = ? WHERE chain = ?", (kept, prev, chains[0]))
    with open_store(url) as store:
        problems = verify(store).problems
    assert [(p.seq, p.kind) for p in problems] == [(1, "partition")] and chains[0] in problems[0].message
    raw(url, "INSERT INTO audit_blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", saved)
    for row in index:
        raw(url, "INSERT INTO audit_case_index VALUES (?, ?, ?, ?)", row)
    raw(url, "UPDATE audit_chains SET seq = ?, hash = ? WHERE chain = ?", (last, saved[-1], chains[0]))
    with open_store(url) as store:
        assert verify(store).ok
    # the third partition deleted: its blocks, index rows and head
    for table in ("audit_blocks", "audit_case_index", "audit_chains"):
        raw(url, f"DELETE FROM {table} WHERE chain = ?", (chains[2],))
    verified = subprocess.run([sys.executable, "-m", "vedtak.cli", "audit", "verify", url], capture_output=True,
                              text=True)
    assert verified.returncode == 1
    assert f"partition chain {chains[2]}" in verified.stdout and "is missing from the log" in verified.stdout
    with open_store(url) as store:
        assert [(p.seq, p.kind) for p in verify(store).problems] == [(1, "partition")]


def test_a_case_id_in_two_partitions_is_reported(tmp_path):
    cases = generate(600, seed=13)
    cases[-1]["case_id"] = cases[0]["case_id"]
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    r = cli(path, "--audit", tmp_path / "a.db", "--executor", "dask", "--workers", 2, "--partition-size", "16KB",
            "--summary-json", tmp_path / "s.json")
    assert r.returncode == 1
    assert f"duplicate_case_id: case id {json.dumps(cases[0]['case_id'])} was decided in 2 partitions" in r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["read"] == 600 and s["duplicate_ids_across_partitions"] == [
        {"case_id": json.dumps(cases[0]["case_id"]), "count": 2}]


def test_usage_errors(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", generate(3, seed=1))
    assert cli("-", "--audit", tmp_path / "a.db", "--executor", "dask").returncode == 2
    r = cli(path, "--audit", tmp_path / "a.db", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1")
    assert r.returncode == 2 and "postgresql://" in r.stderr
    assert cli(path, "--audit", tmp_path / "a.db", "--scheduler", "tcp://127.0.0.1:1").returncode == 2
    assert cli(path, "--audit", tmp_path / "a.db", "--executor", "dask", "--partition-size", "lots").returncode == 2


# -- resuming a partition from what its chain holds (in this process, no cluster) ---------------------

def _released(folder) -> list[str]:
    return [line for p in sorted(folder.glob("part-*.jsonl")) for line in p.read_text().splitlines()]


def test_a_partition_stopped_after_its_first_block_resumes_from_it(tmp_path):
    """Every partition records its first chunk (one block) and fails; --resume releases those cases
    as recorded (a repeat of one of them later in the partition is still a duplicate_case_id), decides
    only the rest, and output, log and summary are those of a run that never stopped."""
    cases = generate(700, seed=21)
    cases[150]["case_id"] = cases[5]["case_id"]  # a repeat of a case the first attempt recorded
    path = write_jsonl(tmp_path / "cases.jsonl", cases, [(40, "{not json")])
    options = dict(workers=1, chunk_size=100, partition_bytes=60_000)
    whole = InProcessRun(SG, [str(path)], str(tmp_path / "whole.db"), out_dir=str(tmp_path / "whole"), **options)
    expected = whole.run()
    db = str(tmp_path / "audit.db")
    with pytest.raises(IncompleteRun) as failed:
        InProcessRun(SG, [str(path)], db, out_dir=str(tmp_path / "parts"), task=stop_after_first_block,
                     **options).run()
    with open_store(str(tmp_path / "whole.db")) as store:
        sizes = [c.seq for c in store.chains()]
    assert len(failed.value.missing) == sum(1 for n in sizes if n > 100) >= 3
    with open_store(db) as store:
        assert [c.seq for c in store.chains()] == [min(n, 100) for n in sizes]
    again = InProcessRun(SG, [str(path)], db, out_dir=str(tmp_path / "parts"), resume=True, **options)
    summary = again.run()
    assert again.info.resumed_run and summary.resumed == sum(100 for n in sizes if n > 100)
    assert _released(tmp_path / "parts") == _released(tmp_path / "whole")
    repeat = [json.loads(line) for line in _released(tmp_path / "parts")][151]
    assert [e["code"] for e in repeat["errors"]] == ["duplicate_case_id"]
    assert content(db) == content(str(tmp_path / "whole.db"))
    ignore = ("seconds", "cases_per_second", "resumed_from_log")
    assert {k: v for k, v in summary.to_dict().items() if k not in ignore} == \
        {k: v for k, v in expected.to_dict().items() if k not in ignore}
    with open_store(db) as store:
        assert verify(store).ok


def test_a_partition_with_version_1_rows_resumes_after_them(tmp_path):
    """A partition chain whose first cases an earlier release recorded as version 1 rows: --resume
    releases them as recorded, appends the rest as blocks after them, and the log verifies."""
    plan = compile_plan(load(STUDY_GRANT))
    cases = generate(300, seed=22)
    cases.sort(key=lambda c: plan.decide(c).status != "decided")  # the first ones open no work item
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db = str(tmp_path / "audit.db")
    options = dict(workers=1, chunk_size=50, partition_bytes=30_000)
    first = InProcessRun(SG, [str(path)], db, out_dir=str(tmp_path / "parts"), task=fail_at_once, **options)
    with pytest.raises(IncompleteRun):
        first.run()
    chain = chain_name(first.info.run_id, 0)
    part = partitions([str(path)], None, 30_000)[0]
    items = list(read_partition(part, SCHEMA))[:30]
    prev = GENESIS
    for seq, (item, (entry, _)) in enumerate(zip(items, decide_chunk(items, plan, PiiPolicy("keep", None))), 1):
        assert entry.kind == "decision"
        entry = dataclasses.replace(entry, input=canonical_json(item.raw))
        now = utc_now()
        body = AuditRecordV1.make_body(entry, seq, now, prev, chain)
        raw(db, "INSERT INTO audit_chain_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chain, seq, now, entry.kind, case_key(entry.case_id), entry.input_sha256, entry.ruleset_sha256,
             body, prev, sha256(body)))
        prev = sha256(body)
    raw(db, "UPDATE audit_chains SET seq = ?, hash = ? WHERE chain = ?", (len(items), prev, chain))
    summary = InProcessRun(SG, [str(path)], db, out_dir=str(tmp_path / "parts"), resume=True, **options).run()
    assert summary.resumed == len(items) and summary.read == len(cases)
    assert [json.loads(line)["case_id"] for line in _released(tmp_path / "parts")] == [c["case_id"] for c in cases]
    with open_store(db) as store:
        report = verify(store)
        assert report.ok, [str(p) for p in report.problems]
        records = [r for r in store.records() if r.chain == chain]
        assert [type(r).__name__ for r in records] == \
            ["AuditRecordV1"] * len(items) + ["AuditRecordV2"] * (len(records) - len(items))
        assert len(records) > len(items) and records[len(items)].prev_hash == prev


def test_partition_blocks_take_the_runs_compression_and_keep_released(tmp_path):
    """codec="zstd" and keep_released=True reach every partition's blocks: each is compressed, each
    record keeps its full released JSON, which is byte for byte the decision written out, and the
    log verifies."""
    path = write_jsonl(tmp_path / "cases.jsonl", generate(400, seed=23))
    db = str(tmp_path / "audit.db")
    InProcessRun(SG, [str(path)], db, out_dir=str(tmp_path / "parts"), workers=1, chunk_size=100,
                 partition_bytes=40_000, codec="zstd", keep_released=True).run()
    headers = [json.loads(h) for (h,) in raw(db, "SELECT header FROM audit_blocks WHERE chain <> ''")]
    assert len(headers) >= 4 and {h["codec"] for h in headers} == {"zstd"}
    with open_store(db) as store:
        assert verify(store).ok
        records = [r for r in store.records() if r.chain is not None]
    assert all("z" in r.meta for r in records)
    assert [r.decision for r in records] == _released(tmp_path / "parts")
