"""The caseworkers' queue keeps one story per case (both stores): at most one open review per
record, a later review names the earlier one, claims are released or reassigned by a supervisor
with a history, `queue list` shows work still to do, `queue show` says what `decide` accepts, and
piped output keeps every id in full."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from vedtak.audit import queue as queue_api
from vedtak.audit import AuditLog, open_store
from vedtak.audit.verify import verify
from vedtak.cli import tables
from vedtak.cli.main import main
from vedtak.audit.queue import list_items
from vedtak.audit.replay import replay

from audit_support import fresh_url
from workload import generate

LONG_ID = "A-2025-" + "0123456789" * 6 + "-end"  # longer than any terminal column


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path, study_plan):
    """30 study-grant cases (case 4 granted automatically, 0 denied, 5 referred to general) and one
    rejected case (a work item in queue review) whose case id is 71 characters long."""
    url = fresh_url(request.param, tmp_path)
    long_case = dict(generate(30, seed=8)[5], case_id=LONG_ID)
    with AuditLog.open(url) as log:
        list(log.decide_many(study_plan, generate(30, seed=8) + [long_case]))
    return url


def _items(url, **kw):
    with open_store(url) as store:
        return list_items(store, **kw)


def _item_id(output: str) -> int:
    assert output.startswith("work item "), output
    return int(output.split()[2])


def _review(db, case_id, who="kari"):
    return run("queue", "review", db, case_id, "--by", who, "--reason", "The applicant disputes it")


# -- at most one open review per record ---------------------------------------------------------

def test_a_second_review_while_one_is_open_is_refused_naming_it(db):
    """The reproduction: `queue review` twice on one record opened two items. Now the second is
    refused (exit 1) naming the open item, and only one review item exists."""
    first = _review(db, 4)
    assert first.exit_code == 0, first.output
    item_id = _item_id(first.output)
    (record,) = {i.record_seq for i in _items(db) if i.id == item_id}
    second = _review(db, 4, who="ola")
    assert second.exit_code == 1
    assert second.output == (f"refused: a review of record {record} (case 4) is already open: work item {item_id}, "
                             "open; decide it before asking for another\n")
    assert [i.id for i in _items(db) if i.kind == "review"] == [item_id]


def test_a_claimed_review_blocks_another_and_names_its_holder(db):
    """A review being worked on (claimed) is still open: a new request names the item and who holds it."""
    item_id = _item_id(_review(db, 4).output)
    assert run("queue", "claim", db, item_id, "--by", "per").exit_code == 0
    again = _review(db, 4)
    assert again.exit_code == 1 and f"work item {item_id}, claimed by per;" in again.output


def test_a_later_review_names_the_earlier_one(db):
    """After the first review is decided, a new review may be asked for; it says which review it
    follows, and its decision record names the earlier item and the record that decided it."""
    first = _item_id(_review(db, 4).output)
    d1 = run("queue", "decide", db, first, "--outcome", "deny", "--by", "per", "--reason", "Income too high")
    assert d1.exit_code == 0, d1.output
    first_seq = int(d1.output.rstrip(")\n").split()[-1])
    later = _review(db, 4, who="ola")
    assert later.exit_code == 0, later.output
    assert later.output.endswith(f"; it follows review work item {first}, decided in record {first_seq}\n")
    second = _item_id(later.output)
    shown = run("queue", "show", db, second).output.splitlines()
    assert shown[2] == f"Follows review work item {first}, decided in record {first_seq}"
    d2 = run("queue", "decide", db, second, "--outcome", "grant", "--value", "amount=6500", "--by", "per",
             "--reason", "Documents received")
    assert d2.exit_code == 0, d2.output
    with open_store(db) as store:
        humans = [json.loads(r.decision) for r in store.records(4) if r.kind == "human"]
        assert "follows" not in humans[0]["review"]
        assert humans[1]["review"]["follows"] == {"work_item": first, "record": first_seq}
        # the later review is of the case's current decision (the first review's deny), which grant overrides
        assert humans[1]["review"]["of_record"] == first_seq
        assert humans[1]["review"]["confirms"] is False and humans[0]["review"]["confirms"] is False
        assert verify(store).ok and replay(store).ok
    history = run("audit", "show", db, "4").output
    assert f"Follows the earlier review in work item {first} (decided in record {first_seq})" in history


def test_a_second_review_is_of_the_decision_the_first_review_made(db):
    """The reproduction: after a review overrode record N (grant → deny), a second review linked to
    record N and "confirmed" grant. A review is of the case's current decision: the second one is of
    the first review's record, and deciding deny again confirms it (grant would override it)."""
    first = _item_id(_review(db, 4).output)
    d1 = run("queue", "decide", db, first, "--outcome", "deny", "--by", "per", "--reason", "Income too high")
    first_seq = int(d1.output.rstrip(")\n").split()[-1])
    later = _review(db, 4, who="ola")
    assert later.exit_code == 0, later.output
    assert f"to review record {first_seq};" in later.output
    second = _item_id(later.output)
    assert [i.proposed["outcome"] for i in _items(db) if i.id == second] == ["deny"]
    d2 = run("queue", "decide", db, second, "--outcome", "deny", "--by", "per", "--reason", "Still too high")
    assert d2.exit_code == 0, d2.output
    with open_store(db) as store:
        humans = [json.loads(r.decision) for r in store.records(4) if r.kind == "human"]
        assert humans[1]["review"] == {"of_record": first_seq, "confirms": True,
                                       "follows": {"work_item": first, "record": first_seq}}
        assert verify(store).ok


def test_a_case_whose_latest_record_is_a_referral_has_nothing_to_review(db):
    """A referred case has no decision yet: asking for a review says so (exit 1), naming no item."""
    referred = next(i for i in _items(db, queue="general"))
    r = _review(db, referred.case_id)
    assert r.exit_code == 1
    assert r.output.startswith(f"refused: case {referred.case_id} has no decision to review")
    assert not [i for i in _items(db) if i.kind == "review" and i.case_id == referred.case_id]


def test_two_review_requests_at_once_open_one_item(db):
    """Two processes ask for a review of the same record at the same moment, four times over:
    always exactly one opens an item and the other is refused naming it (the check is atomic)."""
    code = ("import sys; from click.testing import CliRunner; from vedtak.cli.main import main; "
            "r = CliRunner().invoke(main, ['queue', 'review', sys.argv[1], sys.argv[2], '--by', sys.argv[3], "
            "'--reason', 'x']); print(r.output.strip()); sys.exit(r.exit_code)")
    for case_id in (4, 7, 10, 12):
        procs = [subprocess.Popen([sys.executable, "-c", code, db, str(case_id), who], stdout=subprocess.PIPE,
                                  text=True) for who in ("kari", "ola")]
        results = sorted((p.wait(timeout=120), p.stdout.read()) for p in procs)
        assert [rc for rc, _ in results] == [0, 1], results
        opened = _item_id(results[0][1])
        assert f"already open: work item {opened}," in results[1][1]
        reviews = [i for i in _items(db) if i.kind == "review" and i.case_id == case_id]
        assert [i.id for i in reviews] == [opened]


# -- release and reassignment -------------------------------------------------------------------

def test_the_holder_releases_a_claim_and_the_history_shows_it(db):
    """Only the caseworker holding an item (or a supervisor) releases it; it is then open for
    anyone; an item that is not claimed has nothing to release. Claims and releases are kept."""
    item = _items(db, queue="general")[0]
    assert run("queue", "claim", db, item.id, "--by", "kari").exit_code == 0
    other = run("queue", "release", db, item.id, "--by", "ola")
    assert (other.exit_code, other.output) == (1, f"refused: work item {item.id} is claimed by kari, not ola; "
                                                  "only the holder or a supervisor may release it\n")
    mine = run("queue", "release", db, item.id, "--by", "kari")
    assert (mine.exit_code, mine.output) == (0, f"work item {item.id} released by kari: open again\n")
    (after,) = [i for i in _items(db) if i.id == item.id]
    assert (after.status, after.assignee, after.claimed_at) == ("open", None, None)
    again = run("queue", "release", db, item.id, "--by", "kari")
    assert again.exit_code == 1 and "is open, not claimed: there is nothing to release" in again.output
    assert run("queue", "claim", db, item.id, "--by", "ola").exit_code == 0
    shown = run("queue", "show", db, item.id).output.splitlines()
    history = [line.split(" ", 3)[-1] for line in shown[shown.index("History:") + 1:]]
    assert history == ["claimed by kari", "released by kari", "claimed by ola"]


def test_a_supervisor_reassigns_and_only_a_supervisor(db):
    """Reassigning needs a supervisor named in the log: without one the refusal says how to name one;
    the first is named by anyone, later ones only by a supervisor; the last cannot be removed. The
    supervisor's assignment is a claim by the new caseworker, kept in the history."""
    item = _items(db, queue="general")[0]
    run("queue", "claim", db, item.id, "--by", "kari")
    nobody = run("queue", "assign", db, item.id, "--to", "ola", "--by", "siri")
    assert nobody.exit_code == 1
    assert "no supervisor is named yet (vedtak queue supervisors DB --add NAME" in nobody.output
    assert run("queue", "supervisors", db, "--add", "siri", "--by", "siri").output == "supervisors: siri\n"
    outsider = run("queue", "supervisors", db, "--add", "ola", "--by", "ola")
    assert outsider.exit_code == 1 and "ola is not a supervisor of this log (supervisors: siri)" in outsider.output
    assert run("queue", "supervisors", db, "--remove", "siri", "--by", "siri").exit_code == 1
    assert run("queue", "supervisors", db).output == "siri\n"
    not_sup = run("queue", "assign", db, item.id, "--to", "ola", "--by", "kari")
    assert not_sup.exit_code == 1 and "kari is not a supervisor of this log (supervisors: siri)" in not_sup.output
    given = run("queue", "assign", db, item.id, "--to", "ola", "--by", "siri")
    assert (given.exit_code, given.output) == (0, f"work item {item.id} assigned to ola by siri\n")
    r = run("queue", "decide", db, item.id, "--outcome", "deny", "--by", "kari", "--reason", "x")
    assert r.exit_code == 1 and "is claimed by ola, not kari" in r.output
    assert run("queue", "release", db, item.id, "--by", "siri").exit_code == 0  # a supervisor may release it
    assert run("queue", "assign", db, item.id, "--to", "kari", "--by", "siri").exit_code == 0
    assert run("queue", "decide", db, item.id, "--outcome", "deny", "--by", "kari", "--reason", "x").exit_code == 0
    closed = run("queue", "assign", db, item.id, "--to", "ola", "--by", "siri")
    assert closed.exit_code == 1 and "is decided (record" in closed.output
    shown = run("queue", "show", db, item.id).output.splitlines()
    history = [line.split(" ", 3)[-1] for line in shown[shown.index("History:") + 1:]]
    assert history == ["claimed by kari", "assigned by siri to ola", "released by siri", "assigned by siri to kari"]
    with open_store(db) as store:
        assert verify(store).ok


@pytest.mark.parametrize("args,message", [
    (["--add", "a", "--remove", "b", "--by", "a"], "give --add or --remove, not both"),
    (["--add", "a"], "say who makes the change (--by)"),
    (["--by", "a"], "--by goes with --add NAME or --remove NAME"),
])
def test_supervisor_options_that_do_not_fit_are_usage_errors(db, args, message):
    """A muddled `queue supervisors` call is a usage error (exit 2) that says what to write."""
    r = run("queue", "supervisors", db, *args)
    assert r.exit_code == 2 and message in r.output


# -- list, show, decide ---------------------------------------------------------------------------

def test_list_shows_work_still_to_do_unless_all_is_asked_for(db):
    """`queue list` leaves decided items out by default; --all and --status decided show them."""
    item = _items(db, queue="general")[0]
    assert run("queue", "decide", db, item.id, "--outcome", "deny", "--by", "kari", "--reason", "x").exit_code == 0
    default = [i["id"] for i in json.loads(run("queue", "list", db, "--json").output)]
    every = [i["id"] for i in json.loads(run("queue", "list", db, "--all", "--json").output)]
    decided = [i["id"] for i in json.loads(run("queue", "list", db, "--status", "decided", "--json").output)]
    assert item.id not in default and item.id in every and decided == [item.id]
    assert sorted(default + decided) == sorted(every)
    text = run("queue", "list", db)
    assert text.stderr == f"{len(default)} items still to do (--all: closed ones too)\n"


def test_show_lists_the_outcomes_and_values_decide_accepts_with_their_types(db):
    """`queue show` ends with what `queue decide` accepts: each outcome, its values and their types."""
    item = _items(db, queue="general")[0]
    out = run("queue", "show", db, item.id).output.splitlines()
    at = out.index("Decide with (vedtak queue decide ... --outcome OUTCOME --value NAME=VALUE):")
    assert out[at + 1:at + 3] == ["  deny: no values", "  grant: --value amount=... (a whole number)"]


def test_a_repeated_value_is_a_usage_error(db):
    """`--value amount=1 --value amount=2` is refused (exit 2) rather than the last silently winning."""
    item = _items(db, queue="general")[0]
    r = run("queue", "decide", db, item.id, "--outcome", "grant", "--value", "amount=1", "--value", "amount=2",
            "--by", "kari", "--reason", "x")
    assert r.exit_code == 2
    assert "--value amount is given twice (amount=1 and amount=2); give each value once" in r.output
    assert [i.status for i in _items(db) if i.id == item.id] == ["open"]


# -- piped output keeps every value in full -----------------------------------------------------

def test_piped_queue_list_and_audit_show_keep_full_ids(db):
    """The reproduction: piped, `queue list` and `audit show` cut ids short, so grep found nothing.
    Piped (not a terminal), each row is one tab-separated line holding every value in full."""
    listed = run("queue", "list", db)
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert rows[0] == ["id", "queue", "status", "case", "reason", "proposed", "created", "assignee"]
    (row,) = [r for r in rows[1:] if r[3] == LONG_ID]
    assert row[1:5] == ["review", "open", LONG_ID, "invalid-input"] and len(row[6]) == 19
    shown = run("audit", "show", db, "--limit", "3")
    lines = [line.split("\t") for line in shown.stdout.splitlines()]
    assert lines[0] == ["seq", "recorded at", "kind", "case", "result", "rule"]
    assert [r[3] for r in lines[1:]][-1] == LONG_ID
    assert all(r[1].endswith("Z") and len(r[1]) == 27 for r in lines[1:])  # the full time, to the microsecond


def test_on_a_terminal_a_long_value_folds_instead_of_being_cut(monkeypatch):
    """On a narrow terminal a long case id wraps onto the next line; no character is replaced by an ellipsis."""
    buffer = io.StringIO()
    monkeypatch.setattr(tables, "console", lambda: Console(file=buffer, force_terminal=True, width=40,
                                                           color_system=None))
    tables.print_table(("id", "case"), [(1, LONG_ID)])
    text = buffer.getvalue()
    assert "…" not in text and "".join(text.split()).endswith(LONG_ID)


# -- the class, not only the instances: any sequence of queue operations keeps one story ---------

PEOPLE = ("kari", "ola", "siri")
OPERATIONS = st.one_of(
    st.tuples(st.just("review"), st.sampled_from([4, 7]), st.sampled_from(PEOPLE)),
    st.tuples(st.just("claim"), st.integers(0, 9), st.sampled_from(PEOPLE)),
    st.tuples(st.just("release"), st.integers(0, 9), st.sampled_from(PEOPLE)),
    st.tuples(st.just("assign"), st.integers(0, 9), st.sampled_from(PEOPLE), st.sampled_from(PEOPLE)),
    st.tuples(st.just("decide"), st.integers(0, 9), st.sampled_from(PEOPLE), st.sampled_from(["deny", "grant"])),
    st.tuples(st.just("supervisor"), st.sampled_from(PEOPLE), st.sampled_from(PEOPLE)),
)


@pytest.fixture(scope="module")
def template(tmp_path_factory, study_plan):
    path = tmp_path_factory.mktemp("queue") / "template.db"
    with AuditLog.open(str(path)) as log:
        list(log.decide_many(study_plan, generate(12, seed=8)))
    return path


def _apply(store, op) -> None:
    kind, *args = op
    items = list_items(store)
    if kind == "review":
        queue_api.request_review(store, args[0], args[1], "disputed")
    elif kind == "supervisor":
        queue_api.change_supervisors(store, args[0], add=True, by=args[1])
    elif items:
        item = items[args[0] % len(items)]
        if kind == "claim":
            queue_api.claim(store, item.id, args[1])
        elif kind == "release":
            queue_api.release(store, item.id, args[1])
        elif kind == "assign":
            queue_api.assign(store, item.id, args[1], args[2])
        else:
            values = {"amount": "100"} if args[2] == "grant" else {}
            queue_api.decide(store, item.id, outcome=args[2], values=values, by=args[1], reason="checked")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPERATIONS, max_size=12))
def test_any_sequence_of_queue_operations_keeps_one_story(template, tmp_path, ops):
    """Whatever caseworkers and supervisors do, in any order: every refusal is a QueueError with a
    code (nothing else is raised); at most one review per record is open; an open item has no
    holder and a claimed one has one; each closed item is closed by exactly one caseworker record,
    and a later review's record names the one before it; the log verifies."""
    path = tmp_path / f"q{len(list(tmp_path.iterdir()))}.db"
    shutil.copy(template, path)
    with open_store(str(path)) as store:
        for op in ops:
            try:
                _apply(store, op)
            except queue_api.QueueError as exc:
                assert exc.code and str(exc)
        items = list_items(store)
        reviews: dict = {}
        for item in items:
            assert (item.assignee is None) == (item.status == "open") or item.status == "decided"
            if item.kind == "review" and item.status in queue_api.OPEN_STATUSES:
                reviews.setdefault(json.dumps(item.case_id), []).append(item.id)
        assert all(len(ids) == 1 for ids in reviews.values()), reviews
        humans = [r for r in store.records() if r.kind == "human"]
        closes = [json.loads(r.decision)["closes"]["work_item"] for r in humans]
        assert sorted(closes) == sorted(i.id for i in items if i.status == "decided")
        for record in humans:
            body = json.loads(record.decision)
            if "review" in body:  # of the case's current decision when it was decided, and compared with it
                deciding = [r for r in store.records(body["case_id"])  # one chain here: seq is the order
                            if r.kind in ("decision", "referral", "human") and r.seq < record.seq]
                of = store.record(body["review"]["of_record"])
                assert of is not None and of.kind in ("decision", "human")
                was = json.loads(of.decision)
                assert body["review"]["confirms"] == (was.get("outcome") == body["outcome"]
                                                      and (was.get("values") or {}) == body["values"])
                assert deciding and deciding[-1].seq == of.seq
                earlier = [i for i in items if i.kind == "review" and i.case_id == body["case_id"]
                           and i.id < body["closes"]["work_item"]]
                follows = body["review"].get("follows")
                assert (follows["work_item"] if follows else None) == (earlier[-1].id if earlier else None)
        assert verify(store).ok
