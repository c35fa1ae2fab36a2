"""Personal data stays out of the log: under --pii drop or pseudonymise, no byte of a pii field's
value reaches any table of the audit store, whatever the case holds (issue 13, section 5).

Each test searches the store's raw bytes (the SQLite file and its -wal, or every PostgreSQL
table copied out) for the values, in every encoding a leak could take.
"""

from __future__ import annotations

import json
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.audit import AuditLog, open_store
from vedtak.audit.verify import verify
from vedtak.cli.main import main
from vedtak.language.load import format_value
from vedtak.audit.queue import list_items
from vedtak.audit.replay import replay

from audit_support import TABLES, fresh_url

KEY = b"test-secret-key-of-128-bits"  # a --pii-key-file holds at least 16 bytes
MODES = ["drop", "pseudonymise"]

# A small ruleset with a pii field of every type: date, string, string with one_of, int with
# min/max, money, and a list whose items hold pii fields. Its reason texts quote personal data,
# directly and through derived values; one rule fails on a pii value (year 0 is out of range).
RULESET = """\
ruleset: pii-test
title: Personal data in every type
version: "1"
valid: {from: 2020-01-01}
decision_date: application_date
case_id: case_id
automate: [grant]
review_queue: review
case:
  case_id: {type: string}
  application_date: {type: date}
  birth_date: {type: date, pii: true}
  name: {type: string, pii: true}
  municipality: {type: string, one_of: [oslo, bergen], pii: true}
  age_years: {type: int, min: 0, max: 130, pii: true}
  income: {type: money, min: 0, pii: true}
  resident: {type: bool}
  lookup: {type: bool, optional: true}
  children: {type: list, items: {child_name: {type: string, pii: true}, child_birth: {type: date, pii: true}}}
parameters:
  LIMIT: {unit: NOK, values: {2020-01-01: 500000}}
  RATE: {unit: NOK, values: {2020-01-01: 100}}
derive:
  age: years_between(birth_date, application_date)
  n_children: count(c for c in children if years_between(c.child_birth, application_date) < 18)
  excess: max(0, income - LIMIT)
rules:
  - id: by-year
    basis: "test § 1"
    when: known(lookup) and lookup and date(age_years, 1, 1) < application_date
    decide: grant
    because: "Looked up by year of birth."
  - id: too-young
    basis: "test § 2"
    when: age < 18
    decide: deny
    because: "Born {birth_date}, the applicant {name} is {age}."
  - id: high-earner
    basis: "test § 3a"
    when: resident and income > LIMIT
    decide: reduce
    values: {declared: income, over: excess, doubled: "income * 2", rate: RATE}
    because: "Declared {declared}, {over} over {LIMIT} (by {excess}); twice {doubled}; rate {rate}."
  - id: rich
    basis: "test § 3"
    when: income > LIMIT
    refer: general
    because: "Income {income} exceeds {LIMIT} by {excess}; {municipality}, age {age_years}."
  - id: grant
    basis: "test § 4"
    when: resident
    decide: grant
    values: {amount: "RATE * (2 if municipality == 'oslo' else 1) * (1 + n_children)"}
    because: "Granted {amount} NOK for {n_children} children."
otherwise: {refer: general, because: "No rule settles this case for {name}."}
"""


@pytest.fixture(scope="module")
def ruleset_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pii") / "pii.yaml"
    path.write_text(RULESET, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def plan(ruleset_path):
    return vedtak.compile(vedtak.load(ruleset_path))


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("key") / "pii.key"
    path.write_bytes(KEY)
    return path


# -- searching a store for values --------------------------------------------------------------

def encodings(value) -> set[bytes]:
    """Every byte form a value could take in a store: UTF-8 and UTF-16 text, JSON-escaped
    (ASCII \\uXXXX and raw), Python repr, str(Decimal) and its plain form, ISO dates, and hex."""
    if isinstance(value, str):
        texts = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1]}
    elif isinstance(value, Decimal):
        texts = {str(value), format(value, "f"), format_value(value), json.dumps(str(value))}
    elif isinstance(value, date):
        texts = {value.isoformat(), value.strftime("%d.%m.%Y")}
    else:
        texts = {str(value)}
    out = set()
    for text in texts:
        raw = text.encode("utf-8")
        out |= {raw, text.encode("utf-16-le"), text.encode("utf-16-be"), raw.hex().encode()}
    return out


def sqlite_bytes(db: Path) -> bytes:
    """The SQLite file and, if any, its write-ahead log (the log must be closed first)."""
    data = db.read_bytes()
    for suffix in ("-wal", "-journal"):
        extra = Path(str(db) + suffix)
        if extra.exists():
            data += extra.read_bytes()
    return data


def postgres_bytes(url: str) -> bytes:
    """Every table of the store: each column value as stored, then the table copied out as text
    (COPY escapes backslashes, so the raw values are searched too)."""
    import psycopg
    out = []
    with psycopg.connect(url, autocommit=True) as db:
        for table in TABLES:
            if db.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                continue
            for row in db.execute(f"SELECT * FROM {table}"):
                out += [v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogatepass") for v in row]
            with db.cursor().copy(f"COPY {table} TO STDOUT") as copy:
                out += [bytes(chunk) for chunk in copy]
    return b"\n".join(out)


def pii_args(mode: str, key_file: Path) -> list[str]:
    """The command-line options of a pii mode (the key file only with pseudonymise)."""
    return ["--pii", mode, *(["--pii-key-file", str(key_file)] if mode == "pseudonymise" else [])]


def leaks(data: bytes, markers) -> list:
    """The markers found in ``data`` (in any of their encodings)."""
    return [m for m in markers if any(form in data for form in encodings(m))]


# -- the reproductions ---------------------------------------------------------------------------

def valid_case(**changes) -> dict:
    case = {"case_id": "c1", "application_date": "2025-03-01", "birth_date": "1980-05-17", "name": "Ada",
            "municipality": "oslo", "age_years": 44, "income": 1000, "resident": True, "children": []}
    case.update(changes)
    return case


MARKER = "Zq7Nordmann"
NUMBER = 987654321
MONEY = Decimal("876543219.37")

# (name, case, the values that must not reach the log)
REPRODUCTIONS = [
    ("bad date", valid_case(birth_date=f"17.05.1990 {MARKER}"), [MARKER]),
    ("one_of", valid_case(municipality=MARKER), [MARKER]),
    ("below min", valid_case(income=-MONEY), [MONEY]),
    ("above max", valid_case(age_years=NUMBER), [NUMBER]),
    ("wrong type", valid_case(age_years=Decimal("98765.4321")), [Decimal("98765.4321")]),
    ("money as string", valid_case(income=f"{NUMBER} kr"), [f"{NUMBER} kr", NUMBER]),
    ("because quotes pii", valid_case(birth_date="2012-11-23", name=MARKER), [MARKER, "2012-11-23"]),
    ("top-level array", [MARKER, {"name": MARKER, "income": NUMBER}], [MARKER, NUMBER]),
    ("pii list given as string", valid_case(children=f"{MARKER} born 2019-04-04"), [MARKER, "2019-04-04"]),
    ("list item not an object", valid_case(children=[MARKER]), [MARKER]),
    ("nested pii item invalid", valid_case(children=[{"child_name": 7, "child_birth": MARKER}]), [MARKER]),
    ("unknown field like a pii field", valid_case(birth_dat="1961-02-03", nmae=MARKER), [MARKER, "1961-02-03"]),
    ("unknown item field", valid_case(children=[{"child_name": "x", "child_birth": "2020-01-02",
                                                 "child_nmae": MARKER}]), [MARKER]),
    ("derived value in because", valid_case(income=MONEY, resident=False), [MONEY, MONEY - 500000]),
    ("rule values read pii", valid_case(income=MONEY), [MONEY, MONEY - 500000, MONEY * 2]),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,case,markers", REPRODUCTIONS, ids=[r[0] for r in REPRODUCTIONS])
def test_reproduction_leaves_no_personal_value_in_the_sqlite_file(name, case, markers, mode, plan, tmp_path):
    """Each invalid (or valid) case of the issue is recorded (with its work item, if any) and the
    SQLite file holds none of its personal values; the log still verifies."""
    db = tmp_path / "audit.db"
    with AuditLog.open(str(db), pii=mode, pii_key=KEY) as log:
        decision = log.decide(plan, case)
    assert leaks(sqlite_bytes(db), markers) == []
    with open_store(str(db)) as store:
        (record,) = list(store.records())
        assert json.loads(record.pii)["mode"] == mode
        assert verify(store).problems == []
        if decision.status != "decided":
            assert len(list_items(store)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_decide_cli_stores_no_top_level_array_verbatim(mode, ruleset_path, key_file, tmp_path):
    """`vedtak decide --pii drop|pseudonymise` of a case that is a JSON array records a rejection
    whose stored input is null (drop) or a keyed pseudonym, never the array."""
    db, case = tmp_path / "audit.db", tmp_path / "case.json"
    case.write_text(json.dumps([MARKER, {"birth_date": "1970-06-06"}]), encoding="utf-8")
    result = CliRunner().invoke(main, ["decide", str(ruleset_path), str(case), "--audit", str(db),
                                       *pii_args(mode, key_file)])
    assert result.exit_code == 1, result.output
    assert leaks(sqlite_bytes(db), [MARKER, "1970-06-06"]) == []
    with open_store(str(db)) as store:
        (record,) = list(store.records())
    assert json.loads(record.pii) == {"fields": ["(case)"], "mode": mode}
    assert (record.input == "null") if mode == "drop" else json.loads(record.input).startswith("hmac-sha256:")


@pytest.mark.parametrize("mode", MODES)
def test_pii_list_given_as_a_string_is_withheld_whole(mode, plan):
    """A list field whose items hold pii, given as a string, is dropped or pseudonymised whole."""
    from vedtak.audit.log import make_entry
    from vedtak.audit.pii import PiiPolicy
    case = valid_case(children=f"{MARKER} 2019-04-04")
    entry = make_entry(plan.decide(case), case, PiiPolicy(mode, KEY))
    stored = json.loads(entry.input)["children"]
    assert stored is None if mode == "drop" else stored.startswith("hmac-sha256:")
    assert "children" in json.loads(entry.pii)["fields"]


def test_masked_reasons_keep_what_is_not_personal_and_replay_says_why(plan, tmp_path):
    """A reason text keeps its literal words and non-personal values, and shows [personal data]
    where a placeholder reads a pii field or a value derived from one; the work item's reason is
    the masked text; replay names the record as one it cannot reproduce."""
    db = tmp_path / "audit.db"
    case = valid_case(income=MONEY, age_years=44, resident=False)
    with AuditLog.open(str(db), pii="drop") as log:
        released = log.decide(plan, case)
    assert released.reasons == [f"Income {MONEY} exceeds 500000 by {MONEY - 500000}; oslo, age 44."]
    with open_store(str(db)) as store:
        (record,) = list(store.records())
        stored = json.loads(record.decision)
        assert stored["reasons"] == ["Income [personal data] exceeds 500000 by [personal data]; "
                                     "[personal data], age [personal data]."]
        assert [i.reason_text for i in list_items(store)] == stored["reasons"]
        note = json.loads(record.pii)
        assert note["masked"] == ["reasons"] and "released" not in note
        report = replay(store)
    assert [u[0] for u in report.unreproducible] == [1]
    assert "personal data was dropped in the log" in report.unreproducible[0][2]


def test_pseudonymised_log_commits_to_the_released_decision_with_a_keyed_hash(plan, tmp_path):
    """Under pseudonymise, a record whose stored decision is masked holds an HMAC (with the
    pseudonym key) of the decision JSON as it was released: whoever holds the key can check a
    released decision letter against the log, nobody else can test guesses against it."""
    import hashlib
    import hmac
    db = tmp_path / "audit.db"
    with AuditLog.open(str(db), pii="pseudonymise", pii_key=KEY) as log:
        released = log.decide(plan, valid_case(birth_date="2012-11-23", name=MARKER))
    with open_store(str(db)) as store:
        (record,) = list(store.records())
    note = json.loads(record.pii)
    expected = hmac.new(KEY, released.to_json().encode("utf-8"), hashlib.sha256).hexdigest()
    assert note["released"] == "hmac-sha256:" + expected
    assert json.loads(record.decision)["reasons"][0] == ("Born [personal data], the applicant [personal data] is "
                                                         "[personal data].")


def test_evaluation_error_in_a_rule_reading_pii_keeps_no_details(plan, tmp_path):
    """A rule that fails on a personal value (year 0 is out of range) is referred; the log keeps
    that it failed, not the message naming the value."""
    db = tmp_path / "audit.db"
    with AuditLog.open(str(db), pii="drop") as log:
        released = log.decide(plan, valid_case(age_years=0, lookup=True))
    detail = released.reasons[0].split(": ", 1)[1]  # the message names the value: "year 0" or "date(0, 1, 1)"
    assert released.referral_reason == "evaluation-error" and ("year 0" in detail or "date(0," in detail)
    with open_store(str(db)) as store:
        (record,) = list(store.records())
        (item,) = list_items(store)
    assert detail not in record.decision and detail not in item.reason_text
    assert json.loads(record.decision)["reasons"] == [
        "Rule by-year could not be evaluated on this case; the details are not kept in the log, as they may "
        "repeat personal data."]


def test_validation_messages_never_quote_a_pii_value(plan):
    """Whatever the policy, a rejection's message about a pii field does not repeat its value,
    while a non-pii field's message still does."""
    d = plan.decide(valid_case(birth_date=MARKER, municipality=MARKER, age_years=NUMBER, income=f"{NUMBER}",
                               application_date="1.1.2025x"))
    text = json.dumps([e.to_dict() for e in d.errors])
    assert MARKER not in text and str(NUMBER) not in text
    assert "1.1.2025x" in text


def test_keep_mode_stores_the_case_as_given(plan, tmp_path):
    """--pii keep (the default) is unchanged: the input as given, the reasons as released."""
    db = tmp_path / "audit.db"
    case = valid_case(birth_date="2012-11-23", name=MARKER)
    with AuditLog.open(str(db)) as log:
        released = log.decide(plan, case)
    with open_store(str(db)) as store:
        (record,) = list(store.records())
    assert record.pii is None and json.loads(record.input) == case
    assert json.loads(record.decision) == json.loads(released.to_json())


# -- the property: generated cases, valid and invalid ---------------------------------------------

_LETTERS = "abcdefghijkmnopqrstuvwxyzæøåÆØÅé\"\\'<&"


@st.composite
def markers(draw) -> str:
    """A string no store would hold unless it leaked: a prefix, random letters (some non-ASCII,
    some that JSON escapes) and a serial number."""
    return "Mk" + draw(st.text(_LETTERS, min_size=6, max_size=10)) + str(draw(st.integers(10**6, 10**7)))


birth_dates = st.dates(date(1930, 1, 1), date(2015, 12, 31))  # never a date the ruleset or a record holds
# at least five different digits: a round number such as 100000000 (where shrinking goes) can stand
# in a store's bytes by chance (a digest, a zero-filled hash), and would be a false leak
big_ints = st.integers(10**8, 10**9).filter(lambda n: len(set(str(n))) >= 5)
big_money = st.builds(lambda n, c: Decimal(n) + Decimal(c) / 100, big_ints, st.integers(1, 99))


@st.composite
def field(draw, kind: str, found: list):
    """A value for one pii field: valid or not, of its type or not; unique values go to ``found``."""
    def note(value):
        found.append(value)
        return value
    choices = {
        "date": [lambda: note(draw(birth_dates)).isoformat(), lambda: note(draw(markers())),
                 lambda: note(draw(big_ints)), lambda: note(str(draw(birth_dates)) + "T10:00:00")],
        "name": [lambda: note(draw(markers())), lambda: note(draw(big_ints)), lambda: [note(draw(markers()))]],
        "municipality": [lambda: draw(st.sampled_from(["oslo", "bergen"])), lambda: note(draw(markers()))],
        "int": [lambda: draw(st.integers(0, 130)), lambda: note(draw(big_ints)), lambda: -note(draw(big_ints)),
                lambda: note(draw(big_money)), lambda: note(draw(markers()))],
        "money": [lambda: note(draw(big_money)), lambda: -note(draw(big_money)), lambda: note(draw(markers())),
                  lambda: note(f"{draw(big_ints)} kr"), lambda: {"amount": note(draw(big_ints))}],
    }[kind]
    return draw(st.sampled_from(choices))()


@st.composite
def hostile_case(draw, serial: int):
    """A case (or not-a-case) and the unique personal values it holds."""
    found: list = []
    shape = draw(st.sampled_from(["object"] * 8 + ["array", "string", "number"]))
    if shape == "array":
        first, second = draw(markers()), draw(markers())
        return [first, {"name": second}], [first, second]
    if shape == "string":
        m = draw(markers())
        return m, [m]
    if shape == "number":
        m = draw(big_money)
        return m, [m]
    case = {"case_id": f"case-{serial}", "application_date": "2025-03-01", "resident": draw(st.booleans())}
    for name, kind in (("birth_date", "date"), ("name", "name"), ("municipality", "municipality"),
                       ("age_years", "int"), ("income", "money")):
        presence = draw(st.sampled_from(["value"] * 6 + ["missing", "null"]))
        if presence == "value":
            case[name] = draw(field(kind, found))
        elif presence == "null":
            case[name] = None
    children = draw(st.sampled_from(["list"] * 4 + ["string", "missing"]))
    if children == "string":
        case["children"] = draw(markers())
        found.append(case["children"])
    elif children == "list":
        items = []
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["item"] * 4 + ["string", "typo"]))
            if kind == "string":
                items.append(draw(markers()))
                found.append(items[-1])
                continue
            item = {"child_name": draw(field("name", found)), "child_birth": draw(field("date", found))}
            if kind == "typo":
                item["child_nmae"] = draw(markers())
                found.append(item["child_nmae"])
            items.append(item)
        case["children"] = items
    income = case.get("income")
    if type(income) is Decimal and income > 0:  # what rule high-earner's values compute from it
        found += [income * 2, income - 500000]
    if draw(st.booleans()):
        case["lookup"] = draw(st.booleans())
    if draw(st.integers(0, 4)) == 0:  # a typo of a pii field's name, holding its value
        typo = draw(st.sampled_from(["birth_dat", "nmae", "incom", "Birth_date"]))
        case[typo] = draw(field("date" if typo.lower().startswith("birth") else "name", found))
    return case, found


@st.composite
def batches(draw):
    """One to five hostile cases, and every unique personal value among them."""
    out, found = [], []
    for i in range(draw(st.integers(1, 5))):
        case, values = draw(hostile_case(i))
        out.append(case)
        found += values
    return out, found


def to_json(value) -> str:
    """JSON text with each Decimal written as the exact number it is."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + to_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def _as_decided(case):
    """A case as the CLI reads it back from JSON (so that the library sees the same values)."""
    return json.loads(to_json(case), parse_float=Decimal)


PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@pytest.mark.parametrize("mode", MODES)
@settings(PROPERTY, max_examples=20)
@given(batch=batches())
def test_property_library_path_leaks_nothing(mode, plan, batch):
    """Through the library (AuditLog.decide_many), no generated case leaves a personal value in
    the SQLite file, whether the case is valid or not, and the log still verifies."""
    cases, found = batch
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "audit.db"
        with AuditLog.open(str(db), pii=mode, pii_key=KEY, batch_size=2) as log:
            released = list(log.decide_many(plan, [_as_decided(c) for c in cases]))
        assert len(released) == len(cases)
        assert leaks(sqlite_bytes(db), found) == []
        with open_store(str(db)) as store:
            assert verify(store).problems == []


@pytest.mark.parametrize("mode", MODES)
@settings(PROPERTY, max_examples=15)
@given(batch=batches())
def test_property_run_command_leaks_nothing(mode, ruleset_path, key_file, batch):
    """Through `vedtak run CASES.jsonl --audit DB --pii MODE`, no generated case leaves a personal
    value in the SQLite file."""
    cases, found = batch
    with tempfile.TemporaryDirectory() as tmp:
        db, source = Path(tmp) / "audit.db", Path(tmp) / "cases.jsonl"
        source.write_text("".join(to_json(c) + "\n" for c in cases), encoding="utf-8")
        result = CliRunner().invoke(main, ["run", str(ruleset_path), str(source), "--audit", str(db), "--workers", "1",
                                           *pii_args(mode, key_file)])
        assert result.exit_code in (0, 1), result.output
        assert leaks(sqlite_bytes(db), found) == []


@pytest.mark.parametrize("mode", MODES)
@settings(PROPERTY, max_examples=10)
@given(batch=batches())
def test_property_decide_command_leaks_nothing(mode, ruleset_path, key_file, batch):
    """Through `vedtak decide CASE.json --audit DB --pii MODE`, one case at a time, no generated
    case leaves a personal value in the SQLite file."""
    cases, found = batch
    with tempfile.TemporaryDirectory() as tmp:
        db, source = Path(tmp) / "audit.db", Path(tmp) / "case.json"
        for case in cases:
            source.write_text(to_json(case), encoding="utf-8")
            result = CliRunner().invoke(main, ["decide", str(ruleset_path), str(source), "--audit", str(db),
                                               *pii_args(mode, key_file)])
            assert result.exit_code in (0, 1), result.output
        assert leaks(sqlite_bytes(db), found) == []


@pytest.mark.parametrize("mode", MODES)
@settings(PROPERTY, max_examples=12)
@given(batch=batches())
def test_property_postgres_store_leaks_nothing(mode, plan, ruleset_path, key_file, batch):
    """On PostgreSQL, through the library and `vedtak run`, no table holds a personal value
    (every table is copied out and searched)."""
    url = fresh_url("postgres", Path(tempfile.gettempdir()))
    cases, found = batch
    with AuditLog.open(url, pii=mode, pii_key=KEY) as log:
        list(log.decide_many(plan, [_as_decided(c) for c in cases]))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "cases.jsonl"
        source.write_text("".join(to_json(c) + "\n" for c in cases), encoding="utf-8")
        result = CliRunner().invoke(main, ["run", str(ruleset_path), str(source), "--audit", url, "--workers", "1",
                                           *pii_args(mode, key_file)])
        assert result.exit_code in (0, 1), result.output
    assert leaks(postgres_bytes(url), found) == []


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_marker_search_finds_a_planted_value(kind, tmp_path, plan):
    """The search itself works: under --pii keep, the same values are found in the store."""
    url = fresh_url(kind, tmp_path)
    case = valid_case(name="MkPlantedø\"1234567", income=MONEY)
    with AuditLog.open(url) as log:
        log.decide(plan, case)
    data = sqlite_bytes(Path(url)) if kind == "sqlite" else postgres_bytes(url)
    assert leaks(data, ["MkPlantedø\"1234567", MONEY]) == ["MkPlantedø\"1234567", MONEY]


@pytest.mark.parametrize("attr,field", [("case_id", "case_id"), ("decision_date", "application_date")])
def test_case_id_and_decision_date_cannot_be_pii(attr, field, tmp_path):
    """The case id and decision date are stored with every record whatever --pii says, so a
    ruleset that marks either pii is refused at load time (pii_key_field, at the field)."""
    text = RULESET.replace(f"  {field}: {{type: {'string' if attr == 'case_id' else 'date'}}}",
                           f"  {field}: {{type: {'string' if attr == 'case_id' else 'date'}, pii: true}}")
    assert text != RULESET
    path = tmp_path / "pii.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load(path)
    (d,) = [d for d in info.value.diagnostics if d.code == "pii_key_field"]
    assert d.line == text.splitlines().index(f"  {field}: {{type: {'string' if attr == 'case_id' else 'date'}, "
                                             "pii: true}") + 1
    assert f"is the {attr} and cannot be marked pii" in d.message


@pytest.mark.parametrize("mode", MODES)
def test_unreadable_line_is_recorded_by_where_it_was_not_by_its_content(mode, ruleset_path, key_file, tmp_path):
    """`vedtak run` records a line it cannot read as the reader's note (source, line, error),
    kept as it is under every policy, and never with the line's own text."""
    db, source = tmp_path / "audit.db", tmp_path / "cases.jsonl"
    good = to_json(valid_case(case_id="ok", name=MARKER + "x"))
    source.write_text(good + "\n" + '{"case_id": "bad", "name": "' + MARKER + '"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(ruleset_path), str(source), "--audit", str(db), "--workers", "1",
                                       *pii_args(mode, key_file)])
    assert result.exit_code == 1, result.output
    assert leaks(sqlite_bytes(db), [MARKER]) == []
    with open_store(str(db)) as store:
        bad = [json.loads(r.input) for r in store.records() if r.kind == "rejection"]
    assert [(b["line"], b["source"]) for b in bad] == [(2, str(source))]


@pytest.mark.parametrize("mode", MODES)
def test_a_message_that_quotes_a_withheld_value_is_stored_without_it(mode, plan):
    """Second guard: should any validation message ever quote a value the input scrub withheld
    (a pii field, an unknown field, a whole non-object case), the log stores a plain message for
    that error instead, notes the errors as masked, and the work item's text follows."""
    from vedtak.audit.log import make_entry
    from vedtak.audit.pii import PiiPolicy
    from vedtak.evaluation.cases import CaseError
    from vedtak.evaluation.decision import Decision
    case = valid_case(income=f"{NUMBER} kr", nmae=MARKER)
    errors = (CaseError("income", "wrong_type", f"expected a number, got '{NUMBER} kr'"),
              CaseError("nmae", "unknown_field", f"{MARKER} is not a field"),
              CaseError("resident", "wrong_type", "kept as it is"))
    decision = Decision((plan._periods[-1].rejected, case, None, errors))
    entry = make_entry(decision, case, PiiPolicy(mode, KEY))
    stored = json.loads(entry.decision)
    assert [e["message"] for e in stored["errors"]] == ["the value has the wrong type", "the value is not valid",
                                                         "kept as it is"]
    assert json.loads(entry.pii)["masked"] == ["errors"]
    assert MARKER not in entry.work_item[2] and str(NUMBER) not in entry.work_item[2]
    assert entry.work_item[2] == " ".join(stored["reasons"])


def test_run_out_file_holds_the_decisions_as_decided_and_the_log_their_keyed_hash(ruleset_path, key_file, tmp_path):
    """`vedtak run --out` under --pii pseudonymise writes each decision as it was decided (its
    reasons name the applicant), while the log keeps the masked text and, in its pii note, the
    keyed HMAC of exactly the line that was written."""
    import hashlib
    import hmac
    db, source, out = tmp_path / "audit.db", tmp_path / "cases.jsonl", tmp_path / "out.jsonl"
    source.write_text(to_json(valid_case(birth_date="2012-11-23", name=MARKER)) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(ruleset_path), str(source), "--audit", str(db), "--workers", "1",
                                       "--out", str(out), *pii_args("pseudonymise", key_file)])
    assert result.exit_code == 0, result.output
    (line,) = out.read_text(encoding="utf-8").splitlines()
    assert MARKER in json.loads(line)["reasons"][0]
    assert leaks(sqlite_bytes(db), [MARKER, "2012-11-23"]) == []
    with open_store(str(db)) as store:
        (record,) = list(store.records())
    assert json.loads(record.pii)["released"] == "hmac-sha256:" + hmac.new(KEY, line.encode("utf-8"),
                                                                          hashlib.sha256).hexdigest()


# -- rule values computed from personal data (review of round 2) ---------------------------------

# The reviewer's ruleset: rule r copies a pii field into a value, computes one from a derived value
# that reads it, and one from two pii fields; its reason quotes a derived value and a rule value.
PIIVAL = """\
ruleset: piival
title: v
version: "1"
valid: {from: 2020-01-01}
decision_date: d
case_id: id
automate: [yes]
case:
  id: {type: string}
  d: {type: date}
  income: {type: money, pii: true}
  born: {type: date, pii: true}
  name: {type: string, pii: true}
  bonus: {type: money, optional: true, pii: true}
parameters:
  FEE: {unit: NOK, values: {2020-01-01: 250}}
derive:
  twice: income * 2
rules:
  - id: r
    basis: "x"
    when: income > 0
    decide: yes
    values:
      amount: income
      dbl: twice
      age: years_between(born, d)
      fee: FEE
      name: "'standard'"
    because: "ok {twice} {amount} fee {fee} {name}"
  - id: b
    basis: "z"
    when: income == 0
    decide: bonus
    values: {extra: bonus}
    because: "bonus {extra}"
otherwise: {refer: manual, basis: y, because: "other {name}"}
"""
PIIVAL_CASES = [
    {"id": "V1", "d": "2025-01-01", "income": 7654321, "born": "1981-06-17", "name": "SECRETVV1"},
    {"id": "V2", "d": "2025-01-01", "income": -5, "born": "1981-06-17", "name": "SECRETVV2"},
    {"id": "V3", "d": "2025-01-01", "income": 0, "born": "1981-06-17", "name": "SECRETVV3"},
]
PIIVAL_SECRETS = ["7654321", "15308642", "1981-06-17", "SECRETVV1", "SECRETVV2", "SECRETVV3"]


def _piival(tmp_path, automate: str) -> Path:
    """The reviewer's piival.yaml (automate [yes]) or piiref.yaml (automate [])."""
    path = tmp_path / "piival.yaml"
    path.write_text(PIIVAL.replace("automate: [yes]", f"automate: {automate}"), encoding="utf-8")
    return path


def _run_piival(tmp_path, key_file, mode: str, automate: str):
    """`vedtak run piival.yaml v.jsonl --audit pv.db --pii MODE --out`: the db, the output lines
    by case id, the stored records by case id, the work items by case id."""
    db, source, out = tmp_path / "pv.db", tmp_path / "v.jsonl", tmp_path / "pv.out"
    source.write_text("".join(json.dumps(c) + "\n" for c in PIIVAL_CASES), encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(_piival(tmp_path, automate)), str(source), "--audit", str(db),
                                       "--workers", "1", "--out", str(out), *pii_args(mode, key_file)])
    assert result.exit_code in (0, 1), result.output
    lines = {json.loads(line)["case_id"]: line for line in out.read_text(encoding="utf-8").splitlines()}
    with open_store(str(db)) as store:
        records = {r.case_id: r for r in store.records()}
        items = {i.case_id: i for i in list_items(store)}
        assert verify(store).problems == []
    return db, lines, records, items


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("automate", ["[yes]", "[]"])
def test_rule_values_read_from_pii_are_masked_in_the_log(mode, automate, key_file, tmp_path):
    """The reviewer's repro (piival.yaml, and piiref.yaml with automate: []): values that copy a
    pii field (amount), compute from a derived value that reads one (dbl) or from pii fields (age)
    are stored as [personal data], and so is every placeholder naming them; values that read no
    personal data (fee from a parameter, name a literal that shadows the pii field) stay as they
    are; the work item's text and proposal are masked alike; --out has the decision as decided;
    no secret is anywhere in the SQLite file."""
    db, lines, records, items = _run_piival(tmp_path, key_file, mode, automate)
    assert leaks(sqlite_bytes(db), PIIVAL_SECRETS) == []
    released = json.loads(lines["V1"])
    assert released["values"] == {"age": 43, "amount": "7654321", "dbl": "15308642", "fee": "250",
                                  "name": "standard"}
    assert released["reasons"][0] == "ok 15308642 7654321 fee 250 standard"
    stored = json.loads(records["V1"].decision)
    assert stored["values"] == {"age": "[personal data]", "amount": "[personal data]", "dbl": "[personal data]",
                                "fee": "250", "name": "standard"}
    assert stored["reasons"][0] == "ok [personal data] [personal data] fee 250 standard"
    assert json.loads(records["V1"].pii)["masked"] == ["reasons", "values"]
    if automate == "[]":
        item = items["V1"]
        assert item.proposed == {"outcome": "yes", "values": stored["values"]}
        assert item.reason_text == " ".join(stored["reasons"])
    else:
        assert "V1" not in items
    assert json.loads(records["V2"].decision)["reasons"] == ["other [personal data]"]


@pytest.mark.parametrize("mode", MODES)
def test_value_of_an_optional_pii_field_and_the_missing_list(mode, key_file, tmp_path):
    """A value copying an optional pii field is masked when the field is given; when it is not,
    the missing-data referral lists the field's name only (never a value), and the log stores it
    so. The stored decision has no trace, and its parameters are the ruleset's."""
    db, lines, records, items = _run_piival(tmp_path, key_file, mode, "[yes]")
    missing = json.loads(records["V3"].decision)
    assert missing["referral"] == {"fields": ["bonus"], "reason": "missing-data"} and missing["values"] == {}
    assert "trace" not in missing and missing["parameters"] == {"FEE": "250"}
    assert items["V3"].reason_text == "Missing data: rule b needs bonus, which the case does not give."
    from vedtak.audit.log import make_entry
    from vedtak.audit.pii import PiiPolicy
    plan = vedtak.compile(vedtak.load(_piival(tmp_path, "[yes]")))
    case = {**PIIVAL_CASES[2], "bonus": "4455667.89"}
    entry = make_entry(plan.decide(_as_decided(case)), _as_decided(case), PiiPolicy(mode, KEY))
    stored = json.loads(entry.decision)
    assert stored["values"] == {"extra": "[personal data]"} and stored["reasons"][0] == "bonus [personal data]"
    assert "4455667" not in entry.decision + entry.input and json.loads(entry.released)["values"]["extra"] == "4455667.89"


def test_pseudonymised_masked_values_commit_to_the_released_line_and_replay_says_why(key_file, tmp_path):
    """Under pseudonymise, a record with masked values keeps the keyed HMAC of exactly the line
    --out was given; replay lists it as not reproducible and says its values are stored masked."""
    import hashlib
    import hmac
    db, lines, records, _ = _run_piival(tmp_path, key_file, "pseudonymise", "[yes]")
    note = json.loads(records["V1"].pii)
    assert note["released"] == "hmac-sha256:" + hmac.new(KEY, lines["V1"].encode("utf-8"), hashlib.sha256).hexdigest()
    with open_store(str(db)) as store:
        report = replay(store)
    why = {cid: text for _, cid, text, _ in report.unreproducible}
    assert why["V1"] == ("personal data was pseudonymised in the log (income, born, name); the decision's "
                         "reasons and values are stored masked")
    assert report.differences == []


@pytest.mark.parametrize("mode", MODES)
def test_shipped_omgjoring_ruleset_stores_no_value_computed_from_income(mode, key_file, tmp_path):
    """The shipped studiestotte-omgjoring ruleset under --pii drop|pseudonymise: case S1-2023-14's
    reduction (0.50 NOK, from which the exact income could be worked back) and the converted sum
    are stored as [personal data], in the values and the reason; the gross sum, which reads no
    personal data, stays; --out keeps the decision as decided. No stored decision of any case
    repeats its income or a value computed from it."""
    root = Path(__file__).resolve().parent.parent / "rulesets" / "studiestotte-omgjoring"
    db, out = tmp_path / "so.db", tmp_path / "so.out"
    result = CliRunner().invoke(main, ["run", str(root), str(root / "cases.jsonl"), "--audit", str(db),
                                       "--workers", "1", "--out", str(out), *pii_args(mode, key_file)])
    assert result.exit_code in (0, 1), result.output
    released = {d["case_id"]: d for d in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert released["S1-2023-14"]["values"]["reduction"] == "0.50"
    with open_store(str(db)) as store:
        stored = {r.case_id: json.loads(r.decision) for r in store.records()}
    s14 = stored["S1-2023-14"]
    assert s14["values"] == {"converted": "[personal data]", "gross": "30000.00", "reduction": "[personal data]"}
    assert "0.50" not in s14["reasons"][0] and "205580" not in s14["reasons"][0]
    assert "reduces it by [personal data] NOK" in s14["reasons"][0]
    cases = {c["student_id"]: c for c in map(json.loads, (root / "cases.jsonl").read_text().splitlines()) if c}
    for cid, d in stored.items():
        income = cases.get(cid, {}).get("income")
        if d["status"] == "rejected" or income is None:
            continue
        texts = " ".join(d["reasons"]) + " " + json.dumps(d["values"])
        for known in [d["decision_date"], *map(format_value, map(Decimal, d["parameters"].values()))]:
            texts = texts.replace(known, "")  # an income may equal the limit the reason quotes
        assert format_value(Decimal(str(income))) not in texts, cid
        for name in ("reduction", "converted"):
            assert d["values"].get(name, "[personal data]") == "[personal data]", cid


@pytest.mark.parametrize("mode", MODES)
def test_resumed_run_releases_masked_decisions_as_decided(mode, key_file, tmp_path):
    """`vedtak run --resume` over cases already in the log releases each one as it was decided
    (the same line the first run wrote), never the log's masked copy; nothing is recorded twice."""
    db, lines, records, _ = _run_piival(tmp_path, key_file, mode, "[yes]")
    again = tmp_path / "again.out"
    result = CliRunner().invoke(main, ["run", str(tmp_path / "piival.yaml"), str(tmp_path / "v.jsonl"),
                                       "--audit", str(db), "--workers", "1", "--out", str(again), "--resume",
                                       *pii_args(mode, key_file)])
    assert result.exit_code in (0, 1), result.output
    resumed = {json.loads(line)["case_id"]: line for line in again.read_text(encoding="utf-8").splitlines()}
    assert resumed == lines and "7654321" in resumed["V1"]
    with open_store(str(db)) as store:
        assert len(list(store.records())) == len(records)
    assert leaks(sqlite_bytes(db), PIIVAL_SECRETS) == []


def test_as_released_gives_the_stored_text_unless_the_same_decision_masked(plan):
    """The release helper of resume: a masked record decided again from the same input gives the
    released text (with the record's supersedes keys); a record that is not masked, or whose masked
    text the new decision does not reproduce, is released as stored. (Resume only pairs a record
    with a case of the same stored input: under pseudonymise that input holds the keyed pseudonyms,
    so the case is the same; under drop the log cannot tell a changed pii value, see README.)"""
    from vedtak.audit.log import as_released, make_entry
    from vedtak.audit.pii import PiiPolicy
    case = valid_case(income=MONEY)
    entry = make_entry(plan.decide(case), case, PiiPolicy("drop"))
    assert entry.released is not None and str(MONEY) in entry.released and str(MONEY) not in entry.decision
    assert as_released(entry.decision, entry) == entry.released
    superseding = json.loads(entry.decision) | {"supersedes": 4, "supersedes_chain": "p/1"}
    assert json.loads(as_released(json.dumps(superseding), entry)) == json.loads(entry.released) | {
        "supersedes": 4, "supersedes_chain": "p/1"}
    other = make_entry(plan.decide(valid_case(income=MONEY, resident=False)), case, PiiPolicy("drop"))
    assert other.released is not None and as_released(entry.decision, other) == entry.decision
    plain = make_entry(plan.decide(valid_case(resident="x")), valid_case(resident="x"), PiiPolicy("drop"))
    assert plain.released is None and as_released(plain.decision, plain) == plain.decision


def test_dask_resume_releases_masked_decisions_as_decided(tmp_path):
    """`vedtak run --executor dask --resume` after a partition stopped part-way: the cases its
    chain had recorded are released again as decided (the values as computed), never as the
    log's masked copy, and the log still holds no secret."""
    from pii_dist_support import stop_after_first_chunk
    from vedtak.batch.distributed import DistributedRun, IncompleteRun
    source = tmp_path / "v.jsonl"
    source.write_text("".join(json.dumps(c) + "\n" for c in PIIVAL_CASES), encoding="utf-8")
    ruleset, db, parts = str(_piival(tmp_path, "[yes]")), str(tmp_path / "d.db"), tmp_path / "parts"
    options = dict(out_dir=str(parts), workers=1, chunk_size=1, pii=("drop", None))
    with pytest.raises(IncompleteRun):
        DistributedRun(ruleset, [str(source)], db, retries=0, task=stop_after_first_chunk, **options).run()
    summary = DistributedRun(ruleset, [str(source)], db, resume=True, **options).run()
    assert summary.resumed == 1
    lines = [json.loads(line) for f in sorted(parts.glob("*.jsonl")) for line in f.read_text().splitlines()]
    v1 = next(d for d in lines if d["case_id"] == "V1")
    assert v1["values"]["amount"] == "7654321" and v1["reasons"][0].startswith("ok 15308642 7654321")
    assert leaks(sqlite_bytes(Path(db)), PIIVAL_SECRETS) == []


# value expressions for the generated rulesets: (expression, whether it reads personal data)
VALUE_EXPRS = [("income", True), ("income * 2", True), ("twice", True), ("twice + FEE", True),
               ("years_between(born, d)", True), ("name", True), ("FEE * 3", False), ("'plain'", False),
               ("d", False), ("max(FEE, income)", True), ("known(bonus)", True), ("FEE if income > 0 else 0", True)]


@st.composite
def value_rulesets(draw):
    """A piival-like ruleset whose one rule has 1-4 generated values, each reading personal data
    or not, and a reason naming some of them and some fields; and the names that read pii."""
    picks = draw(st.lists(st.sampled_from(range(len(VALUE_EXPRS))), min_size=1, max_size=4))
    values = {f"v{i}": VALUE_EXPRS[k] for i, k in enumerate(picks)}
    named = draw(st.lists(st.sampled_from(sorted(values) + ["twice", "income", "name", "FEE", "d"]), max_size=5))
    because = "r " + " ".join("{" + n + "}" for n in named)
    body = "".join(f"      {n}: \"{expr}\"\n" for n, (expr, _) in values.items())
    text = PIIVAL.replace('''      amount: income
      dbl: twice
      age: years_between(born, d)
      fee: FEE
      name: "'standard'"
''', body).replace('because: "ok {twice} {amount} fee {fee} {name}"', f'because: "{because}"')
    return text, {n for n, (_, personal) in values.items() if personal}


@pytest.mark.parametrize("mode", MODES)
@settings(PROPERTY, max_examples=25)
@given(ruleset=value_rulesets(), income=big_money, name=markers(), born=birth_dates,
       bonus=st.one_of(st.none(), big_money))
def test_property_generated_values_from_pii_are_masked(mode, ruleset, income, name, born, bonus):
    """For generated rulesets whose values read pii fields directly, through a derived value or
    with parameters, or read none: the log stores exactly the values that read personal data as
    [personal data] and the others as released, and holds no personal value (nor income * 2)."""
    text, personal = ruleset
    case = {"id": "G1", "d": "2025-01-01", "income": income, "born": born.isoformat(), "name": name}
    if bonus is not None:
        case["bonus"] = bonus
    with tempfile.TemporaryDirectory() as tmp:
        path, db = Path(tmp) / "g.yaml", Path(tmp) / "g.db"
        path.write_text(text, encoding="utf-8")
        plan = vedtak.compile(vedtak.load(path))
        with AuditLog.open(str(db), pii=mode, pii_key=KEY) as log:
            (released,) = log.decide_many(plan, [_as_decided(case)])
        with open_store(str(db)) as store:
            (record,) = list(store.records())
        assert leaks(sqlite_bytes(db), [income, income * 2, name, born, *([bonus] if bonus else [])]) == []
    stored = json.loads(record.decision)
    as_released = json.loads(released.to_json())["values"]
    assert {n for n, v in stored["values"].items() if v == "[personal data]"} == personal
    assert {n: v for n, v in stored["values"].items() if n not in personal} == \
        {n: v for n, v in as_released.items() if n not in personal}


@pytest.mark.parametrize("mode", MODES)
def test_caseworker_values_computed_from_pii_are_masked_and_a_review_cannot_claim_a_match(mode, key_file,
                                                                                           tmp_path):
    """A caseworker deciding a work item of a log kept under drop|pseudonymise: the values the
    ruleset computes from personal data are stored as [personal data] in the human record too
    (the rest as given); a review that keeps the outcome cannot be said to confirm the masked
    values (confirms is null, and `audit show` says so); the log holds no secret."""
    from vedtak.audit import queue
    from vedtak.audit.replay import explain_record
    db, lines, records, items = _run_piival(tmp_path, key_file, mode, "[]")
    given = {"amount": "7654321", "dbl": "15308642", "age": "43", "fee": "250", "name": "standard"}
    with open_store(str(db)) as store:
        seq = queue.decide(store, items["V1"].id, outcome="yes", values=given, by="kari", reason="as proposed")
    with open_store(str(db)) as store:
        human = json.loads(store.record(seq, None).decision)
    assert human["values"] == {"age": "[personal data]", "amount": "[personal data]", "dbl": "[personal data]",
                               "fee": "250", "name": "standard"}
    assert leaks(sqlite_bytes(db), PIIVAL_SECRETS) == []
    # a review of an automated decision under the same policy
    (tmp_path / "two").mkdir()
    db2 = _run_piival(tmp_path / "two", key_file, mode, "[yes]")[0]
    with open_store(str(db2)) as store:
        item = queue.request_review(store, "V1", by="ola", reason="check")
        seq = queue.decide(store, item.id, outcome="yes", values=given, by="kari", reason="agreed")
        record = store.record(seq, None)
        assert json.loads(record.decision)["review"]["confirms"] is None
        assert "whether they match is not known" in explain_record(store, record)
    assert leaks(sqlite_bytes(db2), PIIVAL_SECRETS) == []
