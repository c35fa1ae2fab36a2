"""Overlays (engine/language/overlay.py): merging over every base version, checking like a ruleset, located
errors in the right one of two files, the SHA-256 over both sources, and rebuilding from the log's text."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vedtak
from vedtak.language.check import lint
from vedtak.language.load import load_sources
from vedtak.language.overlay import WhatIfError, bundle_text, parse_setting, what_if

from strategies import cases

BASE_2024 = """\
ruleset: allowance
title: Allowance (test)
version: "2024"
valid: {from: 2024-01-01, to: 2024-12-31}
decision_date: applied_on
case_id: ref
automate: [pay, deny]
case:
  ref: string
  applied_on: date
  income: {type: money, min: 0}
  resident: bool
  children: {type: int, min: 0, max: 20}
parameters:
  LIMIT: {unit: NOK, values: {2024-01-01: 300000}}
  RATE: {unit: NOK, values: {2024-01-01: 1000, 2024-07-01: 1100}}
derive:
  amount: RATE * children
rules:
  - id: not-resident
    basis: "§ 1"
    when: not resident
    decide: deny
    because: "Not resident."
  - id: income-too-high
    basis: "§ 2"
    when: income > LIMIT
    decide: deny
    because: "Income {income} is above {LIMIT}."
  - id: pay
    basis: "§ 3"
    when: children > 0
    decide: pay
    values: {total: amount}
    because: "{children} children at {RATE}: {total}."
otherwise: {refer: general, because: "No children."}
examples:
  - name: pays per child
    case: {ref: A, applied_on: 2024-03-01, income: 100000, resident: true, children: 2}
    expect: {status: decided, outcome: pay, values: {total: "2000"}}
"""

BASE_2025 = BASE_2024.replace('version: "2024"', 'version: "2025"').replace(
    "valid: {from: 2024-01-01, to: 2024-12-31}", "valid: {from: 2025-01-01}").replace(
    "LIMIT: {unit: NOK, values: {2024-01-01: 300000}}",
    "LIMIT: {unit: NOK, values: {2024-01-01: 320000}}\n  LARGE: {values: {2025-01-01: 5}}").replace(
    "  - id: pay\n", "  - id: large-family\n    basis: \"§ 2a\"\n    when: children >= LARGE\n    refer: general\n"
    "    because: \"{children} children: a caseworker decides.\"\n  - id: pay\n").replace(
    "applied_on: 2024-03-01", "applied_on: 2025-03-01")


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def base(tmp_path) -> Path:
    """A two-version base ruleset in tmp/allowance/."""
    write(tmp_path / "allowance", "2024.yaml", BASE_2024)
    write(tmp_path / "allowance", "2025.yaml", BASE_2025)
    return tmp_path / "allowance"


def overlay(tmp_path: Path, body: str, *, name: str = "reform", header: str | None = None) -> Path:
    head = header if header is not None else 'ruleset: allowance\nextends: ../allowance\nversion: "r1"\n'
    return write(tmp_path / name, "overlay.yaml", head + body)


def decide(plan, **case):
    raw = {"ref": "X", "applied_on": "2024-03-01", "income": 100000, "resident": True, "children": 2}
    raw.update(case)
    return plan.decide(raw)


def errors(path) -> list[tuple[str, str, int, int]]:
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load(path)
    return [(d.code, Path(d.file).name, d.line, d.column) for d in info.value.diagnostics]


# -- merging ------------------------------------------------------------------------------------

def test_a_parameter_is_replaced_in_every_base_version_that_has_it(base, tmp_path):
    """`parameters:` replaces LIMIT in both versions and LARGE in the one version that has it; each
    overlaid version is named base version + overlay version, and decides with the new values."""
    path = overlay(tmp_path, "parameters:\n  LIMIT: {unit: NOK, values: {2024-01-01: 50000}}\n"
                             "  LARGE: {values: {2025-01-01: 3}}\n")
    rs = vedtak.load(path)
    assert [v.version for v in rs.versions] == ["2024+r1", "2025+r1"]
    assert [v.parameters["LIMIT"].values for v in rs.versions] == [((vedtak.load(base).versions[0].model.valid.from_,
                                                                      Decimal(50000)),)] * 2
    assert "LARGE" not in rs.versions[0].parameters and rs.versions[1].parameters["LARGE"].values[0][1] == 3
    plan = vedtak.compile(rs)
    assert decide(plan, income=60000).rule == "income-too-high"
    assert decide(plan, applied_on="2025-02-01", children=3, income=1000).rule == "large-family"
    assert [v.overlay.parameters for v in rs.versions] == [("LIMIT",), ("LIMIT", "LARGE")]


def test_rules_are_replaced_inserted_and_removed_by_id_in_each_version(base, tmp_path):
    """`rules:` replaces a rule in place, inserts after and before a named rule (also after a rule the
    overlay itself inserts), and removes a rule in the versions that have it."""
    path = overlay(tmp_path, """\
rules:
  replace:
    - {id: income-too-high, basis: "§ 2 (new)", when: income > LIMIT, refer: general, because: "High income."}
  insert:
    - {after: not-resident, id: no-income, basis: "§ 1a", when: income == 0, refer: general, because: "No income."}
    - {after: no-income, id: huge-income, basis: "§ 1b", when: income > 10000000, decide: deny, because: "Huge."}
    - {before: pay, id: late, basis: "§ 4", when: 'applied_on > date("2025-06-30")', refer: general, because: "Late."}
  remove: [large-family]
""")
    rs = vedtak.load(path)
    ids = ["not-resident", "no-income", "huge-income", "income-too-high", "late", "pay", "otherwise"]
    assert [[r.id for r in v.rules] for v in rs.versions] == [ids, ids]
    info = rs.versions[1].overlay
    assert (info.replaced, info.removed) == (("income-too-high",), ("large-family",))
    assert info.inserted == (("no-income", "after", "not-resident"), ("huge-income", "after", "no-income"),
                             ("late", "before", "pay"))
    assert rs.versions[0].overlay.removed == ()
    plan = vedtak.compile(rs)
    assert (decide(plan, income=400000).status, decide(plan, income=400000).queue) == ("referred", "general")
    assert decide(plan, income=0).rule == "no-income"
    assert decide(plan, applied_on="2025-07-01", children=9).rule == "late"


def test_examples_are_kept_unless_the_overlay_gives_its_own(base, tmp_path):
    """Without `examples:` each version keeps its base's examples; with it, the overlay's replace them."""
    kept = vedtak.load(overlay(tmp_path, "title: Kept\n"))
    assert [[e.name for e in v.model.examples] for v in kept.versions] == [["pays per child"]] * 2
    assert kept.versions[0].model.title == "Kept"
    own = vedtak.load(overlay(tmp_path, """\
examples:
  - name: three children
    case: {ref: B, applied_on: 2024-03-01, income: 1, resident: true, children: 3}
    expect: {values: {total: "3000"}}
""", name="own"))
    assert [[e.name for e in v.model.examples] for v in own.versions] == [["three children"]] * 2


def test_an_overlay_may_extend_one_file_and_a_directory_may_hold_only_the_overlay(base, tmp_path):
    """`extends` may name one version's file; the overlaid ruleset then has that one version, named
    by the overlay's own version. A path given to load() may be the overlay file or its directory."""
    path = overlay(tmp_path, "", header='ruleset: allowance\nextends: ../allowance/2025.yaml\nversion: "r2"\n')
    for where in (path, path.parent):
        rs = vedtak.load(where)
        assert [v.version for v in rs.versions] == ["r2"]
        assert rs.versions[0].source.path == str(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_an_overlay_that_changes_nothing_decides_exactly_as_its_base(tmp_path_factory, data):
    """An overlay replacing a parameter by the same value gives, on generated cases, the base's
    decision in every key but the ruleset's version and SHA-256."""
    root = tmp_path_factory.mktemp("same")
    write(root / "allowance", "2024.yaml", BASE_2024)
    write(root / "allowance", "2025.yaml", BASE_2025)
    base = vedtak.compile(vedtak.load(root / "allowance"))
    same = vedtak.compile(vedtak.load(overlay(root, "parameters:\n  LIMIT: {unit: NOK, values: {2024-01-01: 300000}}\n"
                                                     "  RATE: {unit: NOK, values: {2024-01-01: 1000, 2024-07-01: 1100}}\n",
                                              header='ruleset: allowance\nextends: ../allowance/2024.yaml\n'
                                                     'version: "same"\n')))
    version = base.ruleset.versions[0]
    case = data.draw(cases(version))
    a, b = base.decide(dict(case)).to_dict(trace=True), same.decide(dict(case)).to_dict(trace=True)
    assert a.pop("ruleset")["id"] == b.pop("ruleset")["id"]
    assert a == b


def test_lint_names_an_overlay_that_changes_nothing_at_its_extends(base, tmp_path):
    """An overlay whose replacements equal the base's is the lint finding overlay_changes_nothing, at
    `extends` in the overlay file; one that changes a value is not."""
    path = overlay(tmp_path, "parameters:\n  LIMIT: {unit: NOK, values: {2024-01-01: 300000}, description: same}\n",
                   header='ruleset: allowance\nextends: ../allowance/2024.yaml\nversion: "same"\n')
    found = [(d.code, Path(d.file).name, d.line, d.column, d.severity) for d in lint(vedtak.load(path))]
    assert found == [("overlay_changes_nothing", "overlay.yaml", 2, 10, "warning")]
    changed = overlay(tmp_path, "parameters:\n  LIMIT: {unit: NOK, values: {2024-01-01: 1}}\n", name="changed")
    assert [d.code for d in lint(vedtak.load(changed))] == []


# -- the SHA-256 and the log's text ------------------------------------------------------------

def test_the_sha256_covers_the_base_and_the_overlay(base, tmp_path):
    """The overlaid version's SHA-256 is that of the bundle of both texts: changing either changes it."""
    path = overlay(tmp_path, "parameters:\n  LIMIT: {unit: NOK, values: {2024-01-01: 1}}\n")
    first = vedtak.load(path).versions[0]
    bundle = bundle_text(BASE_2024, path.read_text(), "2024+r1")
    assert first.source.text == bundle and first.sha256 == hashlib.sha256(bundle.encode()).hexdigest()
    assert json.loads(first.source.text)["base"] == BASE_2024
    path.write_text(path.read_text() + "# a comment\n")
    second = vedtak.load(path).versions[0]
    (base / "2024.yaml").write_text(BASE_2024 + "# a comment\n")
    third = vedtak.load(path).versions[0]
    assert len({first.sha256, second.sha256, third.sha256}) == 3


def test_the_stored_text_rebuilds_the_overlaid_version_and_its_decisions(base, tmp_path):
    """load_text of a version's stored text (the bundle) and load_sources of all of them give the
    same versions, SHA-256s and decisions, without reading the files again."""
    path = overlay(tmp_path, "parameters:\n  LIMIT: {unit: NOK, values: {2024-01-01: 1}}\n"
                             "rules:\n  remove: [large-family]\n")
    rs = vedtak.load(path)
    stored = [(v.source.path, v.source.text) for v in rs.versions]
    for child in base.iterdir():
        child.unlink()
    path.unlink()
    again = load_sources(stored, "allowance")
    single = [vedtak.load_text(text, p).versions[0] for p, text in stored]
    assert [v.sha256 for v in again.versions] == [v.sha256 for v in single] == [v.sha256 for v in rs.versions]
    assert [v.version for v in again.versions] == ["2024+r1", "2025+r1"]
    plans = [vedtak.compile(rs), vedtak.compile(again)]
    for case in ({"income": 5}, {"income": 0, "children": 0}, {"applied_on": "2025-05-05", "children": 7}):
        assert len({decide(p, **case).to_json() for p in plans}) == 1
    assert again.versions[1].overlay.removed == ("large-family",)


def test_an_overlay_of_an_overlay_stacks_and_rebuilds_from_its_text(base, tmp_path):
    """An overlay may extend another overlay; the outer bundle holds the inner one, and rebuilds."""
    overlay(tmp_path, "parameters:\n  LIMIT: {unit: NOK, values: {2024-01-01: 1}}\n")
    outer = overlay(tmp_path, "parameters:\n  RATE: {unit: NOK, values: {2024-01-01: 7}}\n", name="outer",
                    header='ruleset: allowance\nextends: ../reform\nversion: "r9"\n')
    rs = vedtak.load(outer)
    assert [v.version for v in rs.versions] == ["2024+r1+r9", "2025+r1+r9"]
    assert json.loads(json.loads(rs.versions[0].source.text)["base"])["base"] == BASE_2024
    rebuilt = vedtak.load_text(rs.versions[0].source.text, "x.yaml")
    assert rebuilt.versions[0].sha256 == rs.versions[0].sha256
    result = decide(vedtak.compile(rebuilt), income=0)
    assert (result.rule, result.values) == ("pay", {"total": 14})


# -- located errors -------------------------------------------------------------------------------

def test_a_rule_or_parameter_the_base_lacks_is_located_in_the_overlay(base, tmp_path):
    """unknown_rule (replace, remove, insert anchor) and unknown_parameter point at the name in the overlay."""
    path = overlay(tmp_path, """\
parameters:
  LIMT: {values: {2024-01-01: 1}}
rules:
  replace: [{id: pya, basis: b, when: "True", decide: pay, because: x}]
  insert: [{after: nobody, id: n, basis: b, when: "True", decide: pay, because: x}]
  remove: [gone]
""")
    assert errors(path) == [("unknown_parameter", "overlay.yaml", 5, 3), ("unknown_rule", "overlay.yaml", 7, 18),
                            ("unknown_rule", "overlay.yaml", 8, 20), ("unknown_rule", "overlay.yaml", 9, 12)]
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load(path)
    assert info.value.diagnostics[0].suggestion == "LIMIT" and info.value.diagnostics[1].suggestion == "pay"


def test_the_ruleset_id_unknown_and_missing_keys_and_a_missing_base_are_located(base, tmp_path):
    """A ruleset id other than the base's, an unknown key (with a did-you-mean), a missing version and
    an `extends` that names nothing are each an error in the overlay file."""
    wrong = overlay(tmp_path, "", header='ruleset: other\nextends: ../allowance\nversion: "r1"\n')
    assert errors(wrong) == [("mixed_rulesets", "overlay.yaml", 1, 10)]
    keys = overlay(tmp_path, "paramters: {}\nrules: {replace: [], delete: []}\n", name="keys",
                   header='ruleset: allowance\nextends: ../allowance\n')
    assert errors(keys) == [("missing_key", "overlay.yaml", 1, 1), ("unknown_key", "overlay.yaml", 3, 1),
                            ("unknown_key", "overlay.yaml", 4, 22)]
    missing = overlay(tmp_path, "", name="missing", header='ruleset: allowance\nextends: ../nowhere\nversion: "1"\n')
    assert errors(missing) == [("not_found", "overlay.yaml", 2, 10)]
    anchors = overlay(tmp_path, "rules:\n  insert: [{id: n, basis: b, when: 'True', decide: pay, because: x}]\n",
                      name="anchors")
    assert errors(anchors) == [("invalid_value", "overlay.yaml", 5, 12)]


def test_a_cycle_of_overlays_and_a_chain_too_deep_are_located(tmp_path):
    """Overlays that extend each other are overlay_cycle; a chain deeper than the limit is too_deep."""
    write(tmp_path / "allowance", "2024.yaml", BASE_2024)
    a = overlay(tmp_path, "", name="a", header='ruleset: allowance\nextends: ../b\nversion: "a"\n')
    overlay(tmp_path, "", name="b", header='ruleset: allowance\nextends: ../a\nversion: "b"\n')
    assert errors(a) == [("overlay_cycle", "overlay.yaml", 2, 10)]
    previous = "allowance"
    for i in range(10):
        overlay(tmp_path, "", name=f"o{i}", header=f'ruleset: allowance\nextends: ../{previous}\nversion: "{i}"\n')
        previous = f"o{i}"
    assert [e[0] for e in errors(tmp_path / previous)] == ["too_deep"]


def test_an_overlay_beside_another_ruleset_file_is_refused(base, tmp_path):
    """An overlay must be the only .yaml file of a directory loaded as a ruleset."""
    path = overlay(tmp_path, "")
    write(path.parent, "other.yaml", BASE_2024)
    assert errors(path.parent) == [("mixed_rulesets", "overlay.yaml", 2, 1)]


def test_errors_in_what_the_overlay_wrote_are_in_the_overlay_and_the_base_keeps_its_own(base, tmp_path):
    """A type error in a rule the overlay writes is located in the overlay file; a parameter whose
    new type breaks a base rule is located at that rule in the base file; an error in the base file
    itself is reported there."""
    bad_rule = overlay(tmp_path, "rules:\n  replace:\n    - id: pay\n      basis: b\n      when: incme > 0\n"
                                 "      decide: pay\n      because: \"{nope}\"\n")
    assert errors(bad_rule) == [("unknown_name", "overlay.yaml", 8, 13), ("unknown_name", "overlay.yaml", 10, 18)]
    bad_param = overlay(tmp_path, "parameters:\n  LIMIT: {values: {2024-01-01: 2024-05-01}}\n", name="param",
                        header='ruleset: allowance\nextends: ../allowance/2024.yaml\nversion: "p"\n')
    (code, file, line, _), = errors(bad_param)
    assert (code, file, BASE_2024.splitlines()[line - 1].strip()) == ("type_mismatch", "2024.yaml",
                                                                       "when: income > LIMIT")
    (base / "2025.yaml").write_text(BASE_2025.replace("when: children >= LARGE", "when: children >= LARGER"))
    line = next(i for i, text in enumerate(BASE_2025.splitlines(), 1) if "LARGE" in text and "when" in text)
    column = BASE_2025.splitlines()[line - 1].index("LARGE") + 1
    assert errors(overlay(tmp_path, "", name="fine")) == [("unknown_name", "2025.yaml", line, column)]


# -- what-if (replay --set) ---------------------------------------------------------------------

def test_what_if_replaces_a_parameter_for_all_dates_and_refuses_a_wrong_type(base):
    """what_if sets a parameter to one value from the version's first day; a value of another kind
    (text for a number) is a WhatIfError; parse_setting reads VALUE as a YAML scalar, exactly."""
    version = vedtak.load(base).versions[0]
    changed = what_if(version, {"RATE": Decimal("12.5")})
    assert changed.parameters["RATE"].values == ((version.model.valid.from_, Decimal("12.5")),)
    assert changed.version == "2024+what-if" and changed.parameters["LIMIT"] == version.parameters["LIMIT"]
    assert what_if(version, {"LARGE": 1}) is version
    with pytest.raises(WhatIfError, match="holds number values"):
        what_if(version, {"RATE": "a lot"})
    assert [parse_setting(s) for s in ("A=0.10", "B=7", "C=2025-01-01", "D=true", "E=x y")] == [
        ("A", Decimal("0.10")), ("B", 7), ("C", __import__("datetime").date(2025, 1, 1)), ("D", True), ("E", "x y")]
    for bad in ("A", "=1", "A=", "A=[1, 2]", "A={b: 1}"):
        with pytest.raises(WhatIfError):
            parse_setting(bad)


def test_a_stored_text_nesting_overlays_too_deep_is_refused_not_followed():
    """A bundle whose bases nest more than the overlay depth limit is a too_deep error, not a recursion."""
    text = BASE_2024
    for i in range(12):
        text = bundle_text(text, 'ruleset: allowance\nextends: x\nversion: "v"\n', f"v{i}")
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load_text(text, "deep.yaml")
    assert [d.code for d in info.value.diagnostics] == ["too_deep"]
