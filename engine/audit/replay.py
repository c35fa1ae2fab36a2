"""Replay: re-decide recorded cases from the log alone, and impact analysis of a rule change.

``replay(store)`` re-evaluates every recorded automated decision, referral and rejection
with the ruleset source stored in the log and the recorded input, and reports every
difference. ``replay(store, against=plan)`` decides the same inputs under another version of
the same ruleset and summarises what would change. In a log that holds several rulesets, a
replay against a plan (or scoped with ``ruleset_id``) takes only that ruleset's records; a
ruleset the log holds no record of is refused (:class:`ReplayScopeError`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from .record import AuditRecordV1, record_ref
from .store import AuditStore
from ..evaluation.compile import Plan
from ..evaluation.compile import compile as compile_plan
from ..evaluation.decision import canonical_json
from ..errors import RulesetError
from ..language.load import Ruleset, format_value, load_text

COMPARED = ("status", "outcome", "queue", "rule", "basis", "values", "reasons", "errors", "referral",
            "parameters", "ruleset", "decision_date", "case_id")
IMPACT_COMPARED = ("status", "outcome", "queue", "rule", "values")
BATCH_REJECTIONS = {"malformed_input", "duplicate_case_id", "already_decided"}


class ReplayScopeError(ValueError):
    """A replay asked for a ruleset id the log holds no record of (``wanted``; ``held``: the ids it holds)."""

    def __init__(self, message: str, wanted: str, held: list[str]):
        super().__init__(message)
        self.wanted = wanted
        self.held = held


@dataclass
class Difference:
    seq: int
    case_id: object
    changes: list[tuple[str, object, object]]  # (key, recorded, replayed)
    chain: str | None = None  # the partition chain holding the record, if not the main chain

    @property
    def ref(self) -> str:
        return record_ref(self.seq, self.chain)


@dataclass
class ReplayReport:
    replayed: int = 0
    skipped_human: int = 0
    skipped_manifests: int = 0
    skipped_batch_rejections: int = 0  # rejected by the batch, not the rules (all three below): nothing to re-decide
    skipped_unreadable: int = 0  # a line that held no case (malformed_input)
    skipped_repeated: int = 0  # a case id repeated within a run (duplicate_case_id)
    skipped_already_decided: int = 0  # a case decided earlier in the log, sent again (already_decided)
    skipped_other_rulesets: int = 0  # records of other rulesets than the one the replay is scoped to
    ruleset: str | None = None  # the ruleset id the replay is scoped to, if any
    differences: list[Difference] = field(default_factory=list)
    unreproducible: list[tuple] = field(default_factory=list)  # (seq, case id, why, chain or None)
    against: str | None = None
    transitions: Counter = field(default_factory=Counter)  # (old label, new label) -> count
    rule_changes: Counter = field(default_factory=Counter)  # (old rule, new rule) -> count
    value_deltas: dict = field(default_factory=dict)  # value name -> [count, total delta]
    what_if: dict = field(default_factory=dict)  # replay --set: parameter name -> the value it was given

    @property
    def ok(self) -> bool:
        return not self.differences and not self.unreproducible

    def to_dict(self) -> dict:
        data = {
            "replayed": self.replayed, "skipped_human": self.skipped_human,
            "skipped_batch_rejections": self.skipped_batch_rejections,
            "skipped_unreadable": self.skipped_unreadable, "skipped_repeated": self.skipped_repeated,
            "skipped_already_decided": self.skipped_already_decided,
            "skipped_other_rulesets": self.skipped_other_rulesets, "ruleset": self.ruleset,
            "differences": len(self.differences), "unreproducible": len(self.unreproducible),
            "changed": [{"seq": d.seq, "case_id": d.case_id, **({"chain": d.chain} if d.chain else {}),
                         "changes": [{"key": k, "recorded": a, "replayed": b} for k, a, b in d.changes]}
                        for d in self.differences],
            "not_reproducible": [{"seq": s, "case_id": c, "why": w, **({"chain": ch} if ch else {})}
                                 for s, c, w, ch in self.unreproducible],
        }
        if self.what_if:
            data["set"] = {k: format_value(v) for k, v in self.what_if.items()}
        if self.against is not None:
            data["against"] = self.against
            data["transitions"] = [{"from": a, "to": b, "count": n} for (a, b), n in sorted(self.transitions.items())]
            data["rules"] = [{"from": a, "to": b, "count": n} for (a, b), n in sorted(self.rule_changes.items())]
            data["value_deltas"] = {k: {"changed": n, "total_delta": str(t)} for k, (n, t) in
                                    sorted(self.value_deltas.items())}
        return json.loads(canonical_json(data))


def label(decision: dict) -> str:
    """A decision as one word for the impact table: decided:grant, referred:collections, rejected."""
    status = decision.get("status")
    if status == "decided":
        return f"decided:{decision.get('outcome')}"
    if status == "referred":
        proposed = f" ({decision['outcome']})" if decision.get("outcome") else ""
        return f"referred:{decision.get('queue')}{proposed}"
    return str(status)


class _Plans:
    """Compiled plans of the ruleset versions stored in the log, compiled once each."""

    def __init__(self, store: AuditStore):
        self.store = store
        self.cache: dict[str, Plan | str] = {}

    def get(self, sha: str) -> Plan | str:
        if sha not in self.cache:
            stored = self.store.ruleset(sha)
            if stored is None:
                self.cache[sha] = f"the ruleset {sha[:12]} is not stored in the log"
            else:
                try:
                    self.cache[sha] = compile_plan(load_text(stored.source, stored.path))
                except RulesetError as exc:
                    self.cache[sha] = f"the stored ruleset {stored.ruleset_id} {stored.version} no longer loads: " \
                                      f"{exc.diagnostics[0].format().splitlines()[0]}"
        return self.cache[sha]

    def what_if(self, settings: dict, scope: str | None) -> None:
        """Plans of every stored version (of ``scope``) with the ``settings`` parameters replaced in
        each that has them; raises WhatIfError for a name no stored version has, or a wrong value."""
        from ..language.overlay import WhatIfError, what_if
        names: set[str] = set()
        for stored in self.store.rulesets():
            if scope is not None and stored.ruleset_id != scope:
                continue
            try:
                version = load_text(stored.source, stored.path).latest
            except RulesetError:  # a record that needs it is reported as not reproducible
                continue
            names |= set(version.model.parameters)
            changed = what_if(version, settings)
            self.cache[stored.sha256] = compile_plan(Ruleset(changed.id, (changed,), stored.path))
        for name in settings:
            if name not in names:
                close = difflib.get_close_matches(name, sorted(names), n=1)
                raise WhatIfError(f"--set {name}: no ruleset stored in the log has a parameter {name}"
                                  + (f'; did you mean "{close[0]}"?' if close else ""))


def _number(value):
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def ruleset_ids(store: AuditStore) -> list[str]:
    """The ids of the rulesets stored in the log (every decided, referred or rejected case names one)."""
    return sorted({rs.ruleset_id for rs in store.rulesets()})


def _scope(store: AuditStore, against: Plan | None, ruleset_id: str | None) -> str | None:
    """The ruleset id a replay is limited to, checked against the ids the log holds."""
    if against is not None and ruleset_id is not None and against.id != ruleset_id:
        raise ReplayScopeError(f'--against gives ruleset "{against.id}", but the replay is limited to '
                               f'ruleset "{ruleset_id}"', against.id, [ruleset_id])
    wanted = against.id if against is not None else ruleset_id
    if wanted is None:
        return None
    held = ruleset_ids(store)
    if held and wanted not in held:
        names = ", ".join(f'"{h}"' for h in held)
        what = "--against gives" if against is not None else "--ruleset names"
        raise ReplayScopeError(
            f'{what} ruleset "{wanted}", but this log holds records of ruleset {names} only'
            + ("; replay --against compares decisions under another version of the same ruleset"
               if against is not None else ""), wanted, held)
    return wanted


def _ruleset_of(record: AuditRecordV1, recorded: dict) -> str | None:
    if record.ruleset_id is not None:
        return record.ruleset_id
    named = recorded.get("ruleset")
    return named.get("id") if isinstance(named, dict) else None


def replay(store: AuditStore, against: Plan | None = None, *, ruleset_id: str | None = None,
           settings: dict | None = None) -> ReplayReport:
    """Re-decide every recorded case (human decisions are verified by the chain, not re-evaluated).

    With ``against`` (a plan of the same ruleset id as the records) or ``ruleset_id``, only that
    ruleset's records are replayed; the others are counted in ``skipped_other_rulesets``.
    Raises :class:`ReplayScopeError` for a ruleset id the log holds no record of.

    With ``settings`` (parameter name -> value; ``replay --set``), a what-if: each stored version
    decides with those parameters replaced by one value for all dates, in every version that has
    them, and the report is an impact analysis as with ``against``. Raises
    :class:`~vedtak.language.overlay.WhatIfError` for a name no stored version has or a value of the wrong type.

    >>> replay(store, against=vedtak.compile("rulesets/study-grant"))   # doctest: +SKIP
    >>> replay(store, settings={"INCOME_LIMIT": 250000})                 # doctest: +SKIP
    """
    scope = _scope(store, against, ruleset_id)
    impact = against is not None or bool(settings)
    report = ReplayReport(against=None if against is None else
                          f"{against.id} " + ", ".join(v.version for v in against.ruleset.versions), ruleset=scope)
    plans = _Plans(store)
    if settings and against is None:
        plans.what_if(settings, scope)
        report.what_if = dict(settings)
        report.against = "the stored rulesets with " + ", ".join(f"{k}={format_value(v)}" for k, v in
                                                                   settings.items())
    for record in store.records():
        if record.kind not in ("human", "manifest") and getattr(record, "record_version", 1) == 2:
            problem = _released_problem(record)
            if problem is not None:  # the log's compact decision, rendered again, is not what was released
                if scope is None or record.ruleset_id == scope:
                    report.replayed += 1
                    report.differences.append(Difference(record.seq, record.case_id, [problem], record.chain))
                else:
                    report.skipped_other_rulesets += 1
                continue
        if scope is not None and record.kind != "manifest" \
                and _ruleset_of(record, json.loads(record.decision)) != scope:
            report.skipped_other_rulesets += 1
            continue
        if record.kind == "human":
            report.skipped_human += 1
            continue
        if record.kind == "manifest":  # a distributed run's commitment to its partition chains
            report.skipped_manifests += 1
            continue
        recorded = json.loads(record.decision)
        codes = {e.get("code") for e in recorded.get("errors") or []}
        if record.kind == "rejection" and codes and codes <= BATCH_REJECTIONS:
            # rejected by the batch, not by the rules: a line that held no case, or a case id seen
            # before in the run; the chain vouches for these records, there is nothing to re-decide
            report.skipped_batch_rejections += 1
            if "malformed_input" in codes:
                report.skipped_unreadable += 1
            elif "duplicate_case_id" in codes:
                report.skipped_repeated += 1
            else:
                report.skipped_already_decided += 1
            continue
        report.replayed += 1
        why = _unreproducible(record)
        if why is None and against is None:
            plan = plans.get(record.ruleset_sha256) if record.ruleset_sha256 else None
            if plan is None:
                why = "the record names no ruleset"
            elif isinstance(plan, str):
                why = plan
        if why is not None:
            report.unreproducible.append((record.seq, record.case_id, why, record.chain))
            continue
        raw = json.loads(record.input, parse_float=Decimal)
        plan = against if against is not None else plans.get(record.ruleset_sha256)  # type: ignore[arg-type]
        replayed = json.loads(plan.decide(raw).to_json())  # type: ignore[union-attr]
        keys = IMPACT_COMPARED if impact else COMPARED
        changes = [(k, recorded.get(k), replayed.get(k)) for k in keys if recorded.get(k) != replayed.get(k)]
        if changes:
            report.differences.append(Difference(record.seq, record.case_id, changes, record.chain))
        if impact:
            old, new = label(recorded), label(replayed)
            report.transitions[(old, new)] += 1
            if recorded.get("rule") != replayed.get("rule"):
                report.rule_changes[(recorded.get("rule"), replayed.get("rule"))] += 1
            for name in set(recorded.get("values") or {}) | set(replayed.get("values") or {}):
                a = _number((recorded.get("values") or {}).get(name))
                b = _number((replayed.get("values") or {}).get(name))
                if a != b:
                    count, total = report.value_deltas.get(name, (0, Decimal(0)))
                    report.value_deltas[name] = (count + 1, total + (b or 0) - (a or 0))
    return report


def _released_problem(record) -> tuple[str, object, object] | None:
    """For a version 2 record: why its decision JSON, rendered again from the stored input and
    ruleset source, is not the one released (a change as (key, recorded, replayed)), or None."""
    from .compact import NotRenderable
    try:
        text = record.rendered
    except NotRenderable as exc:
        return ("decision", "as the record's compact decision says", f"not reproduced: {exc}")
    if "p" in record.meta:  # masked: what was released held personal data the log does not keep
        return None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != record.released_sha256:
        return ("released_sha256", record.released_sha256, digest)
    return None


def _unreproducible(record: AuditRecordV1) -> str | None:
    if record.pii:
        info = json.loads(record.pii)
        verb = "pseudonymised" if info.get("mode") == "pseudonymise" else "dropped"
        fields, masked = info.get("fields") or [], info.get("masked") or []
        why = f"personal data was {verb} in the log" + (f" ({', '.join(fields)})" if fields else "")
        # masked parts (values or reasons that read personal data) are stored as [personal data]
        return why + (f"; the decision's {' and '.join(masked)} are stored masked" if masked else "")
    return None


def explain_record(store: AuditStore, record: AuditRecordV1) -> str:
    """A recorded decision explained: re-derived from the stored ruleset and input when that
    reproduces the record exactly, otherwise the recorded reasons with the cause."""
    recorded = json.loads(record.decision)
    if record.kind == "human":
        lines = [f"Caseworker decision by {recorded.get('decided_by')} at {recorded.get('decided_at')}: "
                 f"decided: {recorded.get('outcome')}"]
        closes = recorded.get("closes") or {}
        lines.append(f"Closes work item {closes.get('work_item')} (record {closes.get('record')})")
        review = recorded.get("review")
        if review:
            lines.append(f"Review of record {review['of_record']}: "
                         + ("confirms the automated decision" if review["confirms"] else "overrides it"
                            if review["confirms"] is not None else "confirms its outcome (its values are "
                            "kept masked in the log: whether they match is not known)"))
            follows = review.get("follows")
            if follows:
                lines.append(f"Follows the earlier review in work item {follows.get('work_item')} "
                             f"(decided in record {follows.get('record')})")
        lines.append(f"Reason: {recorded.get('reason')}")
        if recorded.get("values"):
            lines += ["Values:"] + [f"  {k} = {v}" for k, v in recorded["values"].items()]
        return "\n".join(lines)
    # a decision made again (run --redecide) names the record it supersedes; the rest is as decided
    supersedes = [recorded.pop(k, None) for k in ("supersedes", "supersedes_chain")]
    links = [f"Supersedes record {record_ref(*supersedes)}"] if supersedes[0] is not None else []
    links += [f"Superseded by record {ref}" for ref in superseded_by(store, record)]
    codes = {e.get("code") for e in recorded.get("errors") or [] if isinstance(e, dict)}
    if record.kind == "rejection" and codes and codes <= BATCH_REJECTIONS:
        # rejected by the batch, not by the rules (a line that held no case, a case id repeated in
        # the run, a case decided earlier): there is nothing to re-decide, so no replay to claim
        who = f"Case {record.case_id}: " if record.case_id is not None else ""
        lines = [f"{who}rejected: {e.get('code')}: {e.get('message')}" for e in recorded["errors"]]
        rs = recorded.get("ruleset")
        if isinstance(rs, dict):
            lines.append(f"Ruleset: {rs.get('id')} version {rs.get('version')} (sha256 {str(rs.get('sha256'))[:12]})")
        return "\n".join(lines + links)
    why = _unreproducible(record)
    if why is None and record.ruleset_sha256:
        plan = _Plans(store).get(record.ruleset_sha256)
        if isinstance(plan, str):
            why = plan
        else:
            decision = plan.decide(json.loads(record.input, parse_float=Decimal))
            if json.loads(decision.to_json()) == recorded:
                return "\n".join([decision.explain(), *links])
            why = "re-deciding it today gives a different result (see vedtak replay)"
    rule = recorded.get("rule")
    lines = [label(recorded) + (f"; rule {rule}" if rule is not None else "")
             + (f" ({recorded['basis']})" if recorded.get("basis") else "")]
    if recorded.get("errors"):
        lines += ["Errors:"] + [f"  {e.get('path') or 'case'}: {e.get('code')}: {e.get('message')}"
                                for e in recorded["errors"] if isinstance(e, dict)]
    lines += ["Reasons:"] + [f"  {r}" for r in recorded.get("reasons") or []]
    if recorded.get("values"):
        lines += ["Values:"] + [f"  {k} = {v}" for k, v in recorded["values"].items()]
    lines += links
    if why:
        lines.append(f"(shown as recorded; {why})")
    return "\n".join(lines)


def superseded_by(store: AuditStore, record: AuditRecordV1) -> list[str]:
    """The records that decided this record's case again (run --redecide), naming it as superseded."""
    if record.kind not in ("decision", "referral") or record.case_id is None:
        return []
    found = []
    for other in store.records(record.case_id):
        if other.kind not in ("decision", "referral") or (other.seq, other.chain) == (record.seq, record.chain):
            continue
        named = json.loads(other.decision)
        if named.get("supersedes") == record.seq and named.get("supersedes_chain") == record.chain:
            found.append(other.ref)
    return found
