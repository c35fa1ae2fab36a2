"""Issue 13, section 1: one line never stops a batch.

Every reproduction of the section is a test here, then the property: a valid case file with
arbitrary hostile lines mixed in always finishes, reads every line, decides every good case as
a clean run does, and stays within bounded memory.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.audit import AuditLog, open_store
from vedtak.audit.verify import verify
from vedtak.batch.runner import Batch
from vedtak.cli.main import main
from vedtak.batch.input_limits import Limits, help_text
from vedtak.batch.inputs import header_problems, parse_json, read
from vedtak.audit.replay import replay

from conftest import STUDY_GRANT

GOOD_LINES = (STUDY_GRANT / "cases.jsonl").read_text().splitlines()
GOOD = [json.loads(line) for line in GOOD_LINES]
SCHEMA = vedtak.load(STUDY_GRANT).latest.model.case
COLUMNS = list(GOOD[0])


def batch(tmp_path: Path, *inputs: Path, limits: Limits | None = None, resume: bool = False, db: str = "a.db"):
    """Run the library's Batch in-process: (summary, decision JSON lines, the log's path)."""
    out: list[str] = []
    log_path = tmp_path / db
    with AuditLog.open(str(log_path)) as log:
        summary = Batch(str(STUDY_GRANT), [str(p) for p in inputs], log, workers=1, resume=resume,
                        limits=limits).run(out.append)
    return summary, out, log_path


def verifies(log_path: Path) -> bool:
    with open_store(str(log_path)) as store:
        return verify(store).ok


def problems(summary) -> dict[int, tuple[str, str]]:
    return {line: (code, message) for _, line, code, message in summary.problems}


def case_line(n: int, **changes) -> str:
    """Good case ``n`` as a JSON line, with fields changed; a value given as ``Raw`` is written as is."""
    case = {**GOOD[n], **changes}
    raws = {k: v for k, v in case.items() if isinstance(v, Raw)}
    text = json.dumps({k: (f"@@{k}@@" if k in raws else v) for k, v in case.items()})
    for k, v in raws.items():
        text = text.replace(f'"@@{k}@@"', v.text)
    return text


class Raw:
    def __init__(self, text: str):
        self.text = text


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode("utf-8", "surrogatepass")) + b"\n"
                              for x in lines))
    return path


def cli(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# -- lone surrogates ---------------------------------------------------------------------------------

def test_a_lone_surrogate_in_a_value_or_a_key_rejects_only_its_line(tmp_path):
    """A lone surrogate (as a JSON escape) in a value or a key is malformed_input naming file, line
    and path; the batch goes on, the log verifies, and --resume runs again without a crash."""
    path = write_lines(tmp_path / "c.jsonl", [GOOD_LINES[0], case_line(1, note="\ud800"),
                                              case_line(2, **{"\udc00x": 1}), GOOD_LINES[3]])
    summary, out, db = batch(tmp_path, path)
    assert (summary.read, summary.n_rejected) == (4, 2)
    assert problems(summary) == {
        2: ("malformed_input", "a lone surrogate at note: a string must be Unicode text"),
        3: ("malformed_input", "a lone surrogate in the key \\udc00x: a key must be Unicode text")}
    assert verifies(db)
    again, _, _ = batch(tmp_path, path, resume=True)
    assert (again.read, again.resumed, again.n_rejected) == (4, 2, 2)  # lines that held no case: rejected again


def test_a_library_caller_with_a_lone_surrogate_gets_a_rejection_that_the_log_can_store(tmp_path, study_plan):
    """plan.decide(dict) with a lone surrogate in a value, a key or the case id is a rejection: no
    UnicodeEncodeError from its JSON, from the audit record's sha256, or from the store."""
    cases = [{**GOOD[0], "case_id": "\ud800"}, {**GOOD[1], "\udfff": "x"}, {**GOOD[2], "note": "a\udc80"}]
    with AuditLog.open(str(tmp_path / "lib.db")) as log:
        for case in cases:
            decision = study_plan.decide(case)
            assert decision.status == "rejected"
            decision.to_json().encode("utf-8")
            "\n".join(decision.reasons).encode("utf-8")
            assert log.decide(study_plan, case).status == "rejected"
    assert verifies(tmp_path / "lib.db")


@pytest.mark.parametrize("text", ['{"a": "\\ud800"}', "[" * 10_000 + "]" * 10_000,
                                  case_line(0, wealth=Raw("1e99999999999999999999")), b'\xef\xbb\xbf{"a": "\\udfff"}'])
def test_decide_json_of_unreadable_text_is_a_malformed_input_rejection(study_plan, text):
    """plan.decide_json with a lone surrogate, 10 000 levels or a number beyond any decimal: a
    rejection whose JSON can be written, never an exception."""
    d = study_plan.decide_json(text)
    assert d.status == "rejected" and d.errors[0].code in ("malformed_input", "out_of_range")
    d.to_json().encode("utf-8")


def test_a_string_field_holding_a_lone_surrogate_is_rejected_by_the_fast_and_the_careful_path():
    """A string field with a lone surrogate never passes validation, on either path; a pair does."""
    from vedtak.evaluation.cases import build_validator, validate_slow
    from vedtak.language.model import FieldSpec
    schema = {"name": FieldSpec(type="string")}
    for validate in (build_validator(schema), lambda raw: validate_slow(schema, raw)):
        case, errors = validate({"name": "Ola \ud83d"})
        assert case is None and [e.code for e in errors] == ["malformed_input"]
        assert validate({"name": "Ola \U0001F600"})[0] == {"name": "Ola \U0001F600"}


def test_decide_with_a_lone_surrogate_in_a_key_or_value_says_why_also_with_audit(tmp_path):
    """`vedtak decide` (with and without --audit) reports a lone surrogate as malformed_input, exit 1."""
    for name, text in [("v.json", case_line(0, note="\ud800")), ("k.json", case_line(0, **{"\ud800": 1}))]:
        (tmp_path / name).write_text(text)
        for extra in ([], ["--audit", tmp_path / "d.db"]):
            r = cli("decide", STUDY_GRANT, tmp_path / name, *extra)
            assert r.exit_code == 1 and "malformed_input: a lone surrogate" in r.output, r.output


# -- nesting ---------------------------------------------------------------------------------------

DEEP = '{"a":' * 10_000 + "1" + "}" * 10_000


def test_json_nested_10000_deep_is_malformed_input_in_json_lines_a_json_array_and_decide(tmp_path):
    """10 000 levels of nesting: a rejected line (JSON Lines), a rejected item of a JSON array (the
    others are decided), exit 1 from decide — never a RecursionError."""
    summary, _, _ = batch(tmp_path, write_lines(tmp_path / "c.jsonl", [GOOD_LINES[0], DEEP, GOOD_LINES[1]]))
    assert summary.read == 3 and problems(summary) == {2: ("malformed_input", "nested deeper than the limit depth=32")}
    (tmp_path / "a.json").write_text("[" + GOOD_LINES[0] + "," + DEEP + "]")
    summary, _, _ = batch(tmp_path, tmp_path / "a.json", db="b.db")
    assert summary.read == 2 and summary.rejected == {"malformed_input": 1} and sum(summary.decided.values()) == 1
    assert problems(summary) == {2: ("malformed_input", "item 2: nested deeper than the limit depth=32")}
    (tmp_path / "deep.json").write_text(DEEP)
    r = cli("decide", STUDY_GRANT, tmp_path / "deep.json")
    assert (r.exit_code, r.output.strip()) == (1, f"{tmp_path / 'deep.json'}: malformed_input: nested deeper than "
                                                  "the limit depth=32")


def test_the_depth_limit_counts_brackets_outside_strings_only():
    """Brackets inside a string do not count towards the depth; the case object itself is depth 1."""
    assert parse_json(json.dumps({"note": "[" * 100}))[1] is None
    assert parse_json('{"a": [[1]]}', Limits(depth=3)) == ({"a": [[1]]}, None)
    assert parse_json('{"a": [[1]]}', Limits(depth=2))[1] == "nested deeper than the limit depth=2"


# -- numbers -------------------------------------------------------------------------------------------

def test_an_integer_of_5000_digits_is_out_of_range_of_its_field_in_json_lines_and_a_json_array(tmp_path):
    """A 5 000-digit integer (beyond int()'s 4 300) rejects its field as out_of_range, abbreviated."""
    line = case_line(1, income=Raw("7" * 5000))
    summary, _, _ = batch(tmp_path, write_lines(tmp_path / "c.jsonl", [GOOD_LINES[0], line]))
    code, message = problems(summary)[2]
    assert (code, message[:8]) == ("out_of_range", "income: ") and len(message) < 200
    assert "7.77777...E+4999 (5,000 digits)" in message
    (tmp_path / "a.json").write_text("[" + GOOD_LINES[0] + "," + line + "]")
    summary, _, _ = batch(tmp_path, tmp_path / "a.json", db="b.db")
    assert summary.read == 2 and summary.rejected == {"out_of_range": 1} and problems(summary)[2][0] == "out_of_range"


def test_csv_integer_cells_that_int_refuses_are_rejected_per_row(tmp_path):
    """A CSV int cell "²" is wrong_type (the digits 0-9 only), one of 5 000 digits out_of_range; neither raises."""
    rows = [dict(GOOD[i]) for i in range(3)]
    rows[1]["study_load_pct"] = "²"
    rows[2]["months_enrolled"] = "9" * 5000
    summary, _, db = batch(tmp_path, write_csv(tmp_path / "c.csv", rows))
    assert summary.read == 3 and problems(summary)[4][0] == "out_of_range"
    assert problems(summary)[4][1].startswith("months_enrolled: 99999999999999999999...99999999 (5,000 characters)")
    assert problems(summary)[3] == ("wrong_type", "study_load_pct: expected a whole number written with the digits "
                                                  "0-9, got '²'")
    assert verifies(db)


@pytest.mark.parametrize("literal", ["1e999999999", "1e999999999999999", "-1e99999999999999999999999", "1e-999999999"])
def test_a_number_outside_the_decimal_range_is_out_of_range_and_never_rendered_in_full(tmp_path, literal):
    """wealth = 1e999999999 (or beyond any decimal, or tinier than the context) is out_of_range of
    wealth, its message short; the same from decide. Before: 4 GB, then sqlite3.DataError or MemoryError."""
    line = case_line(0, wealth=Raw(literal))
    summary, out, db = batch(tmp_path, write_lines(tmp_path / "c.jsonl", [line, GOOD_LINES[1]]))
    code, message = problems(summary)[1]
    assert code == "out_of_range" and message.startswith("wealth: ") and len(message) < 200
    assert max(map(len, out)) < 2000 and verifies(db)
    (tmp_path / "case.json").write_text(line)
    r = cli("decide", STUDY_GRANT, tmp_path / "case.json", "--audit", tmp_path / "d.db")
    assert r.exit_code == 1 and "wealth: " in r.output and "out of range" in r.output and len(r.output) < 2000


def test_a_38_digit_income_is_out_of_range_not_rounded(study_plan):
    """A 38-digit income is rejected as out_of_range (it was rounded in a reason text); 34 digits
    with trailing zeros beyond are held exactly."""
    d = study_plan.decide({**GOOD[0], "income": 12345678901234567890123456789012345678})
    assert d.status == "rejected" and [(e.path, e.code) for e in d.errors] == [("income", "out_of_range")]
    assert "1.23456...E+37 (38 digits)" in d.errors[0].message
    d = study_plan.decide({**GOOD[0], "income": Decimal("123.4567890123456789012345678901234567")})
    assert d.status == "rejected" and d.errors[0].code == "out_of_range"
    assert study_plan.decide({**GOOD[0], "income": Decimal("354240.000000000000000000000000000000000")}).status \
        == study_plan.decide(GOOD[0]).status != "rejected"


def test_a_huge_computed_number_is_written_in_exponent_form_in_a_reason():
    """A reason text writes a number beyond 40 digits in exponent form, never 10^999999 in full."""
    from vedtak.language.load import format_value
    assert format_value(Decimal("1E+999999")) == "1E+999999"
    assert format_value(10 ** 50) == "1.000000E+50 (rounded, 51 digits)"
    assert format_value(Decimal("12995.0000")) == "12995"


# -- formats people produce -----------------------------------------------------------------------

def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None, bom: bool = False) -> Path:
    text = io.StringIO()
    w = csv.writer(text)
    columns = columns or COLUMNS
    w.writerow(columns)
    for r in rows:
        w.writerow([str(r.get(c, "")).lower() if isinstance(r.get(c), bool) else r.get(c, "") for c in columns])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.getvalue().encode("utf-8"))
    return path


def test_a_utf8_byte_order_mark_is_accepted_in_csv_and_json_lines(tmp_path):
    """Excel's "CSV UTF-8" (a BOM first) and a JSON Lines file with a BOM decide like the plain files."""
    plain, _, _ = batch(tmp_path, write_csv(tmp_path / "p.csv", GOOD[:20]), db="p.db")
    bom, out_bom, _ = batch(tmp_path, write_csv(tmp_path / "b.csv", GOOD[:20], bom=True), db="b.db")
    assert bom.read == 20 and bom.n_rejected == plain.n_rejected == 0
    (tmp_path / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(GOOD_LINES[:20]).encode())
    jsonl, out_jsonl, _ = batch(tmp_path, tmp_path / "b.jsonl", db="j.db")
    assert jsonl.read == 20 and jsonl.n_rejected == 0 and out_jsonl == out_bom
    assert header_problems([str(tmp_path / "b.csv")], SCHEMA) == []


def test_one_byte_that_is_not_utf8_in_a_csv_rejects_that_row_only(tmp_path):
    """One non-UTF-8 byte in row 7 of 20: read 20, that row malformed_input, the other 19 decided."""
    path = write_csv(tmp_path / "c.csv", GOOD[:20])
    lines = path.read_bytes().split(b"\r\n")
    lines[7] = lines[7].replace(b",", b",\xe9", 1)
    path.write_bytes(b"\r\n".join(lines))
    summary, _, db = batch(tmp_path, path)
    assert summary.read == 20 and summary.rejected == {"malformed_input": 1}
    assert problems(summary)[8] == ("malformed_input", "not UTF-8 text (column 2, byte 1 of the cell); "
                                                       "only this row was not read")
    assert verifies(db)


def test_a_csv_header_that_does_not_fit_refuses_the_run_before_anything_is_recorded(tmp_path):
    """A missing required column or an unknown one (with a did-you-mean): exit 2, one message, and
    the audit log is not even created — with the local and the dask executor."""
    columns = ["incme" if c == "income" else c for c in COLUMNS]
    path = write_csv(tmp_path / "c.csv", [{("incme" if k == "income" else k): v for k, v in r.items()}
                                          for r in GOOD[:5]], columns)
    for extra in ([], ["--executor", "dask", "--workers", 1]):
        r = cli("run", STUDY_GRANT, path, "--audit", tmp_path / "a.db", *extra)
        assert r.exit_code == 2 and not (tmp_path / "a.db").exists()
        assert "a CSV header does not match this ruleset's cases; nothing was decided or recorded" in r.output
        assert f'{path}:1: the column "incme" is not a field of this ruleset\'s cases; did you mean "income"?' \
            in r.output
        assert f'{path}:1: no column "income", a field every case must give' in r.output


# -- limits --------------------------------------------------------------------------------------------

def test_each_limit_rejects_its_line_and_can_be_changed(tmp_path):
    """Line length, string length, list length and depth each reject only their line, naming the
    limit; --limit changes a limit (a bad one is a usage error), and --help documents them all."""
    lines = [case_line(0, case_id=100, note="x" * 300), case_line(1, case_id=101, kids=list(range(50))),
             case_line(2, case_id=102, x=[[[[[1]]]]]), "9" * 5000, GOOD_LINES[3]]
    limits = Limits(line_bytes=4000, string_chars=200, list_items=20, depth=4)
    summary, _, _ = batch(tmp_path, write_lines(tmp_path / "c.jsonl", lines), limits=limits)
    assert summary.read == 5
    assert {n: m for n, (_, m) in problems(summary).items() if _ == "malformed_input"} == {
        1: "a string of 300 characters at note, over the limit string_chars=200",
        2: "a list of 50 items at kids, over the limit list_items=20",
        3: "nested deeper than the limit depth=4",
        4: "the line is 5,000 bytes, over the limit line_bytes=4000"}
    r = cli("run", STUDY_GRANT, tmp_path / "c.jsonl", "--audit", tmp_path / "cli.db", "--workers", 1,
            "--limit", "string_chars=200", "--limit", "depth=4")
    assert r.exit_code == 1 and "c.jsonl:1: malformed_input: a string of 300 characters" in r.output
    bad = cli("run", STUDY_GRANT, tmp_path / "c.jsonl", "--audit", tmp_path / "x.db", "--limit", "lines=3")
    assert bad.exit_code == 2 and "did you mean" in bad.output and not (tmp_path / "x.db").exists()
    for command in ("run", "decide"):
        assert "line_bytes (default 1048576)" in " ".join(cli(command, "--help").output.split())
    assert "depth (default 32)" in help_text()


def test_a_line_far_over_the_limit_is_skipped_without_holding_it(tmp_path):
    """A 20 MB line with --limit line_bytes=1000 is rejected while memory stays far below its size."""
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        f.write(GOOD_LINES[0].encode() + b"\n" + b'{"a": "' + b"x" * 20_000_000 + b'"}\n' + GOOD_LINES[1].encode())
    tracemalloc.start()
    try:
        items = list(read(str(path), SCHEMA, limits=Limits(line_bytes=1000)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [i.error for i in items] == [None, "the line is 20,000,009 bytes, over the limit line_bytes=1000", None]
    assert peak < 2_000_000


# -- the command line and the dask executor -------------------------------------------------------------

HOSTILE_FILE_LINES = [GOOD_LINES[0], case_line(1, note="\ud800"), DEEP, case_line(2, income=Raw("7" * 5000)),
                      case_line(3, wealth=Raw("1e999999999")), case_line(4, wealth=Raw("1e999999999999999")),
                      b"\xff\xfe not utf-8", "[" * 50_000, case_line(6, note="y" * 200), GOOD_LINES[5]]


def test_vedtak_run_with_hostile_lines_finishes_without_a_traceback_and_resume_works(tmp_path):
    """`vedtak run` over hostile lines: every line accounted for, exit 1, no traceback; --resume
    releases every recorded decision and finishes."""
    path = write_lines(tmp_path / "h.jsonl", HOSTILE_FILE_LINES)
    args = [sys.executable, "-m", "vedtak.cli", "run", str(STUDY_GRANT), str(path), "--audit", str(tmp_path / "a.db"),
            "--workers", "2", "--batch-size", "3", "--summary-json", str(tmp_path / "s.json")]
    for again in (False, True):
        p = subprocess.run(args + (["--resume"] if again else []), capture_output=True, text=True, timeout=300)
        assert p.returncode == 1 and "Traceback" not in p.stderr + p.stdout, p.stderr
        s = json.loads((tmp_path / "s.json").read_text())
        assert s["read"] == len(HOSTILE_FILE_LINES) and s["decided"] + s["referred"] == 2
        assert (s["resumed_from_log"] >= 2) if again else s["resumed_from_log"] == 0
    assert verifies(tmp_path / "a.db")
    # the log keeps a number no Decimal holds as its text; a replay reads that and rejects alike
    replay = subprocess.run([sys.executable, "-m", "vedtak.cli", "replay", str(tmp_path / "a.db"), "--json"],
                            capture_output=True, text=True, timeout=300)
    report = json.loads(replay.stdout)
    assert (replay.returncode, report["differences"]) == (0, 0), replay.stdout


def test_a_dask_partition_decides_its_hostile_lines_as_a_local_run_does(tmp_path):
    """With --executor dask, partitions holding hostile lines finish at the first attempt and write
    what a local run writes; the workers read within the --limit given."""
    path = write_lines(tmp_path / "h.jsonl", HOSTILE_FILE_LINES * 3)
    base = [sys.executable, "-m", "vedtak.cli", "run", str(STUDY_GRANT), str(path), "--limit", "string_chars=100"]
    local = subprocess.run(base + ["--audit", str(tmp_path / "l.db"), "--out", str(tmp_path / "l.jsonl"),
                                   "--workers", "1"], capture_output=True, text=True, timeout=300)
    dist = subprocess.run(base + ["--audit", str(tmp_path / "d.db"), "--out", str(tmp_path / "parts"),
                                  "--executor", "dask", "--workers", "1", "--partition-size", "40KB"],
                          capture_output=True, text=True, timeout=600)
    assert (local.returncode, dist.returncode) == (1, 1), dist.stderr
    parts = sorted((tmp_path / "parts").glob("part-*.jsonl"))
    assert len(parts) > 1 and "Traceback" not in dist.stderr
    local_out = (tmp_path / "l.jsonl").read_text().splitlines()
    dist_out = "".join(p.read_text() for p in parts).splitlines()
    # duplicates across partitions are found after the fact; compare each line's outcome
    assert len(dist_out) == len(local_out) == 3 * len(HOSTILE_FILE_LINES)
    assert [json.loads(x)["errors"][0]["code"] for x in dist_out[:len(HOSTILE_FILE_LINES)]
            if json.loads(x)["status"] == "rejected"] == \
        [json.loads(x)["errors"][0]["code"] for x in local_out[:len(HOSTILE_FILE_LINES)]
         if json.loads(x)["status"] == "rejected"]
    noted = json.loads(dist_out[HOSTILE_FILE_LINES.index(case_line(6, note="y" * 200))])
    assert noted["errors"][0]["message"] == "a string of 200 characters at note, over the limit string_chars=100"
    assert verifies(tmp_path / "d.db")


# -- the property ------------------------------------------------------------------------------------

_ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=40)  # surrogates and controls too
_NUMBERS = st.sampled_from(["1e999999999", "-1e-999999999", "1e999999999999999", "1e99999999999999999999",
                            "9" * 4400, "0." + "0" * 40 + "1", "12345678901234567890123456789012345678",
                            "NaN", "-Infinity", "1E+34", "-0", "1e-7"])
_VALUES = st.one_of(_ANY_TEXT, st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(),
                    st.lists(st.integers(), max_size=5), st.dictionaries(_ANY_TEXT, st.integers(), max_size=3),
                    _NUMBERS.map(Raw))


@st.composite
def hostile_lines(draw) -> bytes:
    kind = draw(st.integers(0, 6))
    if kind == 0:  # any text, as UTF-8 where it can be (lone surrogates become bytes that are not UTF-8)
        return draw(_ANY_TEXT).encode("utf-8", "surrogatepass")
    if kind == 1:  # any bytes
        return draw(st.binary(max_size=60))
    if kind == 2:  # deep nesting, as arrays or objects, closed or not
        n = draw(st.integers(1, 3000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opener * n + "1" + closer * draw(st.sampled_from([n, 0, n // 2]))).encode()
    if kind == 3:  # a good case with one field (or a new key) given something hostile
        key = draw(st.one_of(st.sampled_from(COLUMNS), _ANY_TEXT).filter(lambda k: k != "case_id"))
        # a fresh case id: a hostile line must not take a good case's id (that is a duplicate)
        return case_line(draw(st.integers(0, 9)), **{"case_id": 10_000 + draw(st.integers(0, 10 ** 6)),
                                                     key: draw(_VALUES)}).encode("utf-8", "surrogatepass")
    if kind == 4:  # a byte-order mark before a line
        return b"\xef\xbb\xbf" + draw(st.sampled_from([b"{}", b"[]", GOOD_LINES[25].encode(), b""]))
    if kind == 5:  # JSON of a wrong shape
        return json.dumps(draw(st.one_of(_VALUES.filter(lambda v: not isinstance(v, Raw)),
                                          st.lists(st.dictionaries(_ANY_TEXT, st.integers()))))).encode()
    return json.dumps({"case_id": "h-" + draw(_ANY_TEXT), draw(_ANY_TEXT): draw(_ANY_TEXT)}).encode()  # escapes


def _clean_decisions() -> list[str]:
    plan = vedtak.compile(STUDY_GRANT)
    return [plan.decide(json.loads(line)).to_json() for line in GOOD_LINES]


CLEAN = _clean_decisions()


def _blank(line: bytes, first: bool) -> bool:
    if first:
        line = line.removeprefix(b"\xef\xbb\xbf")
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile=st.lists(hostile_lines(), min_size=1, max_size=12), positions=st.lists(st.integers(0, 20), max_size=12),
       first_hostile=st.booleans())
def test_hostile_lines_mixed_into_a_valid_file_never_stop_the_batch(hostile, positions, first_hostile):
    """Any hostile lines mixed into 20 good cases: the batch finishes; read = the file's non-blank
    lines; each good case gets the decision a clean run gives it; the log verifies and a replay
    of it finds no difference; the run's peak memory stays under 64 MB."""
    lines: list[tuple[bytes, int | None]] = [(GOOD_LINES[i].encode(), i) for i in range(20)]
    for i, h in enumerate(hostile):
        at = 0 if first_hostile and i == 0 else positions[i] if i < len(positions) else len(lines)
        lines.insert(min(at, len(lines)), (h.replace(b"\n", b" "), None))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.jsonl"
        path.write_bytes(b"\n".join(b for b, _ in lines) + b"\n")
        tracemalloc.start()
        try:
            summary, out, db = batch(Path(tmp), path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        kept = [good for n, (b, good) in enumerate(lines) if not _blank(b, n == 0)]
        assert summary.read == len(kept) == len(out)
        assert summary.read == summary.n_decided + summary.n_referred + summary.n_rejected
        for text, good in zip(out, kept):
            if good is not None:
                assert text == CLEAN[good]
        assert verifies(db)
        with open_store(str(db)) as store:
            assert replay(store).differences == []
        assert peak < 64 * 2 ** 20


def test_decide_reads_no_more_than_the_line_limit_of_a_case(tmp_path):
    """`vedtak decide` given a case over line_bytes (from a file or standard input) says so, exit 1."""
    big = json.dumps({**GOOD[0], "note": "x" * 5000})
    (tmp_path / "big.json").write_text(big)
    for args, stdin in ([tmp_path / "big.json"], None), (["-"], big):
        r = CliRunner().invoke(main, ["decide", str(STUDY_GRANT), *map(str, args), "--limit", "line_bytes=1000"],
                               input=stdin, catch_exceptions=False)
        assert r.exit_code == 1
        assert "malformed_input: the case is more than 1,000 bytes, over the limit line_bytes=1000" in r.output


def test_a_library_callers_case_nested_past_the_json_encoder_is_still_recorded(tmp_path, study_plan):
    """A dict nested 5 000 deep given to plan.decide and log.decide is a rejection the log records
    (the cut part noted) and verifies — no RecursionError."""
    deep: object = 1
    for _ in range(5000):
        deep = {"a": [deep]}
    case = {**GOOD[0], "x": deep}
    assert study_plan.decide(case).status == "rejected"
    with AuditLog.open(str(tmp_path / "deep.db")) as log:
        assert log.decide(study_plan, case).status == "rejected"
    assert verifies(tmp_path / "deep.db")


def _csv_counts(line: bytes) -> bool:
    """Whether a CSV line is read as a row (a non-blank row, or one that cannot be read)."""
    text = line.decode("utf-8", "surrogateescape")
    if any("\udc80" <= c <= "\udcff" for c in text):
        return True
    try:
        row = next(csv.reader([text]), [])
    except csv.Error:
        return True
    return any(c.strip() for c in row)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile=st.lists(st.one_of(st.binary(max_size=40), _ANY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
                                  st.lists(_ANY_TEXT, min_size=len(COLUMNS), max_size=len(COLUMNS)).map(
                                      lambda cells: ",".join(["h" + cells[0], *cells[1:]])  # never a good id
                                      .encode("utf-8", "surrogatepass"))),
                        min_size=1, max_size=8),
       positions=st.lists(st.integers(0, 12), max_size=8), bom=st.booleans())
def test_hostile_rows_mixed_into_a_valid_csv_reject_only_themselves(hostile, positions, bom):
    """Any rows (bytes that are not UTF-8, lone surrogates, control characters, wrong cells) mixed
    into a valid CSV, with or without a BOM: read = the rows; every good row is decided as a clean
    run decides it. (Quotes and line breaks are left out: an open quote rightly joins lines.)"""
    good = GOOD[:12]
    rows: list[tuple[bytes, int | None]] = []
    for i, case in enumerate(good):
        cells = [str(v).lower() if isinstance(v, bool) else str(v) for v in case.values()]
        rows.append((",".join(cells).encode(), i))
    for i, h in enumerate(hostile):
        h = bytes(b for b in h if b not in b'"\r\n')
        rows.insert(min(positions[i] if i < len(positions) else len(rows), len(rows)), (h, None))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.csv"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ",".join(COLUMNS).encode() + b"\n"
                         + b"\n".join(r for r, _ in rows) + b"\n")
        summary, out, db = batch(Path(tmp), path)
        kept = [g for r, g in rows if g is not None or _csv_counts(r)]
        assert summary.read == len(kept) == len(out)
        for text, g in zip(out, kept):
            if g is not None:
                assert text == CLEAN[g]
        assert verifies(db)


# -- review round: a JSON array item by item, unclosed CSV quotes, the maximum depth, messages --------------

def _outcomes(out: list[str]) -> dict:
    return {json.loads(x)["case_id"]: (json.loads(x)["status"], json.loads(x)["outcome"]) for x in out}


@pytest.mark.parametrize("bad", [case_line(10, x=Raw("[" * 40 + "]" * 40)), case_line(10, note="\ud800"),
                                 case_line(10, note=Raw('"caf\udce9"')), '{"case_id": 10, "case_id": 11}',
                                 '{"case_id": 10, "x": ' + "[" * 5000 + "]" * 5000 + "}", "17", '"text"'])
def test_one_bad_item_of_a_json_array_rejects_that_item_only(tmp_path, bad):
    """20 cases in a JSON array, item 11 hostile (40 deep, a lone surrogate, a byte that is not
    UTF-8, a key twice, 5 000 deep, not an object): read 20, item 11 malformed_input naming the item,
    the other 19 decided exactly as the same cases in JSON Lines."""
    items = GOOD_LINES[:10] + [bad] + GOOD_LINES[11:20]
    path = tmp_path / "a.json"
    path.write_bytes(("[\n" + ",\n".join(items) + "\n]\n").encode("utf-8", "surrogateescape"))
    summary, out, db = batch(tmp_path, path)
    assert summary.read == 20 and summary.rejected == {"malformed_input": 1}
    assert list(problems(summary)) == [11] and problems(summary)[11][1].startswith("item 11")
    clean, clean_out, _ = batch(tmp_path, write_lines(tmp_path / "c.jsonl", GOOD_LINES[:10] + GOOD_LINES[11:20]),
                                db="c.db")
    assert {k: v for k, v in _outcomes(out).items() if v[0] != "rejected"} == _outcomes(clean_out)
    assert verifies(db)


@pytest.mark.parametrize("tail, why", [
    (',\n{"case_id": 9, "age": ', "item 5: not JSON: Expecting value at line 6 column 23"),
    ('\n{"case_id": 9}]', "item 5: not JSON: expected ',' or ']' after item 4, got '{', at line 6 column 1"),
    (',\n{"case_id": "9]', "item 5: not JSON: Unterminated string starting at line 6 column 13")])
def test_a_syntax_error_in_a_json_array_rejects_the_items_from_there_on(tmp_path, tail, why):
    """A JSON array cut short, missing a comma or with a string never closed: the 4 items before it
    are decided, one malformed_input at item 5 names the line and column and says the items from
    there on were not read; nothing is lost silently."""
    line = 5
    (tmp_path / "a.json").write_text("[\n" + ",\n".join(GOOD_LINES[:4]) + tail)
    summary, _, _ = batch(tmp_path, tmp_path / "a.json")
    assert summary.read == 5 and summary.rejected == {"malformed_input": 1}
    assert problems(summary)[line][1].startswith(why), problems(summary)
    assert problems(summary)[line][1].endswith(f"the items from {line} on were not read")


def _csv_with_stray_quote(tmp_path: Path, row: int, rows: int = 20) -> Path:
    path = write_csv(tmp_path / "c.csv", GOOD[:rows])
    lines = path.read_bytes().split(b"\r\n")
    lines[row + 1] = lines[row + 1].replace(b",", b',"', 1)  # a quote opening the row's second cell
    path.write_bytes(b"\r\n".join(lines))
    return path


def test_a_csv_quoted_field_never_closed_rejects_its_record_and_the_rest_is_read(tmp_path):
    """`unterm2.csv`: a stray quote opening row 3's second cell (line 4) used to swallow the 17 rows
    after it. Now: read 20, line 4 malformed_input "a quoted field opened here is never closed", the
    other 19 decided as in a clean run; a multi-line quoted cell that closes still reads as one record."""
    summary, out, db = batch(tmp_path, _csv_with_stray_quote(tmp_path, 2))
    assert summary.read == 20 and problems(summary) == {4: ("malformed_input", "a quoted field opened here is "
                                                                               "never closed")}
    clean, clean_out, _ = batch(tmp_path, write_lines(tmp_path / "c.jsonl", GOOD_LINES[:2] + GOOD_LINES[3:20]),
                                db="c.db")
    assert {k: v for k, v in _outcomes(out).items() if v[0] != "rejected"} == _outcomes(clean_out)
    assert verifies(db)
    path = tmp_path / "m.csv"  # a quoted cell over two lines that closes: one record, rejected at its end
    path.write_text(",".join(COLUMNS) + "\n" + '"99","2\n2",true,true,60,1,1,1,false,1,false,2025-01-01\n'
                    + "\n".join(",".join(str(v).lower() for v in GOOD[i].values()) for i in range(3)) + "\n")
    summary, _, _ = batch(tmp_path, path, db="m.db")
    assert summary.read == 4 and problems(summary) == {3: ("wrong_type", "age: expected a whole number, got a string")}


def test_a_quote_open_at_the_end_or_past_the_line_limit_rejects_its_line_only(tmp_path):
    """The last row opening a quote is rejected alone; a quote open for more than line_bytes
    characters is rejected where it opens, naming the limit, and the lines after it are read."""
    summary, _, _ = batch(tmp_path, _csv_with_stray_quote(tmp_path, 19))
    assert summary.read == 20 and problems(summary) == {21: ("malformed_input", "a quoted field opened here is "
                                                                                "never closed")}
    summary, _, _ = batch(tmp_path, _csv_with_stray_quote(tmp_path, 2), limits=Limits(line_bytes=500), db="b.db")
    assert summary.read == 20 and problems(summary) == {
        4: ("malformed_input", "a quoted field opened here is not closed within line_bytes=500 characters")}


@pytest.mark.parametrize("size", [60, 300, 1000, 100_000])
def test_a_partitioned_read_of_an_unclosed_quote_agrees_with_a_local_read(tmp_path, size):
    """The dask partitioner cuts a CSV file only where quotes balance; each partition read on its own
    gives the same items, lines and problems as reading the file whole."""
    from vedtak.batch.inputs import partitions, read_partition
    for row in (2, 19):
        path = _csv_with_stray_quote(tmp_path, row)
        whole = [(i.line, i.raw, i.error) for i in read(str(path), SCHEMA)]
        parts = partitions([str(path)], None, size)
        assert [(i.line, i.raw, i.error) for p in parts for i in read_partition(p, SCHEMA)] == whole
        assert len(whole) == 20


def test_the_maximum_depth_is_carried_by_workers_the_log_and_replay(tmp_path):
    """`--limit depth=500 --workers 2` was a RecursionError while pickling. The maximum is now 200:
    cases nested 200 deep (lists and objects) run with 2 workers, are recorded, verify and replay
    with no difference; a depth over the maximum is a usage error naming it."""
    deep_list = case_line(0, case_id=900, x=Raw("[" * 199 + "1" + "]" * 199))
    deep_obj = case_line(1, case_id=901, x=Raw('{"k": ' * 199 + "1" + "}" * 199))
    too_deep = case_line(2, case_id=902, x=Raw("[" * 200 + "]" * 200))
    path = write_lines(tmp_path / "d.jsonl", [deep_list, deep_obj, too_deep, GOOD_LINES[3]])
    r = subprocess.run([sys.executable, "-m", "vedtak.cli", "run", str(STUDY_GRANT), str(path), "--limit", "depth=200",
                        "--workers", "2", "--audit", str(tmp_path / "a.db"), "--out", str(tmp_path / "o.jsonl")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    out = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [(d["case_id"], d["status"], d["errors"][0]["code"] if d.get("errors") else None) for d in out] == [
        (900, "rejected", "unknown_field"), (901, "rejected", "unknown_field"), (None, "rejected", "malformed_input"),
        (GOOD[3]["case_id"], out[3]["status"], None)]
    assert verifies(tmp_path / "a.db")
    with open_store(str(tmp_path / "a.db")) as store:
        assert replay(store).differences == []
    r = cli("run", STUDY_GRANT, path, "--audit", tmp_path / "b.db", "--limit", "depth=500")
    assert r.exit_code == 2 and "the limit depth can be at most 200" in r.output and not (tmp_path / "b.db").exists()


@pytest.mark.parametrize("raw, csv_cell, message", [
    ("NaN", "NaN", "NaN is not a number the engine accepts"),
    ("-Infinity", "-inf", "infinity is not a number the engine accepts"),
    ("Infinity", "Infinity", "infinity is not a number the engine accepts")])
def test_nan_and_infinity_say_what_they_are_in_json_lines_and_csv(tmp_path, raw, csv_cell, message):
    """NaN or an infinity in a money or an int field said "expected a number, got a number"; now the
    message names it, alike from JSON Lines, from CSV, and in a replay of the log."""
    summary, _, db = batch(tmp_path, write_lines(tmp_path / "c.jsonl", [case_line(0, income=Raw(raw)),
                                                                          case_line(1, months_enrolled=Raw(raw))]))
    assert problems(summary) == {1: ("wrong_type", f"income: {message}"),
                                 2: ("wrong_type", f"months_enrolled: {message}")}
    rows = [dict(GOOD[0], income=csv_cell), dict(GOOD[1], months_enrolled=csv_cell)]
    summary, _, db2 = batch(tmp_path, write_csv(tmp_path / "c.csv", rows), db="b.db")
    assert problems(summary) == {2: ("wrong_type", f"income: {message}"), 3: ("wrong_type", f"months_enrolled: {message}")}
    for log in (db, db2):
        with open_store(str(log)) as store:
            assert replay(store).differences == []


def test_a_json_syntax_message_says_at_once_and_a_limit_too_large_gives_the_maximum():
    """"Invalid control character at at column 9" lost its doubled "at"; a limit of 23 digits says
    it is too large and gives the maximum instead of "must be at least 1"."""
    assert parse_json('{"a": "\x01"}')[1] == "not JSON: Invalid control character at column 8"
    assert parse_json('{"a": 1,}')[1] == "not JSON: Expecting property name enclosed in double quotes at column 9"
    with pytest.raises(ValueError, match=r"the limit line_bytes is too large: it can be at most 999,999,999,999, "
                                         r"not 99999999999999999999999"):
        Limits.parse(["line_bytes=99999999999999999999999"])
    with pytest.raises(ValueError, match="at least 1"):
        Limits.parse(["depth=0"])
    r = cli("decide", STUDY_GRANT, "-", "--limit", "string_chars=99999999999999999999999")
    assert r.exit_code == 2 and "too large" in r.output


@pytest.mark.parametrize("digits", ["٢١٥٠٠٠", "２１５０００", "२१५०००"])
def test_digits_other_than_0_to_9_are_wrong_type_in_json_strings_and_csv_cells(tmp_path, digits):
    """Money given as Arabic-Indic, full-width or Devanagari digits was decided on (Decimal reads
    them) while int fields refused them; now both are wrong_type, from a JSON string and a CSV cell,
    quoting the value except for a pii field (age), and a replay finds no difference."""
    line = case_line(0, income=digits, age=digits)
    summary, _, db = batch(tmp_path, write_lines(tmp_path / "c.jsonl", [line]))
    assert summary.rejected == {"wrong_type": 1} and summary.problems[0][3] == \
        "age: expected a whole number written with the digits 0-9 (and 1 more)"
    rows = [dict(GOOD[0], income=digits), dict(GOOD[1], age=digits)]
    summary, out, db2 = batch(tmp_path, write_csv(tmp_path / "c.csv", rows), db="b.db")
    assert problems(summary) == {2: ("wrong_type", f"income: expected a number written with the digits 0-9, "
                                                   f"got '{digits}'"),
                                 3: ("wrong_type", "age: expected a whole number written with the digits 0-9")}
    for log in (db, db2):
        with open_store(str(log)) as store:
            assert replay(store).differences == []


@pytest.mark.parametrize("text, key", [('{"case_id": 1, "case_id": 2}', "case_id"),
                                       (GOOD_LINES[0][:-1] + ', "income": 1}', "income"),
                                       (GOOD_LINES[0][:-1] + ', "x": {"a": 1, "b": {"c": 1, "c": 2}}}', "c")])
def test_a_key_given_twice_is_malformed_input(tmp_path, study_plan, text, key):
    """{"case_id":1,"case_id":2} became case 2 silently. A key given twice in any object is
    malformed_input naming the key — in JSON Lines, a JSON array item and decide — while colons in
    values (times, notes) and keys repeated across objects are no reason to reject."""
    why = f"the key {key} appears twice in one object: a case gives each field once"
    summary, _, _ = batch(tmp_path, write_lines(tmp_path / "c.jsonl", [text, GOOD_LINES[1]]))
    assert problems(summary) == {1: ("malformed_input", why)}
    (tmp_path / "a.json").write_text(f"[{GOOD_LINES[1]}, {text}]")
    summary, _, _ = batch(tmp_path, tmp_path / "a.json", db="b.db")
    assert problems(summary) == {2: ("malformed_input", f"item 2: {why}")}
    (tmp_path / "one.json").write_text(text)
    r = cli("decide", STUDY_GRANT, tmp_path / "one.json")
    assert r.exit_code == 1 and why in r.output
    fine = GOOD_LINES[0][:-1] + ', "x": [{"a": "10:30:00"}, {"a": ":::"}]}'
    assert parse_json(fine)[1] is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=st.integers(0, 11), cell=st.integers(0, len(COLUMNS) - 1), size=st.integers(40, 2000),
       bom=st.booleans(), crlf=st.booleans())
def test_a_stray_quote_anywhere_rejects_its_row_only_read_whole_or_in_partitions(row, cell, size, bom, crlf):
    """Property: a valid 12-row CSV in which one cell of one row starts with a quote that never
    closes: read = 12, that row is malformed_input at its own line, every other row is decided as a
    clean run decides it, and reading the file in partitions of any size gives the same items."""
    from vedtak.batch.inputs import partitions, read_partition
    end = b"\r\n" if crlf else b"\n"
    lines = [",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in case.values()).encode()
             for case in GOOD[:12]]
    cells = lines[row].split(b",")
    cells[cell] = b'"' + cells[cell]
    lines[row] = b",".join(cells)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.csv"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ",".join(COLUMNS).encode() + end + end.join(lines) + end)
        summary, out, db = batch(Path(tmp), path)
        assert summary.read == 12 and problems(summary) == {
            row + 2: ("malformed_input", "a quoted field opened here is never closed")}
        assert [x for i, x in enumerate(out) if i != row] == [CLEAN[i] for i in range(12) if i != row]
        whole = [(i.line, i.raw, i.error) for i in read(str(path), SCHEMA)]
        assert [(i.line, i.raw, i.error) for p in partitions([str(path)], None, size)
                for i in read_partition(p, SCHEMA)] == whole


def test_a_dask_run_of_a_csv_with_a_stray_quote_decides_as_a_local_run(tmp_path):
    """`unterm2.csv` run with --executor dask and a small --partition-size: exit 1, no traceback,
    the same 20 decisions as the local run (line 4 rejected, 19 decided)."""
    path = _csv_with_stray_quote(tmp_path, 2)
    base = [sys.executable, "-m", "vedtak.cli", "run", str(STUDY_GRANT), str(path)]
    local = subprocess.run(base + ["--audit", str(tmp_path / "l.db"), "--out", str(tmp_path / "l.jsonl"),
                                   "--workers", "1"], capture_output=True, text=True, timeout=300)
    dist = subprocess.run(base + ["--audit", str(tmp_path / "d.db"), "--out", str(tmp_path / "parts"),
                                  "--executor", "dask", "--workers", "1", "--partition-size", "300B"],
                          capture_output=True, text=True, timeout=600)
    assert (local.returncode, dist.returncode) == (1, 1) and "Traceback" not in dist.stderr, dist.stderr
    dist_out = "".join(p.read_text() for p in sorted((tmp_path / "parts").glob("part-*.jsonl"))).splitlines()
    assert sorted(dist_out) == sorted((tmp_path / "l.jsonl").read_text().splitlines()) and len(dist_out) == 20
    assert "c.csv:4: malformed_input: a quoted field opened here is never closed" in dist.stdout + dist.stderr
    assert verifies(tmp_path / "d.db")
