"""Personal data and the audit log: what the log keeps of a case's ``pii: true`` fields.

Under ``drop`` or ``pseudonymise`` no byte of a personal value may reach the log, whatever
the case holds. Two steps make sure of it, both structural rather than a search for the
value afterwards:

* :meth:`PiiPolicy.scrub_input` rewrites the stored case input: a pii field is dropped (or
  replaced by a keyed pseudonym); so is the value of a field the schema does not know (a
  typo of a pii field's name may hold its value: the key is kept, the value is not), of a
  list that holds pii item fields but is not a list, of a list item that is not an object,
  and the whole of a case that is not a JSON object.
* :func:`stored_decision` builds the decision JSON the log keeps from a scrubbed decision:
  a rule's ``values`` computed from personal data (a pii field, or a derived value computed
  from one) are stored as ``[personal data]``, and so are a ``because`` text's placeholders that
  read personal data (such a field, derived value or rule value); the details of an
  evaluation error in a rule that reads personal data are not kept; a rejection's messages
  never repeat the value they are about (validation never quotes a pii value; an error about
  a value the input scrub removed is reduced to a message without it, as a second guard).

The log still commits to what was released: with ``pseudonymise`` the record's ``pii`` note
holds ``released``, a keyed HMAC of the decision JSON as it was returned. With ``drop`` there
is no key, and a plain hash of a text holding a birth date could be reversed by trying every
date, so the log commits only to the masked text it stores.
"""

from __future__ import annotations

import hmac
import json
from decimal import Decimal
from hashlib import sha256 as _sha256

from ..evaluation.decision import Decision, canonical_json
from ..language.load import format_value
from ..evaluation.runtime import EVALUATION_ERRORS

PII_MODES = ("keep", "pseudonymise", "drop")
MASK = "[personal data]"
WHOLE_CASE = "(case)"  # the path noted when a case that is not a JSON object is withheld as a whole

# What a rejection's message says instead, when it would repeat a value the log must not keep.
PLAIN_MESSAGES = {
    "wrong_type": "the value has the wrong type",
    "bad_date": "expected a date as YYYY-MM-DD",
    "not_allowed": "the value is not one of the allowed values",
    "out_of_range": "the value is out of range",
}


class PiiPolicy:
    """What the log keeps of case fields marked ``pii: true``: the value, a keyed pseudonym, or nothing.

    >>> PiiPolicy("drop").scrub_input(schema, {"birth_date": "1990-01-01", "x": 1})  # doctest: +SKIP
    ({'x': None}, ['birth_date', 'x'], ['1990-01-01', 1])
    """

    def __init__(self, mode: str = "keep", key: bytes | None = None):
        if mode not in PII_MODES:
            raise ValueError(f"pii mode must be one of {', '.join(PII_MODES)}, not {mode!r}")
        if mode == "pseudonymise" and not key:
            raise ValueError("pseudonymising personal data needs a key (a secret kept outside the log)")
        self.mode, self.key = mode, key

    def pseudonym(self, value) -> str:
        return self._mac(canonical_json(value))

    def _mac(self, text: str) -> str:
        assert self.key is not None
        # surrogatepass: a lone surrogate in a hostile case still gets a pseudonym, never an exception
        return "hmac-sha256:" + hmac.new(self.key, text.encode("utf-8", "surrogatepass"), _sha256).hexdigest()

    # -- the stored input ------------------------------------------------------------------
    def scrub_input(self, schema: dict, raw) -> tuple[object, list[str], list]:
        """The case input as the log keeps it, the paths it changed, and the values it withheld."""
        touched: list[str] = []
        withheld: list = []
        if self.mode == "keep" or raw is None:
            return raw, touched, withheld
        if type(raw) is not dict:
            return self._withhold(raw, WHOLE_CASE, touched, withheld), touched, withheld
        kept = self._record(schema, raw, "", touched, withheld)
        return (kept if touched else raw), touched, withheld

    def _withhold(self, value, path: str, touched: list, withheld: list):
        touched.append(path)
        withheld.append(value)
        return None if self.mode == "drop" else self.pseudonym(value)

    def _record(self, schema: dict, raw: dict, prefix: str, touched: list, withheld: list) -> dict:
        out = {}
        for name, value in raw.items():
            path = prefix + str(name)
            spec = schema.get(name) if type(name) is str else None
            if value is None:
                out[name] = value
            elif spec is None:  # not a field of the schema: keep the key, not the value
                out[name] = self._withhold(value, path, touched, withheld)
            elif spec.pii:
                value = self._withhold(value, path, touched, withheld)
                if self.mode != "drop":
                    out[name] = value
            elif spec.type == "list" and type(value) is list:
                out[name] = [self._record(spec.items or {}, item, f"{path}[{i}].", touched, withheld)
                             if type(item) is dict else
                             (self._withhold(item, f"{path}[{i}]", touched, withheld)
                              if item is not None and holds_pii(spec) else item)
                             for i, item in enumerate(value)]
            elif spec.type == "list" and holds_pii(spec):  # a list of personal items, given as something else
                out[name] = self._withhold(value, path, touched, withheld)
            else:
                out[name] = value
        return out

    def note(self, touched: list[str], masked: list[str], released: str) -> str | None:
        """The record's ``pii`` note: which input paths and which decision parts were withheld."""
        if not touched and not masked:
            return None
        note: dict = {"fields": touched, "mode": self.mode}
        if masked:
            note["masked"] = masked
            if self.mode == "pseudonymise":
                # keyed: a plain hash of a text that quotes a birth date could be reversed by trying dates
                note["released"] = self._mac(released)
        return canonical_json(note)


def holds_pii(spec) -> bool:
    """Whether a field is personal data or is a list whose items hold some."""
    return spec.pii or any(holds_pii(s) for s in (spec.items or {}).values())


# -- the stored decision ----------------------------------------------------------------------

_READS: dict[int, tuple] = {}  # id(version) -> (version, personal fields, {rule index: (values, names)})


def _personal(version) -> tuple[frozenset[str], dict]:
    cached = _READS.get(id(version))
    if cached is None or cached[0] is not version:
        personal = frozenset(n for n, s in version.model.case.items() if holds_pii(s))
        cached = _READS[id(version)] = (version, personal, {})
    return cached[1], cached[2]


def _rule_masks(version, rule) -> tuple[frozenset[str], frozenset[str]]:
    """A rule's values computed from personal data, and its ``because`` placeholders that read
    personal data: a pii field, a value derived from one, or one of those rule values."""
    personal, per_rule = _personal(version)
    masks = per_rule.get(rule.index)
    if masks is None:
        values = frozenset(n for n, expr in rule.values.items()
                           if version.fields_read(expr.names, loads=True) & personal)
        names = set()
        for n in rule.because.names:
            n = n.strip()
            # a placeholder naming a rule value reads that value (it shadows a field of that name)
            if n in values or (n not in rule.values and version.fields_read((n,), loads=True) & personal):
                names.add(n)
        masks = per_rule[rule.index] = (values, frozenset(names))
    return masks


def masked_values(version, rule) -> frozenset[str]:
    """The names of a rule's ``values`` whose expression reads personal data (directly or through
    derived values): the log stores them as ``[personal data]``."""
    return _rule_masks(version, rule)[0]


def masked_names(version, rule) -> frozenset[str]:
    """The placeholders of a rule's ``because`` text whose value is read from personal data."""
    return _rule_masks(version, rule)[1]


def rule_reads_pii(version, rule) -> bool:
    """Whether a rule's condition or values read personal data (directly or through derived values)."""
    personal, _ = _personal(version)
    reads = set(rule.when.names) if rule.when is not None else set()
    for expr in rule.values.values():
        reads |= expr.names
    return bool(version.fields_read(reads, loads=True) & personal)


def _masked_because(decision: Decision, rule, masked: frozenset[str]) -> str:
    from ..evaluation.reference import Interpreter
    interp = Interpreter(decision.period, decision.case)
    values = decision.values

    def lookup(name: str):
        if name in masked:
            return MASK
        if name in rule.values:
            return values.get(name)
        return interp.lookup(name)

    try:
        return rule.because.render(lookup)
    except EVALUATION_ERRORS:
        return f"(the reason text of rule {rule.id} could not be rendered)"


def _renderings(value) -> set[str]:
    """The ways a withheld value could be written into a message."""
    if isinstance(value, dict):
        return {r for k, v in value.items() for r in _renderings(v) | _renderings(k)}
    if isinstance(value, (list, tuple)):
        return {r for v in value for r in _renderings(v)}
    out = {str(value), repr(value), format_value(value)}
    if isinstance(value, str):
        out |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    if isinstance(value, (Decimal, float)):
        out.add(format(Decimal(str(value)), "f") if isinstance(value, float) else format(value, "f"))
    return {r for r in out if r}


def _under(path: str, withheld: str) -> bool:
    """Whether an error at ``path`` is about the withheld value at ``withheld`` (or a part of it)."""
    return (withheld == WHOLE_CASE or path == withheld or path.startswith(withheld + ".")
            or path.startswith(withheld + "["))


def stored_decision(decision: Decision, touched: list[str], withheld: list,
                    policy: PiiPolicy) -> tuple[str, list[str], list[str] | None, dict | None]:
    """The decision JSON the log keeps, which parts of it are masked, and its masked reasons and
    values (for work items; None when stored as released).

    Under ``keep`` it is the released decision itself. Otherwise nothing in it repeats personal
    data: see the module docstring.
    """
    if policy.mode == "keep" or decision.period is None:
        return decision.to_json(), [], None, None
    version = decision.period.version
    masked: list[str] = []
    reasons = None
    values = None
    data = None
    if decision.status == "rejected":
        errors = []
        rendered = [(path, _renderings(value)) for path, value in zip(touched, withheld)]
        for e in decision.errors:
            message = e.message
            if any(_under(e.path, path) and any(r in message for r in renderings) for path, renderings in rendered):
                message = PLAIN_MESSAGES.get(e.code, "the value is not valid")
                if "errors" not in masked:
                    masked.append("errors")
            errors.append({"path": e.path, "code": e.code, "message": message})
        if masked:
            data = decision.to_dict()
            data["errors"] = errors
            reasons = data["reasons"] = [f"{e['path'] or 'case'}: {e['message']}" for e in errors]
    else:
        rule = version.rules[decision._outcome.index]
        why = decision.referral_reason
        if why == "evaluation-error":
            if rule_reads_pii(version, rule):
                masked.append("reasons")
                reasons = [f"Rule {rule.id} could not be evaluated on this case; the details are not kept "
                           "in the log, as they may repeat personal data."]
        elif why not in ("missing-data", "missing-parameter"):  # these name fields and parameters only
            names = masked_names(version, rule)
            if names:
                masked.append("reasons")
                reasons = [_masked_because(decision, rule, names), *decision.reasons[1:]]
            personal = masked_values(version, rule)
            released = decision.values
            if personal & released.keys():
                masked.append("values")
                values = {k: MASK if k in personal else v for k, v in released.items()}
        if masked:
            data = decision.to_dict()
            if reasons is not None:
                data["reasons"] = reasons
            if values is not None:
                data["values"] = values
    if data is None:
        return decision.to_json(), [], reasons, values
    return canonical_json(data), masked, reasons, values
