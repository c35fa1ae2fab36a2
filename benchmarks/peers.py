"""The study-grant workload written for the peer engines: durable-rules used directly and zen-engine.

Each ``make_*`` returns a function from a raw case to (outcome, reason, amount), the
workload's terms, so every engine can be checked against the others case by case. Each engine
is built once, outside any timed loop: one durable-rules ruleset and session, one zen-engine
graph compiled once.
"""

from __future__ import annotations

import itertools
import math
import uuid

from workload import (BASE_MONTHLY, INCOME_LIMIT, LATE_DEADLINE, MAX_AGE, MAX_MONTHS, MIN_AGE, PARENTAL_AGE,
                      PARENTS_INCOME_LIMIT, REDUCTION_RATE, SCHEME_START, STUDY_LOAD_FULL, STUDY_LOAD_MAX,
                      STUDY_LOAD_MIN, WEALTH_INCOME_RATE, WEALTH_LIMIT)

RULES = [  # (reason, outcome) in priority order; R13 is the default
    ("NOT_RESIDENT", "deny"), ("BEFORE_SCHEME_START", "deny"), ("AGE_OUT_OF_RANGE", "deny"),
    ("NOT_ENROLLED", "deny"), ("PRIOR_DEFAULT", "refer"), ("STUDY_LOAD_TOO_LOW", "deny"),
    ("STUDY_LOAD_BORDERLINE", "refer"), ("WEALTH_OVER_LIMIT", "deny"), ("PARENTAL_INCOME_OVER_LIMIT", "deny"),
    ("LATE_APPLICATION", "refer"), ("NO_ENTITLEMENT", "deny"), ("GRANT", "grant"), ("NO_RULE_MATCHED", "refer"),
]


def _monthly(c: dict) -> float:
    total = c["income"] + c["wealth"] * WEALTH_INCOME_RATE
    excess = max(0, total - INCOME_LIMIT)
    return max(0, BASE_MONTHLY * c["study_load_pct"] / 100 - REDUCTION_RATE * excess)


def _action(i: int):
    def action(c):  # one parameter: durable-rules treats a two-parameter action as asynchronous
        c.s.rule = i
        c.s.event = c.m.id  # which event this result answers: the session outlives each event
    action.__name__ = f"r{i}"
    return action


def make_durable():
    """durable-rules' own API: one rule per row, by priority; derived values computed before posting,
    since durable-rules allows arithmetic on one side of a comparison only."""
    from durable.lang import m, post, pri, ruleset, when_all

    name = f"peer-study-grant-{uuid.uuid4().hex[:8]}"
    conditions = [
        m.resident == False,  # noqa: E712
        m.application_date < SCHEME_START,
        (m.age < MIN_AGE) | (m.age > MAX_AGE),
        (m.enrolled == False) | (m.months_enrolled <= 0),  # noqa: E712
        m.has_prior_default == True,  # noqa: E712
        m.study_load_pct < STUDY_LOAD_MIN,
        m.study_load_pct < STUDY_LOAD_FULL,
        m.wealth > WEALTH_LIMIT,
        (m.lives_with_parents == True) & (m.age < PARENTAL_AGE) & (m.parents_income > PARENTS_INCOME_LIMIT),  # noqa
        m.application_date > LATE_DEADLINE,
        m.monthly_grant == 0,
        (m.study_load_pct <= STUDY_LOAD_MAX) & (m.months_enrolled <= MAX_MONTHS),
        m.peer_event == 1,
    ]
    with ruleset(name):
        for i, cond in enumerate(conditions):
            when_all(pri(i + 1), cond)(_action(i))
    ids = itertools.count()
    sid = "peer"  # one session for every event: events are consumed, so nothing accumulates in it

    def decide(case: dict):
        event = dict(case, peer_event=1, monthly_grant=_monthly(case), sid=sid)
        for _ in range(3):  # durable-rules drops a few events in 10 000 (no action runs): post again
            event["id"] = f"e{next(ids)}"
            state = post(name, event)
            if state and state.get("event") == event["id"]:
                break
            decide.dropped += 1
        else:
            raise RuntimeError(f"durable-rules dropped event {event['id']} three times")
        reason, outcome = RULES[state["rule"]]
        amount = math.floor(event["monthly_grant"] * case["months_enrolled"]) if outcome == "grant" else 0
        return outcome, reason, amount

    decide.dropped = 0
    return decide


def zen_graph() -> dict:
    """A JDM decision graph: an expression node for the derived values, a first-hit decision table."""
    exprs = [
        ("total_income", f"income + wealth * {WEALTH_INCOME_RATE}"),
        ("excess", f"max([0, $.total_income - {INCOME_LIMIT}])"),
        ("monthly_grant", f"max([0, {BASE_MONTHLY} * study_load_pct / 100 - {REDUCTION_RATE} * $.excess])"),
        ("before_start", f"date(application_date) < date('{SCHEME_START}')"),
        ("late", f"date(application_date) > date('{LATE_DEADLINE}')"),
    ]
    cols = ["resident", "before_start", "age", "enrolled", "months_enrolled", "has_prior_default",
            "study_load_pct", "wealth", "lives_with_parents", "parents_income", "late", "monthly_grant"]
    rows = [
        ("NOT_RESIDENT", "deny", {"resident": "false"}),
        ("BEFORE_SCHEME_START", "deny", {"before_start": "true"}),
        ("AGE_OUT_OF_RANGE", "deny", {"age": f"< {MIN_AGE}"}),
        ("AGE_OUT_OF_RANGE", "deny", {"age": f"> {MAX_AGE}"}),
        ("NOT_ENROLLED", "deny", {"enrolled": "false"}),
        ("NOT_ENROLLED", "deny", {"months_enrolled": "<= 0"}),
        ("PRIOR_DEFAULT", "refer", {"has_prior_default": "true"}),
        ("STUDY_LOAD_TOO_LOW", "deny", {"study_load_pct": f"< {STUDY_LOAD_MIN}"}),
        ("STUDY_LOAD_BORDERLINE", "refer", {"study_load_pct": f"< {STUDY_LOAD_FULL}"}),
        ("WEALTH_OVER_LIMIT", "deny", {"wealth": f"> {WEALTH_LIMIT}"}),
        ("PARENTAL_INCOME_OVER_LIMIT", "deny", {"lives_with_parents": "true", "age": f"< {PARENTAL_AGE}",
                                                 "parents_income": f"> {PARENTS_INCOME_LIMIT}"}),
        ("LATE_APPLICATION", "refer", {"late": "true"}),
        ("NO_ENTITLEMENT", "deny", {"monthly_grant": "0"}),
        ("GRANT", "grant", {"study_load_pct": f"<= {STUDY_LOAD_MAX}", "months_enrolled": f"<= {MAX_MONTHS}"}),
        ("NO_RULE_MATCHED", "refer", {}),
    ]
    table_rules = []
    for i, (reason, outcome, cells) in enumerate(rows):
        rule = {"_id": f"r{i}", "o1": f"'{outcome}'", "o2": f"'{reason}'",
                "o3": "floor(monthly_grant * months_enrolled)" if outcome == "grant" else "0"}
        rule.update({f"c{j}": cells.get(col, "") for j, col in enumerate(cols)})
        table_rules.append(rule)
    pos = {"x": 0, "y": 0}
    return {
        "nodes": [
            {"id": "in", "type": "inputNode", "name": "request", "position": pos},
            {"id": "derive", "type": "expressionNode", "name": "derive", "position": pos,
             "content": {"passThrough": True, "inputField": None, "outputPath": None, "executionMode": "single",
                         "expressions": [{"id": f"x{i}", "key": k, "value": v} for i, (k, v) in enumerate(exprs)]}},
            {"id": "rules", "type": "decisionTableNode", "name": "rules", "position": pos,
             "content": {"hitPolicy": "first", "passThrough": False, "inputField": None, "outputPath": None,
                         "executionMode": "single",
                         "inputs": [{"id": f"c{j}", "name": col, "field": col} for j, col in enumerate(cols)],
                         "outputs": [{"id": "o1", "name": "outcome", "field": "outcome"},
                                     {"id": "o2", "name": "reason", "field": "reason"},
                                     {"id": "o3", "name": "amount", "field": "amount"}],
                         "rules": table_rules}},
            {"id": "out", "type": "outputNode", "name": "response", "position": pos},
        ],
        "edges": [{"id": "e1", "sourceId": "in", "targetId": "derive", "type": "edge"},
                  {"id": "e2", "sourceId": "derive", "targetId": "rules", "type": "edge"},
                  {"id": "e3", "sourceId": "rules", "targetId": "out", "type": "edge"}],
    }


ZEN_KEY = "study-grant"


def zen_engine():
    """A zen-engine whose static loader holds the parsed graph: the decision is compiled once
    and looked up by ``ZEN_KEY`` on every evaluate.

    A loader *callback* (``ZenEngine({"loader": lambda key: text})``) is called on every evaluate
    in zen-engine 2.1.3 and its JSON text parsed and compiled each time (about 9 times slower);
    ``create_decision(...).evaluate`` was slower still in 2.1.3.
    """
    import zen
    return zen.ZenEngine({"loader": {"type": "static", "content": {ZEN_KEY: zen_graph()}}})


def zen_terms(response: dict) -> tuple[str, str, int]:
    """The workload's terms from a zen-engine evaluate response."""
    r = response["result"]
    return r["outcome"], r["reason"], int(r["amount"])


def make_zen():
    """zen-engine's ZenEngine.evaluate on the graph compiled once (see ``zen_engine``)."""
    evaluate = zen_engine().evaluate

    def decide(case: dict):
        return zen_terms(evaluate(ZEN_KEY, case))

    return decide


def make_zen_reloading():
    """The form this benchmark used before: a loader callback returning the graph's JSON text,
    which zen-engine 2.1.3 calls, parses and compiles on every evaluate. ``decide.loads`` counts
    the callback's calls."""
    import json

    import zen
    text = json.dumps(zen_graph())

    def loader(key: str) -> str:
        decide.loads += 1
        return text

    evaluate = zen.ZenEngine({"loader": loader}).evaluate

    def decide(case: dict):
        return zen_terms(evaluate(ZEN_KEY, case))

    decide.loads = 0
    return decide
