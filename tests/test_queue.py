"""The caseworkers' queue on both stores: the whole lifecycle through the CLI, refusals, races."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from vedtak.audit import AuditLog, open_store
from vedtak.audit.verify import verify
from vedtak.cli.main import main
from vedtak.audit.queue import list_items
from vedtak.audit.replay import replay

from audit_support import fresh_url
from workload import generate


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path, study_plan):
    url = fresh_url(request.param, tmp_path)
    with AuditLog.open(url) as log:
        list(log.decide_many(study_plan, generate(60, seed=8) + [{"case_id": 999, "age": "x"}]))
    return url


def _items(url, **kw):
    with open_store(url) as store:
        return list_items(store, **kw)


def test_every_referral_and_rejection_opens_a_work_item(db, study_plan):
    cases = generate(60, seed=8)
    referred = [c["case_id"] for c in cases if study_plan.decide(c).status == "referred"]
    items = _items(db)
    assert sorted(i.case_id for i in items if i.reason_code != "invalid-input") == sorted(referred)
    (rejected,) = [i for i in items if i.reason_code == "invalid-input"]
    assert (rejected.case_id, rejected.queue, rejected.status) == (999, "review", "open")
    assert all(i.status == "open" and i.record_seq for i in items)


def test_the_lifecycle_list_show_claim_decide_and_the_history(db):
    item = _items(db, queue="general")[0]
    listed = run("queue", "list", db, "--queue", "general", "--json")
    assert listed.exit_code == 0 and json.loads(listed.output)[0]["id"] == item.id
    shown = run("queue", "show", db, item.id)
    assert shown.exit_code == 0
    assert shown.output.splitlines()[0] == f"Work item {item.id} (referral) in queue general: open"
    assert "Explanation (record" in shown.output and "  Trace:" in shown.output
    assert run("queue", "claim", db, item.id, "--by", "kari").output == f"work item {item.id} claimed by kari\n"
    decided = run("queue", "decide", db, item.id, "--outcome", "grant", "--value", "amount=19500",
                  "--by", "kari", "--reason", "The load is documented as full time")
    assert decided.exit_code == 0, decided.output
    assert decided.output.startswith(f"work item {item.id} decided: grant (audit record ")
    history = run("audit", "show", db, str(item.case_id)).output
    assert "Caseworker decision by kari" in history and f"Closes work item {item.id}" in history
    assert "  Reason: The load is documented as full time" in history
    with open_store(db) as store:
        assert verify(store).ok
        human = [r for r in store.records(item.case_id) if r.kind == "human"]
        body = json.loads(human[0].decision)
        assert (body["outcome"], body["values"], body["decided_by"], body["closes"]["work_item"]) == (
            "grant", {"amount": 19500}, "kari", item.id)
        report = replay(store)
    assert report.ok and report.skipped_human == 1
    assert [i.status for i in _items(db) if i.id == item.id] == ["decided"]


@pytest.mark.parametrize("args,message", [
    (["--outcome", "grnat"], 'refused: outcome "grnat" is not one of the ruleset\'s outcomes: deny, grant\n'),
    (["--outcome", "grant", "--value", "amount=abc"], 'refused: value amount: "abc" is not a whole number\n'),
    (["--outcome", "grant"], 'refused: outcome "grant" needs a value for amount (--value amount=...)\n'),
    (["--outcome", "deny", "--value", "amount=1"],
     'refused: "amount" is not a value of outcome "deny" (it has no values)\n'),
])
def test_a_wrong_decision_is_refused_with_a_clear_message(db, args, message):
    item = _items(db, queue="general")[0]
    r = run("queue", "decide", db, item.id, *args, "--by", "kari", "--reason", "x")
    assert r.exit_code == 1
    assert r.output == message


def test_a_second_decision_and_an_unknown_item_are_refused(db):
    item = _items(db, queue="general")[0]
    first = run("queue", "decide", db, item.id, "--outcome", "deny", "--by", "kari", "--reason", "x")
    assert first.exit_code == 0
    again = run("queue", "decide", db, item.id, "--outcome", "deny", "--by", "ola", "--reason", "y")
    assert again.exit_code == 1 and "already decided (record" in again.output
    assert run("queue", "claim", db, 4242, "--by", "kari").exit_code == 1
    assert "there is no work item 4242" in run("queue", "show", db, 4242).output


def test_someone_elses_claim_is_respected(db):
    item = _items(db, queue="general")[0]
    run("queue", "claim", db, item.id, "--by", "kari")
    r = run("queue", "claim", db, item.id, "--by", "ola")
    assert r.exit_code == 1 and f"work item {item.id} is already claimed by kari" in r.output
    r = run("queue", "decide", db, item.id, "--outcome", "deny", "--by", "ola", "--reason", "x")
    assert r.exit_code == 1 and "is claimed by kari, not ola" in r.output


def test_two_caseworkers_claiming_at_once_one_wins(db):
    """Two processes claim the same item at the same moment, eight times over: always one winner."""
    items = _items(db)[:8]
    code = ("import sys; from click.testing import CliRunner; from vedtak.cli.main import main; "
            "r = CliRunner().invoke(main, ['queue', 'claim', sys.argv[1], sys.argv[2], '--by', sys.argv[3]]); "
            "print(r.output.strip()); sys.exit(r.exit_code)")
    for item in items:
        procs = [subprocess.Popen([sys.executable, "-c", code, db, str(item.id), who], stdout=subprocess.PIPE,
                                  text=True) for who in ("kari", "ola")]
        results = [(p.wait(timeout=60), p.stdout.read()) for p in procs]
        assert sorted(rc for rc, _ in results) == [0, 1], results
        winner = [out for rc, out in results if rc == 0][0].split()[-1]
        (after,) = [i for i in _items(db) if i.id == item.id]
        assert (after.status, after.assignee) == ("claimed", winner)


def test_a_human_review_confirms_or_overrides_an_automated_decision(db, study_plan):
    cases = generate(60, seed=8)
    granted = [c for c in cases if study_plan.decide(c).outcome == "grant"][:2]
    for case, outcome, values in ((granted[0], "grant", None), (granted[1], "deny", [])):
        r = run("queue", "review", db, case["case_id"], "--by", "kari", "--reason", "The applicant disputes it")
        assert r.exit_code == 0, r.output
        item_id = int(r.output.split()[2])
        amount = study_plan.decide(case).values.get("amount")
        extra = ["--value", f"amount={amount}"] if outcome == "grant" else []
        d = run("queue", "decide", db, item_id, "--outcome", outcome, *extra, "--by", "per", "--reason", "Checked")
        assert d.exit_code == 0, d.output
        history = run("audit", "show", db, str(case["case_id"])).output
        assert ("confirms the automated decision" if outcome == "grant" else "overrides it") in history
    assert run("queue", "review", db, "no-such-case", "--by", "k", "--reason", "r").exit_code == 1
    with open_store(db) as store:
        assert verify(store).ok and replay(store).ok
