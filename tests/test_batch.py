"""`vedtak run` end to end: inputs of every kind, exact accounting, workers, kill -9 and resume."""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from vedtak.audit import open_store
from vedtak.audit.verify import verify
from vedtak.cli.main import main

from conftest import STUDY_GRANT
from workload import generate

SG = str(STUDY_GRANT)


def run(*args, input=None):
    return CliRunner().invoke(main, ["run", SG, *[str(a) for a in args]], input=input, catch_exceptions=False)


def write_jsonl(path, cases):
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return path


def records(db):
    with open_store(str(db)) as store:
        return [(r.seq, r.kind, r.case_id, r.input, r.decision) for r in store.records()]


def test_garbage_lines_are_reported_recorded_and_counted(tmp_path):
    """Not JSON, not an object, bad bytes, an invalid case, a duplicate id: each rejected with its
    line, every line accounted for, the rest decided, exit code 1."""
    good = generate(6, seed=1)
    lines = [json.dumps(good[0]), "{not json", "[1, 2]", json.dumps(dict(good[1], age="old")), "",
             json.dumps(good[2]), json.dumps(good[2]), json.dumps(good[3])]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n" + (json.dumps(good[4]) + "\n").encode())
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    r = run(path, "--audit", tmp_path / "a.db", "--out", out, "--workers", 1, "--summary-json", summary)
    assert r.exit_code == 1
    s = json.loads(summary.read_text())
    assert (s["read"], s["decided"] + s["referred"], s["rejected"]) == (9, 4, 5)
    assert s["rejected_by_error"] == {"duplicate_case_id": 1, "malformed_input": 3, "wrong_type": 1}
    assert [(p["line"], p["code"]) for p in s["problems"]] == [
        (2, "malformed_input"), (3, "malformed_input"), (4, "wrong_type"), (7, "duplicate_case_id"),
        (9, "malformed_input")]
    assert f"{path}:2: malformed_input: not JSON: Expecting property name enclosed in double quotes at column 2" \
        in r.output
    assert f"{path}:9: malformed_input: not UTF-8 text (byte 1)" in r.output
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(decisions) == 9
    assert [d["status"] for d in decisions].count("rejected") == 5
    assert len(records(tmp_path / "a.db")) == 9
    with open_store(str(tmp_path / "a.db")) as store:
        assert verify(store).ok


def test_csv_is_typed_by_the_case_schema(tmp_path):
    cases = generate(40, seed=2)
    path = tmp_path / "cases.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(cases[0]))
        for c in cases:
            w.writerow([str(c[k]).lower() if isinstance(c[k], bool) else c[k] for k in cases[0]])
    r1 = run(path, "--audit", tmp_path / "c.db", "--out", tmp_path / "c.jsonl", "--workers", 1)
    r2 = run(write_jsonl(tmp_path / "j.jsonl", cases), "--audit", tmp_path / "j.db", "--out", tmp_path / "jo.jsonl",
             "--workers", 1)
    assert (r1.exit_code, r2.exit_code) == (0, 0)
    assert (tmp_path / "c.jsonl").read_text() == (tmp_path / "jo.jsonl").read_text()


def test_a_csv_row_of_the_wrong_arity_and_a_bad_cell(tmp_path):
    """A row of the wrong arity is malformed_input; a cell that does not parse is wrong_type of its field.
    (A header lacking columns refuses the whole run: see test_hostile_input.py.)"""
    case = generate(1, seed=5)[0]
    path = tmp_path / "bad.csv"
    cells = [str(v).lower() if isinstance(v, bool) else str(v) for v in {**case, "age": "old"}.values()]
    path.write_text(",".join(case) + "\n1,2,3\n" + ",".join(cells) + "\n")
    r = run(path, "--audit", tmp_path / "b.db", "--workers", 1, "--summary-json", tmp_path / "s.json")
    s = json.loads((tmp_path / "s.json").read_text())
    assert r.exit_code == 1 and s["read"] == 2 and s["rejected"] == 2
    assert f"{path}:2: malformed_input: 3 columns where the header has {len(case)}" in r.output
    assert f"{path}:3: wrong_type: age: expected a whole number, got a string\n" in r.output


def test_stdin_json_array_and_several_files_in_one_run(tmp_path):
    cases = generate(30, seed=3)
    first = write_jsonl(tmp_path / "a.jsonl", cases[:10])
    (tmp_path / "b.json").write_text(json.dumps(cases[10:20]))
    r = run(first, tmp_path / "b.json", "-", "--audit", tmp_path / "m.db", "--out", tmp_path / "m.jsonl",
            "--workers", 1, input=json.dumps(cases[20:]))
    assert r.exit_code == 0, r.output
    out = [json.loads(line)["case_id"] for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert out == [c["case_id"] for c in cases]


def test_one_and_two_workers_give_identical_outputs_and_audit_content(tmp_path):
    cases = generate(5000, seed=4)
    for c in cases[::97]:
        c["income"] = "lots"  # some rejections too
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    for n in (1, 2):
        r = run(path, "--audit", tmp_path / f"w{n}.db", "--out", tmp_path / f"w{n}.jsonl", "--workers", n,
                "--batch-size", 250)
        assert r.exit_code == 1
    assert (tmp_path / "w1.jsonl").read_text() == (tmp_path / "w2.jsonl").read_text()
    assert records(tmp_path / "w1.db") == records(tmp_path / "w2.db")


def test_usage_errors_exit_2(tmp_path):
    assert run("--audit", tmp_path / "x.db").exit_code == 2
    assert run(tmp_path / "missing.jsonl", "--audit", tmp_path / "x.db").exit_code == 2
    assert run("-", "-", "--audit", tmp_path / "x.db").exit_code == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_then_resume_records_each_case_once_and_completes_the_output(tmp_path, workers):
    cases = generate(60000 if workers == 1 else 200000, seed=5)  # two workers run faster: enough to be killed
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    db, out = tmp_path / "k.db", tmp_path / "out.jsonl"
    rng = random.Random(workers)
    cmd = [sys.executable, "-m", "vedtak.cli", "run", SG, str(path), "--audit", str(db), "--out", str(out),
           "--workers", str(workers), "--batch-size", "500"]
    interrupted = 0
    for attempt in range(6):
        proc = subprocess.Popen(cmd + (["--resume"] if attempt else []), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with open_store(str(db)) as store:
            report = verify(store)
            ids = [r.case_id for r in store.records()]
        assert report.ok, report.problems[:3]
        assert len(ids) == len(set(ids))
        released = [json.loads(line)["case_id"] for line in out.read_text().splitlines() if line.endswith("}")] \
            if out.exists() else []
        assert set(released) <= set(ids), "an output line without its audit record"
        interrupted += len(ids) < len(cases)
    assert interrupted >= 3
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with open_store(str(db)) as store:
        assert verify(store).ok
        ids = [r.case_id for r in store.records()]
    assert sorted(ids) == sorted(c["case_id"] for c in cases)
    assert [json.loads(line)["case_id"] for line in out.read_text().splitlines()] == [c["case_id"] for c in cases]
