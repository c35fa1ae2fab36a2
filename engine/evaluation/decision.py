"""Decisions: the immutable result of evaluating one case, with its explanation and canonical JSON."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..language.load import _SHOWN_INT, format_value
from .runtime import EVALUATION_ERRORS, describe_error

if TYPE_CHECKING:  # pragma: no cover
    from .compile import Period

ENGINE_VERSION = "0.1.0"
_BIG_ID = 10 ** 34


class Outcome:
    """What one rule yields in one parameter period; built once at compile time, shared by decisions."""

    __slots__ = ("index", "rule", "status", "outcome", "queue", "referral", "period", "because",
                 "because_json", "_json", "_render", "_values")

    def __init__(self, index, rule, status, outcome, queue, referral, period, because=None, because_json=None):
        self.index, self.rule, self.status, self.outcome = index, rule, status, outcome
        self.queue, self.referral, self.period, self.because = queue, referral, period, because
        self.because_json = because_json  # the reason text as a JSON string
        self._json = None
        self._render = _UNSET
        self._values = None  # the writer of this outcome's values (see Decision.values_json)

    def render(self):
        """This outcome's JSON writer, ``(case, values, derived) -> str``, or None when its decisions
        take the general path (rejections, missing-data and evaluation-error referrals). Built once.

        The writer returns None for a decision it cannot write exactly (a reason text that fails,
        a case that is not a validated dict); :meth:`Decision.to_json` then writes it the general way.
        """
        if self._render is _UNSET:
            self._render = _json_writer(self)
        return self._render

    def json_parts(self) -> tuple[str, str, str, str]:
        """The parts of this outcome's decision JSON that no case changes, in canonical key order.

        A decision's JSON is these parts with its case id, date, reasons and values between
        them; the tests check that this equals the generic canonical form.
        """
        if self._json is None:
            v = self.period.version
            ruleset = {"id": v.id, "version": v.version, "sha256": v.sha256}
            referral = ',"referral":' + canonical_json({"reason": self.referral}) if self.referral else ""
            self._json = (
                '{"basis":' + encode_scalar(self.rule.basis) + ',"case_id":',
                ',"decision_date":',
                ',"engine_version":' + encode_scalar(ENGINE_VERSION) + ',"outcome":' + encode_scalar(self.outcome)
                + ',"parameters":' + canonical_json(self.period.parameters) + ',"queue":' + encode_scalar(self.queue)
                + ',"reasons":',
                referral + ',"rule":' + encode_scalar(self.rule.id) + ',"ruleset":' + canonical_json(ruleset)
                + ',"status":' + encode_scalar(self.status) + ',"values":',
            )
        return self._json


_UNSET = object()
_MISSING = ("missing-data", "missing-parameter")  # referrals whose detail names what was missing
_DETAILED = ("missing-data", "missing-parameter", "evaluation-error")  # decided the general way
_POLICY_NOTE = ('The outcome "{}" is not released automatically: '
                "a caseworker must confirm or change it.")


def _json_writer(o: Outcome):
    """The fast JSON writer of one outcome (see :meth:`Outcome.render`): the constant parts
    pre-encoded, the reason text compiled as a JSON string, the values by their known keys."""
    if o.status == "rejected" or o.referral in _DETAILED or o.because_json is None:
        return None
    a, b, c, d = o.json_parts()
    model = o.period.version.model
    id_field, date_field, because = model.case_id, model.decision_date, o.because_json
    c += "["
    d = ("," + _enc_str(_POLICY_NOTE.format(o.outcome)) if o.referral == "automation-policy" else "") + "]" + d
    values_json = o._values = o._values or _values_writer(o.rule.values)
    _date, _int, _str, _dict, errors, days = date, int, str, dict, EVALUATION_ERRORS, _DAYS

    def write(case, values, derived):
        if case.__class__ is not _dict:
            return None
        day = case[date_field]
        if day.__class__ is not _date:
            return None
        day_json = days.get(day) or _day_json(day)
        cid = case.get(id_field)
        try:
            text = because(case, values or {}, derived)
        except errors:
            return None
        cls = cid.__class__
        cid = str(cid) if cls is _int else _enc_str(cid) if cls is _str else _canonical(cid)
        return f"{a}{cid}{b}{day_json}{c}{text}{d}{values_json(values)}}}"
    return write


_DAYS: dict = {}  # a decision date's JSON text, by date: a batch has few distinct dates


def _day_json(day: date) -> str:
    if len(_DAYS) >= 4096:
        _DAYS.clear()
    text = _DAYS[day] = '"' + day.isoformat() + '"'
    return text


def _values_writer(keys):
    """``values -> JSON`` for a rule whose values have ``keys``: each value encoded by its class;
    values of any other shape in canonical JSON."""
    pairs = tuple((k, ("{" if i == 0 else ",") + _enc_str(k) + ":") for i, k in enumerate(sorted(keys)))
    n = len(pairs)
    if n == 1:
        ((key, head),) = pairs
        tail = "}"

        def write_one(values):
            if not values:
                return "{}"
            if values.__class__ is dict and len(values) == 1 and key in values:
                value = values[key]
                cls = value.__class__
                if cls is int:
                    return f"{head}{value!s}}}"
                if cls is Decimal:
                    return f'{head}"{value!s}"}}'
                return head + _encode_value(value) + tail
            return _canonical(values)
        return write_one

    def write(values):
        if not values:
            return "{}"
        if values.__class__ is dict and len(values) == n:
            try:
                return "".join([head + _encode_value(values[k]) for k, head in pairs]) + "}"
            except KeyError:
                pass
        return _canonical(values)
    return write


def _encode_value(value) -> str:
    """One value as canonical JSON writes it; decimals and ints without the encoder's default hook."""
    cls = value.__class__
    if cls is Decimal:
        return '"' + str(value) + '"'  # a decimal's text is plain ASCII: nothing to escape
    if cls is int:
        return str(value)
    return _canonical(value)


def json_text(text: str) -> str:
    """A string as canonical JSON writes it (quoted; lone surrogates as their escapes)."""
    return _enc_str(text)


_PLAIN = (bool, type(None), date)  # classes whose reason text JSON writes as it is


def reason_json(value) -> str:
    """:func:`reason_value` as it is written inside a JSON string."""
    text = reason_value(value)
    cls = value.__class__
    if cls is int or cls is Decimal or cls in _PLAIN:
        return text  # digits, signs, points, E, yes/no, ISO dates: nothing to escape
    return _enc_str(text)[1:-1]


def reason_value(value) -> str:
    """:func:`vedtak.language.load.format_value`, quicker for ints and for decimals in plain notation
    (tested equal to it)."""
    cls = value.__class__
    if cls is int:
        if -_SHOWN_INT < value < _SHOWN_INT:
            return str(value)
    elif cls is Decimal:
        text = str(value)
        # plain notation (no exponent) of under 40 characters is what format_value writes, less
        # the fraction's zeros when the value is whole
        if len(text) < 40 and "E" not in text and value.is_finite():
            whole, dot, fraction = text.partition(".")
            return whole if dot and not fraction.strip("0") else text
    return format_value(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "to_json_data"):  # a scale: its brackets
        return value.to_json_data()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_canonical_any = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                  default=_json_default).encode
_enc_any_raw = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_enc_str_raw = json.encoder.encode_basestring
# A lone surrogate (from a library caller's string, or a JSON escape such as "\ud800") cannot be
# written as UTF-8: canonical JSON writes it as its JSON escape, which reads back as the same string.
_LONE = re.compile("[\ud800-\udfff]")


def _escape_lone(text: str) -> str:
    if text.isascii() or not _LONE.search(text):
        return text
    return _LONE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _canonical(obj: Any) -> str:
    return _escape_lone(_canonical_any(obj))


def _enc_any(obj: Any) -> str:
    return _escape_lone(_enc_any_raw(obj))


def _enc_str(value: str) -> str:
    return _escape_lone(_enc_str_raw(value))


def encode_scalar(value: Any) -> str:
    """One JSON value as canonical JSON writes it; fast for the strings, ints and None of records."""
    if value.__class__ is str:
        return _enc_str(value)
    if value is None:
        return "null"
    if value.__class__ is int:
        return str(value)
    return _enc_any(value)


def json_value(value: Any) -> Any:
    """A value in the canonical JSON form: decimals as strings, dates as ISO strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


def canonical_json(obj: Any) -> str:
    """UTF-8 JSON with sorted keys, no insignificant whitespace, decimals and dates as strings.

    A value nested deeper than Python's JSON encoder can go (only a library caller's own objects:
    files are read within the depth limit) is cut at ``_MAX_NESTING`` levels, the cut part
    replaced by a note, so that even that case can be recorded as the rejection it is.
    """
    try:
        return _canonical(obj)
    except RecursionError:
        return _canonical(_cut(obj, _MAX_NESTING))


_MAX_NESTING = 200


def _cut(obj: Any, limit: int) -> Any:
    """A copy of ``obj`` with every dict or list below ``limit`` levels replaced by a note (no recursion)."""
    note = f"(nested deeper than {limit} levels: not kept)"
    root: list = [None]
    stack = [(obj, root, 0, 1)]
    while stack:
        value, parent, key, level = stack.pop()
        if isinstance(value, dict):
            if level > limit:
                parent[key] = note
                continue
            copy: Any = {}
            stack.extend((v, copy, str(k), level + 1) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            if level > limit:
                parent[key] = note
                continue
            copy = [None] * len(value)
            stack.extend((v, copy, i, level + 1) for i, v in enumerate(value))
        else:
            copy = value
        parent[key] = copy
    return root[0]


def _storable_id(cid):
    """A rejected case's id as given, made storable and short: a string without lone surrogates,
    an integer below 10^34; anything else (a valid id is a checked string or integer) as text."""
    from .cases import number_text, shown
    if cid.__class__ is int:
        return cid if -_BIG_ID < cid < _BIG_ID else number_text(cid)
    if isinstance(cid, str):
        return shown(str(cid), 200)
    if isinstance(cid, (float, Decimal)):
        return number_text(cid)
    return shown(canonical_json(cid), 200)


class Decision(tuple):
    """The outcome of one case: decided, referred (with the proposed decision, if any) or rejected.

    A decision is immutable; its explanation and trace are recomputed on demand from the
    case and the compiled ruleset, which is exact because evaluation is deterministic.

    >>> d = plan.decide({...})                 # doctest: +SKIP
    >>> d.status, d.outcome, d.values          # doctest: +SKIP
    ('decided', 'grant', {'amount': Decimal('13940')})
    >>> print(d.explain())                     # doctest: +SKIP
    """

    __slots__ = ()

    # tuple layout: (Outcome, case, values or None, detail); for an ordinary decision the last is
    # None or the derived values the rule computed, which its reason text reads (see compile)
    @property
    def _outcome(self) -> Outcome:
        return self[0]  # a Decision is a plain tuple underneath: indexing it is tuple indexing

    @property
    def case(self) -> dict:
        """The validated case (for a rejection: the raw input)."""
        return self[1]

    @property
    def status(self) -> str:
        return self[0].status

    @property
    def outcome(self) -> str | None:
        """The decided outcome; for a referral, the proposed one (None when a rule referred outright)."""
        return self[0].outcome

    @property
    def queue(self) -> str | None:
        return self[0].queue

    @property
    def rule(self) -> str | None:
        rule = self[0].rule
        return rule.id if rule is not None else None

    @property
    def basis(self) -> str | None:
        rule = self[0].rule
        return rule.basis if rule is not None else None

    @property
    def values(self) -> dict:
        values = self[2]
        return dict(values) if values else {}

    @property
    def detail(self):
        """A rejection's errors, a missing-data referral's fields, an evaluation error's message; else None."""
        o = self[0]
        if o.status == "rejected" or o.referral in _DETAILED:
            return self[3]
        return None  # an ordinary decision keeps the derived values its reason text reads there

    @property
    def referral_reason(self) -> str | None:
        """Why a case was referred: rule, missing-data, automation-policy or evaluation-error."""
        return self[0].referral

    @property
    def missing(self) -> tuple[str, ...]:
        """For a missing-data referral: the optional fields the rule needed and the case lacked; for a
        missing-parameter referral: the parameters it needed that have no value in force."""
        return self.detail if self[0].referral in _MISSING else ()

    @property
    def errors(self) -> tuple:
        """For a rejection: every validation error (:class:`vedtak.evaluation.cases.CaseError`)."""
        return self.detail if self.status == "rejected" else ()

    @property
    def period(self) -> "Period | None":
        return self[0].period

    @property
    def case_id(self):
        o = self[0]
        period = o.period
        case = self[1]
        if period is None or type(case) is not dict:
            return None
        cid = case.get(period.version.model.case_id)
        if o.status == "rejected" and cid is not None and cid.__class__ is not bool:
            return _storable_id(cid)
        return cid

    @property
    def ruleset(self) -> dict | None:
        period = self[0].period
        if period is None:
            return None
        v = period.version
        return {"id": v.id, "version": v.version, "sha256": v.sha256}

    @property
    def decision_date(self) -> date | None:
        o = self[0]
        period = o.period
        if period is None or o.status == "rejected":
            return None
        return self[1][period.version.model.decision_date]

    @property
    def parameters(self) -> dict:
        """Parameter values in force on the decision date."""
        period = self[0].period
        return dict(period.parameters) if period is not None and self.status != "rejected" else {}

    @property
    def engine_version(self) -> str:
        return ENGINE_VERSION

    @property
    def reasons(self) -> list[str]:
        """The reason texts, as written grounds: the rule's `because`, then any referral note."""
        o = self[0]
        if o.status == "rejected":
            return [f"{e.path or 'case'}: {e.message}" for e in self.errors]
        out = []
        if o.referral == "missing-data":
            fields = ", ".join(self.missing)
            out.append(f"Missing data: rule {o.rule.id} needs {fields}, which the case does not give.")
            return out
        if o.referral == "missing-parameter":
            names = ", ".join(self.missing)
            out.append(f"Missing parameter: rule {o.rule.id} needs {names}, which "
                       f"{'has' if len(self.missing) == 1 else 'have'} no value in force on {self.decision_date}.")
            return out
        if o.referral == "evaluation-error":
            out.append(f"Rule {o.rule.id} could not be evaluated on this case: {self.detail}.")
            return out
        try:
            out.append(o.because(self.case, self[2] or {}, self[3]))
        except EVALUATION_ERRORS as exc:  # the decision stands; say plainly that its text failed
            out.append(f"(the reason text of rule {o.rule.id} could not be rendered: {describe_error(exc)})")
        if o.referral == "automation-policy":
            out.append(_POLICY_NOTE.format(o.outcome))
        return out

    def trace(self):
        """The evaluation trace: rules tried and the values they saw, and the derived values."""
        from .reference import trace
        period = self[0].period
        if period is None or self.status == "rejected":
            return None
        return trace(period, self.case)

    # -- output --------------------------------------------------------------------------
    def to_dict(self, *, trace: bool = False) -> dict:
        """The decision as JSON-ready data (decimals stay Decimal until :func:`canonical_json`)."""
        o = self[0]
        data: dict[str, Any] = {
            "case_id": self.case_id,
            "status": o.status,
            "outcome": o.outcome,
            "queue": o.queue,
            "rule": self.rule,
            "basis": self.basis,
            "values": self.values,
            "reasons": self.reasons,
            "ruleset": self.ruleset,
            "decision_date": self.decision_date,
            "engine_version": ENGINE_VERSION,
        }
        if o.status == "rejected":
            data["errors"] = [e.to_dict() for e in self.errors]
        else:
            data["parameters"] = self.parameters
        if o.referral is not None:
            data["referral"] = {"reason": o.referral}
            if o.referral == "missing-data":
                data["referral"]["fields"] = list(self.missing)
            elif o.referral == "missing-parameter":
                data["referral"]["parameters"] = list(self.missing)
        if trace and o.status != "rejected":
            data["trace"] = self.trace().to_dict()
        return data

    def to_json(self, *, trace: bool = False) -> str:
        """Canonical JSON (sorted keys, no whitespace, decimals as strings)."""
        o = self[0]
        if not trace:
            write = o._render
            if write is _UNSET:
                write = o.render()
            if write is not None:
                text = write(self[1], self[2], self[3])
                if text is not None:
                    return text
        if trace or o.referral != "evaluation-error":
            return canonical_json(self.to_dict(trace=trace))
        a, b, c, d = o.json_parts()
        values = self[2]
        return (a + encode_scalar(self.case_id) + b + '"' + self.decision_date.isoformat() + '"' + c  # type: ignore
                + encode_scalar(self.reasons) + d + (_canonical(values) if values else "{}") + "}")

    def values_json(self) -> str:
        """The values as canonical JSON, exactly as :meth:`to_json` writes them (``{}`` for none)."""
        values = self[2]
        if not values:
            return "{}"
        o = self[0]
        write = o._values
        if write is None:
            write = o._values = _values_writer(o.rule.values if o.rule is not None else ())
        return write(values)

    def to_json_generic(self) -> str:
        """The same JSON built from :meth:`to_dict` (the reference the fast path is tested against)."""
        return canonical_json(self.to_dict())

    def explain(self) -> str:
        """The decision for a person: result, rule and basis, reasons, values, trace, and sources."""
        o = self[0]
        lines = []
        cid = self.case_id
        if o.status == "decided":
            lines.append(f"Case {cid}: decided: {o.outcome}")
        elif o.status == "referred":
            head = f"Case {cid}: referred to queue \"{o.queue}\" ({o.referral})"
            if o.outcome:
                head += f"; proposed decision: {o.outcome}"
            lines.append(head)
        else:
            lines.append(f"Case {cid if cid is not None else '?'}: rejected: the case is not valid input")
        if o.rule is not None:
            lines.append(f"Rule: {o.rule.id}" + (f" ({o.rule.basis})" if o.rule.basis else ""))
        lines.append("Reasons:")
        lines += [f"  {r}" for r in self.reasons]
        if self.values:
            lines.append("Values:")
            lines += [f"  {k} = {format_value(v)}" for k, v in self.values.items()]
        tr = self.trace()
        if tr is not None:
            lines.append("Trace:")
            lines += ["  " + line for line in tr.lines()]
        rs = self.ruleset
        if rs is not None:
            when = f", decision date {self.decision_date}" if self.decision_date else ""
            lines.append(f"Ruleset: {rs['id']} version {rs['version']} (sha256 {rs['sha256'][:12]}){when}; "
                         f"engine {ENGINE_VERSION}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Decision(case_id={self.case_id!r}, status={self.status!r}, outcome={self.outcome!r}, "
                f"queue={self.queue!r}, rule={self.rule!r}, values={self.values!r})")

    def __eq__(self, other) -> bool:
        return isinstance(other, Decision) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())
