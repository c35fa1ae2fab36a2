"""The compact decision of a version 2 record, and the released decision JSON rendered back from it.

A decision or referral made from a case the log holds in full is stored as what a reader
cannot derive again: its kind (the status), rule and values (a decision's rule names its
outcome; a referral keeps its proposed outcome, queue, reason and missing fields; a
decision made again the record it supersedes). A compact rejection (its errors) is still
read, but rejections are now written with their full decision JSON. Its decision JSON
— reasons, basis, the parameters in force — is rendered again from the stored ruleset
source by deciding the stored input once more (evaluation is deterministic), checked
against the compact decision, and its SHA-256 against the one the record holds.

Whatever cannot be derived again that way — a rejection, a decision masked for personal
data, a human decision, a run's manifest, or any record when the log is asked to keep
released JSON —
carries its full decision JSON (``"z"``).
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from ..evaluation.cases import CaseError
from ..evaluation.decision import Decision, _canonical, canonical_json, encode_scalar

_KIND = {"decided": "d", "referred": "r", "rejected": "j"}


class NotRenderable(ValueError):
    """The stored input, decided again by the stored ruleset, does not give the recorded decision."""


def compact_fields(decision: Decision, extra: dict | None = None) -> str:
    """The compact decision of a record whose decision JSON can be rendered again from its input:
    JSON object members (without braces) that :func:`render` reads back."""
    o = decision._outcome
    if o.status == "rejected":
        parts = ['"e":' + canonical_json([e.to_dict() for e in decision.errors])]
    else:
        parts = []
        if o.referral in ("missing-data", "missing-parameter"):
            parts.append('"f":' + canonical_json(list(decision.missing)))
        if o.outcome is not None and o.status != "decided":  # a decision's rule gives its outcome
            parts.append('"o":' + encode_scalar(o.outcome))
        if o.queue is not None:
            parts.append('"q":' + encode_scalar(o.queue))
        if o.rule is not None:
            parts.append('"r":' + encode_scalar(o.rule.id))
        values = tuple.__getitem__(decision, 2)
        if values:
            parts.append('"v":' + _canonical(values))
        if o.referral is not None:
            parts.append('"w":' + encode_scalar(o.referral))
    if extra:
        parts.append('"x":' + canonical_json(extra))
    return ",".join(parts)


def item_digest(reason_text: str) -> str:
    """What a record keeps of the reason text of the work item it opens (``"i"``): the verifier
    checks the item against it without rendering the decision again."""
    return hashlib.sha256(reason_text.encode("utf-8")).hexdigest()[:16]


def full_fields(decision_json: str, pii: str | None) -> str:
    """The members of a record that keeps its full decision JSON (``decision_json`` is canonical)."""
    return ('"p":' + pii + "," if pii is not None else "") + '"z":' + decision_json


def _values_json(values) -> dict:
    return json.loads(_canonical(values)) if values else {}


def render(meta: dict, raw, plan, sha: str | None) -> str:
    """The decision JSON a compact record was released as: the stored input decided again by
    ``plan`` (compiled from the stored sources of the record's ruleset versions)."""
    if "z" in meta:
        return canonical_json(meta["z"])
    from .blocks import kind_of
    kind, _ = kind_of(meta)
    if kind == "j":
        period = next((p for p in reversed(plan._periods) if p.version.sha256 == sha), None)
        if period is None:
            raise NotRenderable(f"the ruleset version {str(sha)[:12]} is not among the stored sources")
        errors = meta.get("e")
        if not isinstance(errors, list) or not all(isinstance(e, dict) for e in errors):
            raise NotRenderable("its errors are not a list of objects")
        try:
            found = tuple(CaseError(str(e["path"]), str(e["code"]), str(e["message"])) for e in errors)
        except KeyError as exc:
            raise NotRenderable(f"an error lacks its {exc.args[0]}") from None
        decision = Decision((period.rejected, raw, None, found))
    else:
        decision = plan.decide(raw)
        if decision.period is None or decision.period.version.sha256 != sha:
            raise NotRenderable("deciding its input again picks another ruleset version")
        o = decision._outcome
        if (_KIND.get(o.status) != kind or o.outcome != meta.get("o", o.outcome if kind == "d" else None)
                or decision.rule != meta.get("r")
                or o.queue != meta.get("q") or o.referral != meta.get("w")
                or _values_json(tuple.__getitem__(decision, 2)) != (meta.get("v") or {})
                or list(decision.missing) != (meta.get("f") or [])):
            raise NotRenderable("deciding its input again gives another decision than the one recorded")
    text = decision.to_json()
    extra = meta.get("x")
    if extra:
        data = json.loads(text, parse_float=Decimal)
        data.update(extra)
        text = canonical_json(data)
    return text
