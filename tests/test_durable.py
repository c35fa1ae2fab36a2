"""The durable-rules backend: the same decisions as the compiled evaluator, and its guards."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.cli.main import main
from vedtak.evaluation.durable import DurableError, DurablePlan
from vedtak.evaluation.examples import run_examples

from conftest import CHILD_BENEFIT
from strategies import cases

ROOT = Path(__file__).resolve().parent.parent
RULESETS = sorted(p for p in (ROOT / "rulesets").iterdir() if p.is_dir()) + [CHILD_BENEFIT]
PAIRS = {p.name: (vedtak.compile(p), DurablePlan(vedtak.load(p))) for p in RULESETS}


def _versions():
    for name, (plan, _) in PAIRS.items():
        for vp in plan.versions:
            yield pytest.param(name, vp.version, id=f"{name}:{vp.version.version}")


@pytest.mark.parametrize("name,version", list(_versions()))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_both_backends_give_identical_decisions(name, version, data):
    """Differential: outcome, rule, values, reasons — the whole decision JSON — are the same."""
    compiled, durable = PAIRS[name]
    case = data.draw(cases(version))
    a, b = compiled.decide(case), durable.decide(case)
    if b.referral_reason == "evaluation-error" and "binary floats" in str(b.detail):
        return  # durable-rules cannot compare this decimal exactly; it says so rather than guess
    assert b.to_json() == a.to_json()


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_every_example_agrees(name):
    compiled, durable = PAIRS[name]
    for result in run_examples(compiled):
        case = dict(result.example.case)
        assert durable.decide(case).to_json() == compiled.decide(case).to_json(), result.example.name


def test_a_decimal_that_floats_would_compare_wrongly_is_referred(tmp_path):
    """0.1 + 0.2 is not 0.3 in binary floats: durable-rules would misjudge `x == 0.3`."""
    (tmp_path / "r.yaml").write_text("""\
ruleset: exact
title: Exact
version: "1"
valid: {from: 2025-01-01}
decision_date: day
case_id: id
automate: [yes]
case: {id: string, day: date, a: decimal, b: decimal}
derive:
  total: a + b
rules:
  - {id: exact, basis: x, when: total == 0.3, decide: yes, because: x}
otherwise: {refer: general, because: x}
""")
    case = {"id": "X", "day": "2025-02-01", "a": "0.1", "b": "0.2"}
    assert vedtak.compile(tmp_path / "r.yaml").decide(case).outcome == "yes"
    d = DurablePlan(vedtak.load(tmp_path / "r.yaml")).decide(case)
    assert (d.status, d.referral_reason, d.rule) == ("referred", "evaluation-error", "exact")
    assert "binary floats" in d.reasons[0]


def test_a_comparison_of_two_constants_cannot_be_translated_and_says_where(tmp_path):
    (tmp_path / "c.yaml").write_text("""\
ruleset: const
title: Const
version: "1"
valid: {from: 2025-01-01}
decision_date: day
case_id: id
automate: [yes]
case: {id: string, day: date}
parameters:
  LIMIT: {values: {2025-01-01: 10}}
rules:
  - id: always
    basis: x
    when: LIMIT > 5
    decide: yes
    because: x
otherwise: {refer: general, because: x}
""")
    with pytest.raises(vedtak.RulesetError) as info:
        DurablePlan(vedtak.load(tmp_path / "c.yaml"))
    (d,) = info.value.diagnostics
    assert (d.code, d.line, d.column) == ("not_translatable", 14, 11)


def test_rulesets_loaded_twice_do_not_share_durable_rulesets():
    a, b = DurablePlan(vedtak.load(CHILD_BENEFIT)), DurablePlan(vedtak.load(CHILD_BENEFIT))
    assert set(a._names.values()).isdisjoint(b._names.values())


def test_an_exception_inside_an_action_is_surfaced(monkeypatch):
    _, durable = PAIRS["study-grant"]
    monkeypatch.setattr(durable._lang, "post", lambda name, event: {"exception": "exception caught boom"})
    from workload import generate
    with pytest.raises(DurableError, match="an action raised inside durable-rules"):
        durable.decide(generate(1)[0])


def test_a_runaway_call_is_bounded(monkeypatch):
    """A call into durable-rules that never answers is cut off by the timeout: the call is
    interrupted part-way (it never reaches its end), is not posted again, and the case fails
    with a clear DurableError. Measured in steps the runaway call took, not in seconds, so a
    loaded machine cannot break it."""
    _, durable = PAIRS["study-grant"]
    slow = DurablePlan(durable.ruleset, timeout=0.2)
    steps, calls, finished = [0], [0], [False]
    limit = 100_000  # 0.01 s a step: some 17 minutes if nothing cut the call off

    def runaway(name, event):
        calls[0] += 1
        while steps[0] < limit:
            steps[0] += 1
            time.sleep(0.01)
        finished[0] = True

    monkeypatch.setattr(slow._lang, "post", runaway)
    from workload import generate
    with pytest.raises(DurableError, match="did not answer within 0.2 s"):
        slow.decide(generate(1)[0])
    assert calls[0] == 1 and not finished[0]
    assert 0 < steps[0] < limit
    taken = steps[0]
    time.sleep(0.05)
    assert steps[0] == taken  # the call was stopped, not left running behind the error


def test_decide_with_the_durable_backend_gives_the_same_explained_decision():
    folder = ROOT / "rulesets" / "dagpenger"
    args = ["decide", str(folder), str(folder / "case-2025-05-01.json")]
    default = CliRunner().invoke(main, args)
    durable = CliRunner().invoke(main, args + ["--backend", "durable"])
    assert (default.exit_code, durable.exit_code) == (0, 0)
    assert durable.output == default.output
    as_json = CliRunner().invoke(main, args + ["--backend", "durable", "--json"])
    assert json.loads(as_json.output)["rule"] == "income-too-low"


def test_a_dropped_event_is_posted_again_under_a_new_id(monkeypatch):
    """durable-rules occasionally runs no action for an event; the backend retries, then gives up loudly."""
    compiled, durable = PAIRS["study-grant"]
    real, seen = durable._lang.post, []

    def flaky(name, event):
        seen.append(event["id"])
        return None if len(seen) == 1 else real(name, event)

    monkeypatch.setattr(durable._lang, "post", flaky)
    from workload import generate
    case = generate(1)[0]
    assert durable.decide(case).to_json() == compiled.decide(case).to_json()
    assert len(seen) == 2 and seen[0] != seen[1]
    monkeypatch.setattr(durable._lang, "post", lambda name, event: None)
    with pytest.raises(DurableError, match="dropped event"):
        durable.decide(case)
