"""docs/rulesets.md cannot drift from the code: every YAML block in it is loaded, checked and run."""

from __future__ import annotations

import ast
import re
from collections import defaultdict

import pytest

import vedtak
from vedtak.language.check import lint
from vedtak.evaluation.examples import run_examples

from conftest import ROOT

DOC_PATH = ROOT / "docs" / "rulesets.md"
DOC = DOC_PATH.read_text(encoding="utf-8")

# a fenced yaml block, with the HTML comment right before it (if any)
_BLOCK = re.compile(r"(?:<!--\s*(?P<mark>[^>]*?)\s*-->\n)?```yaml\n(?P<body>.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    return [(m.group("mark") or "", m.group("body")) for m in _BLOCK.finditer(DOC)]


def _examples() -> dict[str, list[tuple[str, str]]]:
    """Marked example rulesets: name -> [(file name, text)]; ``NAME/FILE.yaml`` marks one file of a directory."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for mark, body in _blocks():
        if mark.startswith("example:") and not _is_overlay(body):
            name = mark.split(":", 1)[1].strip()
            ruleset, _, file = name.partition("/")
            out[ruleset].append((file or f"{ruleset}.yaml", body))
    return dict(out)


def _is_overlay(body: str) -> bool:
    """An overlay's block (top-level `extends:`) is loaded with its base, in its own test below."""
    return re.search(r"^extends:", body, re.M) is not None


EXAMPLES = _examples()
ERRORS = [(mark.split(":", 1)[1].split(), body) for mark, body in _blocks() if mark.startswith("error:")]


def test_every_yaml_block_is_marked_as_an_example_or_an_error():
    """Each ```yaml block in docs/rulesets.md carries an `example:` or `error:` marker, so a test runs it."""
    blocks = _blocks()
    assert len(blocks) >= 8
    unmarked = [body.splitlines()[0] for mark, body in blocks if not mark.startswith(("example:", "error:"))]
    assert unmarked == []
    assert len(re.findall(r"^```yaml$", DOC, flags=re.M)) == len(blocks)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_documented_ruleset_loads_lints_clean_and_its_examples_pass(name, tmp_path):
    """A documented ruleset loads (each file of a directory), has no lint finding, and every example passes."""
    folder = tmp_path / name
    folder.mkdir()
    for file, text in EXAMPLES[name]:
        (folder / file).write_text(text, encoding="utf-8")
    path = folder if len(EXAMPLES[name]) > 1 else folder / EXAMPLES[name][0][0]
    ruleset = vedtak.load(path)
    assert ruleset.id == name
    assert [d.format() for d in lint(ruleset)] == []
    results = run_examples(vedtak.compile(ruleset))
    assert results, f"{name} has no examples"
    failures = [(r.example.name, r.mismatches) for r in results if not r.passed]
    assert failures == []


@pytest.mark.parametrize("wanted,text", ERRORS, ids=[w[0] for w, _ in ERRORS])
def test_documented_error_is_reported_with_its_code_and_location(wanted, text):
    """A documented broken ruleset fails to load with exactly the code and line:column its marker states."""
    code, location = wanted
    with pytest.raises(vedtak.RulesetError) as info:
        vedtak.load_text(text, "broken.yaml")
    assert [(d.code, f"{d.line}:{d.column}") for d in info.value.diagnostics] == [(code, location)]


def test_docs_name_every_function_field_type_rounding_mode_and_expect_key():
    """The reference lists every function, field type, rounding mode, expect key and top-level key the code has."""
    from vedtak.language.expr import FUNCTIONS
    from vedtak.language.model import FIELD_TYPES, Expect, RulesetModel
    from vedtak.evaluation.runtime import ROUNDING_MODES
    names = ([f"`{f}(" for f in FUNCTIONS] + [f"| `{t}` |" for t in FIELD_TYPES]
             + [f"| `{m}` |" for m in ROUNDING_MODES] + [f"| `{k}` |" for k in Expect.model_fields]
             + [f"| `{k}` |" for k in RulesetModel.model_fields])
    missing = [n for n in names if n not in DOC]
    assert missing == []


def _diagnostic_codes() -> set[str]:
    """The codes passed to every diagnostic constructor in engine/: ``Source.diag``, the expression
    checker's ``error``, ``Diagnostic(...)`` and the YAML loader's problem tuples."""
    codes: set[str] = set()
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            arg = None
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in ("diag", "error") and len(node.args) >= 2:
                    arg = node.args[1]
                elif name == "Diagnostic" and len(node.args) >= 4:
                    arg = node.args[3]
            elif isinstance(node, ast.Tuple) and len(node.elts) in (3, 4) and not isinstance(node.elts[0], ast.Constant) \
                    and isinstance(node.elts[1], ast.Constant) \
                    and isinstance(node.elts[1].value, str) and re.fullmatch(r"[a-z]+_[a-z_]+", node.elts[1].value):
                arg = node.elts[1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                codes.add(arg.value)
            elif isinstance(arg, ast.JoinedStr):  # f"bad_{attr}" for decision_date and case_id
                codes |= {"bad_decision_date", "bad_case_id"}
    return {c for c in codes if re.fullmatch(r"[a-z]+(_[a-z]+)*", c)}


def test_docs_list_every_loader_and_checker_error_code():
    """Every diagnostic code that engine/ can raise for a ruleset appears in the error-code table."""
    codes = _diagnostic_codes()
    assert {"unknown_name", "unknown_key", "duplicate_key", "yaml_syntax", "bad_case_id"} <= codes
    missing = sorted(c for c in codes if f"`{c}`" not in DOC)
    assert missing == []


def _section(title: str) -> str:
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end]


def test_docs_list_every_case_error_code():
    """Every rejection code that engine/ gives a case (CaseError) is in the "Case input" table."""
    codes = set()
    for path in (ROOT / "engine").rglob("*.py"):
        codes |= set(re.findall(r'CaseError\([^,()]+,\s*"([a-z_]+)"', path.read_text(encoding="utf-8")))
    assert {"wrong_type", "missing_field", "no_version", "malformed_input"} <= codes
    table = _section("Case input")
    assert sorted(c for c in codes if f"| `{c}` |" not in table) == []


def test_docs_decision_json_table_names_every_key(study_plan):
    """The "Decision JSON" table names every key a decided, referred, rejected or traced decision has."""
    from test_cases import GOOD
    decisions = [study_plan.decide(dict(GOOD)), study_plan.decide(dict(GOOD, has_prior_default=True)),
                 study_plan.decide(dict(GOOD, income="a lot"))]
    keys = set().union(*(d.to_dict(trace=True) for d in decisions))
    table = _section("Decision JSON")
    assert sorted(k for k in keys if f"`{k}`" not in table) == []


OVERLAYS = [(mark.split(":", 1)[1].strip(), body) for mark, body in _blocks()
            if mark.startswith("example:") and _is_overlay(body)]


@pytest.mark.parametrize("name,text", OVERLAYS, ids=[n for n, _ in OVERLAYS])
def test_documented_overlay_loads_over_its_documented_base_lints_clean_and_its_examples_pass(name, text, tmp_path):
    """An overlay block (`example: NAME/overlay.yaml`) is written beside the documented ruleset it
    extends (`extends: ../BASE`); it loads as that ruleset, has no lint finding, and its examples pass."""
    base = re.search(r"^extends:\s*\.\./([\w.-]+)", text, re.M).group(1)
    for file, body in EXAMPLES[base]:
        (tmp_path / base).mkdir(exist_ok=True)
        (tmp_path / base / (file if len(EXAMPLES[base]) > 1 else f"{base}.yaml")).write_text(body, encoding="utf-8")
    folder, _, file = name.partition("/")
    (tmp_path / folder).mkdir()
    (tmp_path / folder / file).write_text(text, encoding="utf-8")
    ruleset = vedtak.load(tmp_path / folder)
    assert ruleset.id == base and all(v.overlay is not None for v in ruleset.versions)
    assert [d.format() for d in lint(ruleset)] == []
    results = run_examples(vedtak.compile(ruleset))
    assert results and [(r.example.name, r.mismatches) for r in results if not r.passed] == []
