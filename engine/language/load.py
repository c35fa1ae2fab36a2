"""Loading: YAML files become checked ruleset versions, or one RulesetError listing every problem."""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from ..errors import Diagnostic, RulesetError
from .derive import check_derive, valid_name as _valid_name
from .expr import BOOL, SCALARS, CheckedExpr, ItemFunction, Symbol, Type, check_expr
from .limits import MAX_COMPILED, MAX_PERIODS, MAX_VERSIONS
from .model import FieldSpec, RulesetModel
from .params import ParameterTable, check_default, check_parameter
from .locate import model_errors, pos_of
from .source import Pos, Source, TooLarge, YMap

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass
class Template:
    """A `because` text with ``{name}`` placeholders, checked against the names in scope."""

    text: str
    names: tuple[str, ...]

    def render(self, lookup) -> str:
        return _PLACEHOLDER.sub(lambda m: format_value(lookup(m.group(1).strip())), self.text)


_SHOWN_DIGITS = 40  # a number in a reason text is written out in full up to this many digits
_SHOWN_INT = 10 ** _SHOWN_DIGITS


def format_value(value) -> str:
    """A value as a person reads it in a reason: exact decimals, ISO dates, yes/no for bools."""
    cls = value.__class__
    if cls is str:
        return value
    if cls is int:
        if -_SHOWN_INT < value < _SHOWN_INT:
            return str(value)
        return f"{Decimal(value):.6E} (rounded, {len(Decimal(value).as_tuple().digits):,} digits)"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if value is None:
        return "unknown"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):  # 12995.0000 reads as 12995; exact, never in exponent form
        if value and not -_SHOWN_DIGITS <= value.adjusted() <= _SHOWN_DIGITS:
            # beyond what a reason can spell out (10^999999 in full is a megabyte): exponent form
            digits = len(value.as_tuple().digits)
            return str(value) if digits <= _SHOWN_DIGITS else f"{value:.6E} (rounded, {digits:,} digits)"
        if value == value.to_integral_value():
            return format(value.to_integral_value(), "f")
        return format(value, "f")
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


@dataclass
class CheckedRule:
    """A rule whose condition, values and reason text passed every check."""

    index: int
    id: str
    basis: str
    when: CheckedExpr | None  # None for `otherwise`
    decide: str | None
    refer: str | None
    values: dict[str, CheckedExpr]
    because: Template
    needs_optional: tuple[str, ...] = ()  # optional fields the condition needs, not guarded by known()
    values_optional: tuple[str, ...] = ()  # optional fields the values and reason need
    reads: frozenset[str] = frozenset()  # every name the condition reads, derived values expanded


@dataclass
class CheckedVersion:
    """One version of a ruleset after loading and checking: what the compiler takes."""

    model: RulesetModel
    source: Source
    raw: YMap
    sha256: str
    scope: dict[str, Symbol]
    parameters: dict[str, ParameterTable]
    derived: dict[str, CheckedExpr]  # in dependency order
    derived_fields: dict[str, frozenset[str]]  # derived name -> case fields it needs (known() excluded)
    derived_loads: dict[str, frozenset[str]]  # derived name -> every case field it may read
    derived_deps: dict[str, frozenset[str]]  # derived name -> derived values it reads (transitively)
    rules: list[CheckedRule]  # the rules, then `otherwise` last
    segments: list[tuple[date, dict]] = field(default_factory=list)  # parameter values by period
    item_functions: dict[str, ItemFunction] = field(default_factory=dict)
    defaults: dict[str, object] = field(default_factory=dict)  # case field -> its default
    overlay: object = None  # an OverlayInfo (overlay.py) for a version merged from an overlay and its base

    def parameters_read(self, names) -> frozenset[str]:
        """The parameters that ``names`` read, directly or through derived values."""
        out = set()
        for n in self.expand(names):
            sym = self.scope.get(n)
            if sym is not None and sym.kind == "parameter":
                out.add(n)
            elif n in self.derived:
                out |= {m for m in self.derived[n].names if self.scope[m].kind == "parameter"}
        return frozenset(out)

    @property
    def id(self) -> str:
        return self.model.ruleset

    @property
    def version(self) -> str:
        return self.model.version

    def expand(self, names) -> frozenset[str]:
        """Names plus every derived value they read, transitively."""
        out = set(names)
        for n in names:
            out |= self.derived_deps.get(n, frozenset())
        return frozenset(out)

    def fields_read(self, names, *, loads: bool = False) -> frozenset[str]:
        """Case fields that ``names`` need, through derived values; with ``loads``, also the fields
        that a derived value reads only after testing them with known()."""
        table = self.derived_loads if loads else self.derived_fields
        out = set()
        for n in names:
            sym = self.scope.get(n)
            if sym and sym.kind == "field":
                out.add(n)
            out |= table.get(n, frozenset())
        return frozenset(out)


@dataclass
class Ruleset:
    """All versions of one ruleset, ordered by validity; the unit the compiler turns into a Plan."""

    id: str
    versions: tuple[CheckedVersion, ...]
    path: str

    def version_for(self, day: date) -> CheckedVersion | None:
        for v in self.versions:
            if v.model.valid.holds(day):
                return v
        return None

    @property
    def latest(self) -> CheckedVersion:
        return self.versions[-1]


# -- loading ---------------------------------------------------------------------------

def _read_version(path: Path | Source, diags: list[Diagnostic]) -> tuple[RulesetModel, Source, YMap] | None:
    if isinstance(path, Source):
        source = path
    else:
        try:
            source = Source.read(path)
        except TooLarge as exc:
            diags.append(Diagnostic(str(path), 1, 1, "too_large", str(exc)))
            return None
        except UnicodeDecodeError as exc:  # located at the first byte that is not UTF-8
            before = exc.object[: exc.start].decode("utf-8", "replace")
            line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
            diags.append(Diagnostic(str(path), line, col, "unreadable", f"the file is not UTF-8 text: byte "
                                    f"0x{exc.object[exc.start]:02x} cannot be read", hint="save the file as UTF-8"))
            return None
        except (OSError, UnicodeDecodeError) as exc:
            diags.append(Diagnostic(str(path), 0, 0, "unreadable", f"cannot read the file: {exc}"))
            return None
    from .overlay import Pending, is_overlay, read_bundle  # an overlay is merged with its base (overlay.py)
    if (bundle := read_bundle(source)) is not None:
        return bundle
    data, problems = source.parse_yaml()
    diags.extend(problems)
    if data is None and not problems:
        diags.append(source.diag(None, "invalid_value", "the file is empty"))
    if data is None:
        return None
    if not isinstance(data, YMap):
        diags.append(source.diag(getattr(data, "pos", None), "invalid_value", "a ruleset file is a YAML mapping"))
        return None
    if is_overlay(data):  # its keys are an overlay's, not a ruleset's
        return None if problems else Pending(source, data)
    try:
        model = RulesetModel.model_validate(data)
    except ValidationError as exc:
        diags.extend(model_errors(source, data, exc))
        return None
    if problems:
        return None
    return model, source, data


def _check_windows(versions: list[tuple[RulesetModel, Source, YMap]], diags: list[Diagnostic]) -> None:
    ordered = sorted(versions, key=lambda v: v[0].valid.from_)
    first = ordered[0][0]
    for model, source, raw in ordered[1:]:
        for attr, code in (("ruleset", "mixed_rulesets"), ("decision_date", "inconsistent_versions"),
                           ("case_id", "inconsistent_versions")):
            if getattr(model, attr) != getattr(first, attr):
                diags.append(source.diag(pos_of(raw, attr), code,
                                         f'{attr} is "{getattr(model, attr)}" here but "{getattr(first, attr)}" '
                                         f"in {ordered[0][1].path}",
                                         hint="all versions in one directory share the ruleset id, "
                                              "decision_date and case_id"))
    for (prev, psrc, praw), (cur, csrc, craw) in zip(ordered, ordered[1:]):
        pw, cw = prev.valid, cur.valid
        if pw.to is None or pw.to >= cw.from_:
            diags.append(csrc.diag(pos_of(craw, "valid"), "overlapping_versions",
                                   f"version {cur.version} (from {cw.from_}) overlaps version {prev.version} "
                                   f"({psrc.path}, valid from {pw.from_}"
                                   + (f" to {pw.to})" if pw.to else " with no end)"),
                                   hint=f"end version {prev.version} with `to: {cw.from_ - timedelta(days=1)}`"
                                   if cw.from_ > date.min else f"start version {cur.version} later"))
        elif pw.to + timedelta(days=1) < cw.from_:
            diags.append(csrc.diag(pos_of(craw, "valid"), "gap_between_versions",
                                   f"no version governs {pw.to + timedelta(days=1)} to "
                                   f"{cw.from_ - timedelta(days=1)}",
                                   hint=f"start this version on {pw.to + timedelta(days=1)} "
                                        f"or extend version {prev.version}"))


def _ruleset_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def load_text(text: str, path: str = "<ruleset>") -> Ruleset:
    """Load one ruleset version from its source text (as the audit log stores it)."""
    diags: list[Diagnostic] = []
    read = _read_version(Source(path, text), diags)
    if read is None or diags:
        raise RulesetError(diags)
    if not isinstance(read, tuple):  # an overlaid version, as the log stores it
        from .overlay import load_overlays
        return load_overlays([read], path)
    version = check_version(*read, diags)
    if version is None or diags:
        raise RulesetError(diags)
    return Ruleset(version.id, (version,), path)


def load(path: str | Path) -> Ruleset:
    """Load a ruleset file, or a directory of versions of one ruleset, and check it.

    >>> rs = load("rulesets/study-grant")            # doctest: +SKIP
    >>> rs.id, [v.version for v in rs.versions]       # doctest: +SKIP
    ('study-grant', ['2025.1'])

    Raises :class:`RulesetError` with every problem found, each located by file, line and column.
    """
    path = Path(path)
    if not path.exists():
        raise RulesetError([Diagnostic(str(path), 0, 0, "not_found", "no such file or directory")])
    files = _ruleset_files(path)
    if not files:
        raise RulesetError([Diagnostic(str(path), 0, 0, "not_found", "the directory holds no .yaml ruleset")])
    if len(files) > MAX_VERSIONS:  # each version is read, checked and compiled: bound the work
        raise RulesetError([Diagnostic(str(files[MAX_VERSIONS]), 1, 1, "too_large",
                                       f"the directory holds {len(files)} .yaml files; a ruleset may have at most "
                                       f"{MAX_VERSIONS} versions")])
    return _load_versions(files, str(path))


def load_sources(sources: list[tuple[str, str]], name: str) -> Ruleset:
    """Load every version of one ruleset from (path, text) pairs — as the audit log stores them,
    so that a distributed run's workers compile exactly the ruleset its driver recorded."""
    return _load_versions([Source(path, text) for path, text in sources], name)


def _load_versions(files: list, name: str) -> Ruleset:
    diags: list[Diagnostic] = []
    read = [r for f in files if (r := _read_version(f, diags)) is not None]
    if diags:
        raise RulesetError(diags)
    if not all(isinstance(r, tuple) for r in read):  # an overlay, or the stored versions of one
        from .overlay import load_overlays
        return load_overlays(read, name)
    _check_windows(read, diags)
    checked = []
    for model, source, raw in sorted(read, key=lambda v: v[0].valid.from_):
        version = check_version(model, source, raw, diags)
        if version is not None:
            checked.append(version)
    if diags:
        raise RulesetError(diags)
    return Ruleset(checked[0].id, tuple(checked), name)


# -- checking one version --------------------------------------------------------------

def _scalar_type(spec: FieldSpec) -> Type:
    t = SCALARS[spec.type]
    return Type(t.kind, choices=spec.one_of) if spec.one_of else t


def _field_type(spec: FieldSpec, defaults: tuple = ()) -> Type:
    if spec.type == "list":
        items = spec.items or {}
        return Type("list", tuple((n, _scalar_type(s)) for n, s in items.items()),
                    frozenset(n for n, s in items.items() if s.optional and not s.has_default), defaults=defaults)
    return _scalar_type(spec)


def _template(source: Source, pos: Pos | None, text: str, names: set[str], diags: list[Diagnostic],
              scope_names: list[str]) -> Template:
    found = []
    for m in _PLACEHOLDER.finditer(text):
        name = m.group(1).strip()
        head = re.split(r"[:!.\[]", name, maxsplit=1)[0].strip()
        if name not in names and head in names:  # {amount:.2f}, {a!r}, {p.x}: a name, then something else
            p = Pos(pos.line, pos.column + m.start(1), src=pos.src) if pos and "\n" not in text[: m.start()] else pos
            diags.append(source.diag(p, "bad_placeholder", f'"{{{name}}}" in the reason text is not a plain name',
                                     length=max(1, len(name)), hint=f'write "{{{head}}}": values are formatted '
                                     "exactly, without format specifications"))
        elif name not in names:
            close = difflib.get_close_matches(name, scope_names, n=1)
            p = Pos(pos.line, pos.column + m.start(1), src=pos.src) if pos and "\n" not in text[: m.start()] else pos
            diags.append(source.diag(p, "unknown_name", f'"{{{name}}}" in the reason text is not a case field, '
                                     "parameter, derived value or value of this rule", length=max(1, len(name)),
                                     hint=f'did you mean "{close[0]}"?' if close else None, symbol=name,
                                     suggestion=close[0] if close else None))
        found.append(name)
    return Template(text, tuple(found))


def check_version(model: RulesetModel, source: Source, raw: YMap, diags: list[Diagnostic]) -> CheckedVersion | None:
    """Resolve names and check types of one version; append diagnostics, return None on failure."""
    start = len(diags)
    scope: dict[str, Symbol] = {}
    defaults: dict[str, object] = {}
    for name, spec in model.case.items():
        if not _valid_name(name):
            diags.append(source.diag(pos_of(raw, "case", name, key=True), "bad_name",
                                     f'"{name}" cannot be used in expressions', hint="use letters, digits and _"))
        item_defaults = []
        for iname, ispec in (spec.items or {}).items():
            if ispec.has_default:
                v = check_default(f"{name}[].{iname}", ispec, source,
                                  pos_of(raw, "case", name, "items", iname, "default"), diags)
                item_defaults.append((iname, v))
        default = None
        if spec.has_default:
            default = check_default(name, spec, source, pos_of(raw, "case", name, "default"), diags)
            defaults[name] = default
        scope[name] = Symbol("field", _field_type(spec, tuple(item_defaults)), spec.optional and not spec.has_default,
                             data=("default", default) if spec.has_default else None)
    for attr, kinds in (("decision_date", ("date",)), ("case_id", ("string", "int"))):
        fname = getattr(model, attr)
        spec = model.case.get(fname)
        if spec is None or spec.type not in kinds or spec.optional:
            diags.append(source.diag(pos_of(raw, attr), f"bad_{attr}",
                                     f'{attr} must name a required {" or ".join(kinds)} case field; '
                                     f'"{fname}" is ' + ("not a case field" if spec is None else
                                                         f"{'an optional ' if spec.optional else 'a '}{spec.type} field")))
        elif spec.pii:  # every record, work item and queue lookup of the audit log carries this value
            diags.append(source.diag(pos_of(raw, "case", fname, key=True), "pii_key_field",
                                     f'"{fname}" is the {attr} and cannot be marked pii: the audit log stores it '
                                     "with every record even when personal data is dropped or pseudonymised",
                                     length=len(fname), hint="use a reference that is not personal data" if attr == "case_id" else
                                     "decide by a date that is not personal data"))
    parameters: dict[str, ParameterTable] = {}
    for name, param in model.parameters.items():
        ppos = pos_of(raw, "parameters", name, key=True)
        if name in scope:
            diags.append(source.diag(ppos, "duplicate_name", f'parameter "{name}" has the name of a case field'))
            continue
        if not _valid_name(name):
            diags.append(source.diag(ppos, "bad_name", f'"{name}" cannot be used in expressions'))
        table = check_parameter(name, param, source, raw, diags)
        if table is None:
            scope[name] = Symbol("broken", Type("broken"))  # reported here, not again where it is used
            continue
        parameters[name] = table
        scope[name] = Symbol("parameter", table.type, data=table)

    d = check_derive(model, source, raw, scope, diags)
    derived, derived_fields, derived_loads, derived_deps = d.values, d.fields, d.loads, d.deps
    measured, item_functions, unchecked = d.measured, d.item_functions, d.unchecked

    rules: list[CheckedRule] = []
    seen_ids: dict[str, int] = {}
    outcomes = set(model.outcomes)
    entries = [(("rules", i), r) for i, r in enumerate(model.rules)] + [(("otherwise",), model.otherwise)]
    for idx, (path, rule) in enumerate(entries):
        rid = getattr(rule, "id", "otherwise")
        if rid in seen_ids:
            diags.append(source.diag(pos_of(raw, *path, "id"), "duplicate_rule", f'rule id "{rid}" is used twice'))
        seen_ids[rid] = idx
        when = None
        if path[0] == "rules":
            when = check_expr(source, pos_of(raw, *path, "when"), rule.when, scope, diags, expect=BOOL,
                              what="condition", derived=measured)
            if when is None:
                unchecked.append(pos_of(raw, *path, "when"))
        values: dict[str, CheckedExpr] = {}
        for vname, vtext in rule.values.items():
            if not _valid_name(vname):
                diags.append(source.diag(pos_of(raw, *path, "values", vname, key=True), "bad_name",
                                         f'"{vname}" is not a valid value name'))
            e = check_expr(source, pos_of(raw, *path, "values", vname), vtext, scope, diags, what=f'value "{vname}"',
                           derived=measured)
            if e is not None:
                values[vname] = e
            else:
                unchecked.append(pos_of(raw, *path, "values", vname))
        tnames = {n for n, sym in scope.items() if sym.kind != "itemfn"} | set(rule.values)
        because = _template(source, pos_of(raw, *path, "because"), rule.because, tnames, diags,
                            sorted(tnames))
        rules.append(CheckedRule(idx, rid, rule.basis, when, rule.decide, rule.refer, values, because))
    for outcome in model.automate:
        if outcome not in outcomes:
            close = difflib.get_close_matches(outcome, sorted(outcomes), n=1)
            diags.append(source.diag(pos_of(raw, "automate"), "unknown_outcome",
                                     f'automate names "{outcome}", which no rule decides',
                                     hint=f'did you mean "{close[0]}"?' if close else None))
    if unchecked and len(diags) == start:  # never a rule without its condition or a value
        diags.append(source.diag(unchecked[0], "internal_error", "this expression failed a check that gave no "
                                 "reason: a fault in vedtak, please report it with this ruleset"))
    if len(diags) > start:
        return None

    sha = hashlib.sha256(source.text.encode("utf-8")).hexdigest()
    version = CheckedVersion(model, source, raw, sha, scope, parameters, derived, derived_fields,
                             derived_loads, derived_deps, rules, item_functions=item_functions, defaults=defaults)
    for rule in rules:
        names = rule.when.names if rule.when else frozenset()
        guarded = rule.when.known if rule.when else frozenset()
        rule.reads = version.expand(names)
        rule.needs_optional = tuple(sorted(f for f in version.fields_read(names)
                                           if scope[f].optional and f not in guarded))
        vnames = set().union(*(e.names for e in rule.values.values())) if rule.values else set()
        vnames |= {n for n in rule.because.names if n in scope}
        vguarded = set().union(*(e.known for e in rule.values.values())) if rule.values else set()
        rule.values_optional = tuple(sorted(f for f in version.fields_read(vnames)
                                            if scope[f].optional and f not in vguarded))
    version.segments = _segments(version)
    if len(version.segments) > MAX_PERIODS:  # each period is compiled on its own: bound the work
        diags.append(source.diag(pos_of(raw, "parameters", key=True), "too_large",
                                 f"the parameters change on {len(version.segments)} dates in this version; "
                                 f"the limit is {MAX_PERIODS}", hint="split it into versions, each valid "
                                 "(valid: from/to) for part of the time"))
        return None
    # the compiler copies each derived value into every rule that uses it, once per period: bound the code
    code = sum((r.when.size if r.when else 0) + sum(e.size for e in r.values.values())
               + sum(measured[n][1] for n in r.because.names if n in measured) for r in rules)
    if code * len(version.segments) > MAX_COMPILED:
        diags.append(source.diag(pos_of(raw, "rules", key=True), "too_large",
                                 f"the rules would compile to {code * len(version.segments)} parts ({code} per "
                                 f"parameter period, {len(version.segments)} periods); the limit is {MAX_COMPILED}",
                                 hint="derived values are copied into each rule that uses them: use large ones "
                                      "in fewer rules, or split the version"))
        return None
    _check_examples(version, diags)
    return None if len(diags) > start else version


def _segments(version: CheckedVersion) -> list[tuple[date, dict]]:
    """Split the validity window at every parameter change: within a segment all parameters are fixed."""
    window = version.model.valid
    cuts = {window.from_}
    for table in version.parameters.values():
        for since, _ in table.values:
            if since > window.from_ and (window.to is None or since <= window.to):
                cuts.add(since)
    return [(cut, {n: t.at(cut) for n, t in version.parameters.items()}) for cut in sorted(cuts)]


def _check_examples(version: CheckedVersion, diags: list[Diagnostic]) -> None:
    model, source, raw = version.model, version.source, version.raw
    rule_ids = [r.id for r in version.rules]
    for i, ex in enumerate(model.examples):
        exp = ex.expect
        if exp.rule is not None and exp.rule not in rule_ids:
            close = difflib.get_close_matches(exp.rule, rule_ids, n=1)
            diags.append(source.diag(pos_of(raw, "examples", i, "expect", "rule"), "unknown_rule",
                                     f'example "{ex.name}" expects rule "{exp.rule}", which does not exist',
                                     hint=f'did you mean "{close[0]}"?' if close else None))
        if exp.outcome is not None and exp.outcome not in model.outcomes:
            diags.append(source.diag(pos_of(raw, "examples", i, "expect", "outcome"), "unknown_outcome",
                                     f'example "{ex.name}" expects outcome "{exp.outcome}", which no rule decides'))
