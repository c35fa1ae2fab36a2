"""Overlays: a small file over a base ruleset (a reform, a what-if, a correction) that replaces
parameters and replaces, inserts or removes rules by id, merged into checked versions of the base.

An overlay file::

    ruleset: study-grant                  # the base's id
    extends: ../study-grant               # a ruleset file or directory, relative to this file
    version: "2024.1+limit-250k"          # the overlaid version's name (base version + this, if the
                                          # base has several versions)
    parameters:                           # each replaces the parameter of that name in every base
      INCOME_LIMIT: {unit: NOK, values: {2020-01-01: 250000}}   # version that has it
    rules:
      replace: [{id: grant, ...}]         # by id
      insert: [{after: grant, id: new-rule, ...}]   # or before: ID
      remove: [late-application]
    examples: [...]                       # optional: replace the base's examples

Each base version is merged with the overlay at the level of the YAML mappings (every entry keeps
its own position, in its own file) and then checked exactly as a ruleset is. The merged version's
source is a *bundle*, a JSON text holding the base version's source and the overlay's
(:func:`bundle_text`): its SHA-256 covers both, the audit log stores both, and ``load_text`` of a
bundle rebuilds the overlaid version from the texts alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from ..errors import Diagnostic, RulesetError
from .load import CheckedVersion, Ruleset, _check_windows, _read_version, check_version, load
from .locate import model_errors, pos_of
from .model import RulesetModel
from .source import Pos, Source, YList, YMap

OVERLAY_KEYS = ("ruleset", "extends", "version", "title", "description", "notice", "sources",
                "parameters", "rules", "examples")
RULE_CHANGES = ("replace", "insert", "remove")
MAX_DEPTH = 8  # overlays of overlays: a chain longer than this is refused (too_deep)
_BUNDLE_KEYS = {"base", "overlay", "vedtak", "version"}
_chain: ContextVar[tuple[str, ...]] = ContextVar("vedtak_overlay_chain", default=())


@dataclass
class OverlayInfo:
    """What an overlay changed in one base version: ``vedtak docs`` shows it, lint checks it."""

    source: Source  # the overlay file
    base: CheckedVersion  # the version it was applied to
    extends: str  # the base, as the overlay names it
    extends_pos: Pos | None
    parameters: tuple[str, ...]  # parameters replaced in this version
    replaced: tuple[str, ...]  # rule ids replaced in this version
    inserted: tuple[tuple[str, str, str], ...]  # (rule id, "after" or "before", anchor id)
    removed: tuple[str, ...]

    def changes_nothing(self, version: CheckedVersion) -> bool:
        """Whether the overlaid ``version`` decides as its base: every replaced parameter and rule
        equal to the base's (descriptions aside), nothing inserted or removed."""
        if self.inserted or self.removed:
            return False
        for name in self.parameters:
            if _plain(self.base.model.parameters[name], "description", "basis") != \
                    _plain(version.model.parameters[name], "description", "basis"):
                return False
        old = {r.id: r for r in self.base.model.rules}
        new = {r.id: r for r in version.model.rules}
        return all(_plain(old[i], "description") == _plain(new[i], "description") for i in self.replaced)


def _plain(model, *left_out: str) -> dict:
    return model.model_dump(exclude=set(left_out))


@dataclass
class Pending:
    """A file read as an overlay (``data``), or a stored overlaid version (``bundle``), not yet merged."""

    source: Source
    data: YMap | None = None
    bundle: dict | None = None


def bundle_text(base: str, overlay: str, version: str) -> str:
    """The source text of an overlaid version: deterministic JSON of both sources and its name."""
    return json.dumps({"base": base, "overlay": overlay, "vedtak": "overlay", "version": version},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def read_bundle(source: Source) -> Pending | None:
    """A stored overlaid version (a bundle text) as a Pending overlay; None for any other text."""
    if not source.text.startswith('{"base":'):
        return None
    try:
        data = json.loads(source.text)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != _BUNDLE_KEYS or data["vedtak"] != "overlay" \
            or not all(isinstance(data[k], str) for k in _BUNDLE_KEYS):
        return None
    return Pending(source, bundle=data)


def is_overlay(data) -> bool:
    """Whether a ruleset file's top-level mapping makes it an overlay."""
    return isinstance(data, YMap) and "extends" in data


# -- loading ----------------------------------------------------------------------------------

def load_overlays(read: list, name: str) -> Ruleset:
    """The Ruleset of files read by load.py of which at least one is an overlay: one overlay file
    alone, or the stored versions (bundles) of one overlaid ruleset."""
    diags: list[Diagnostic] = []
    files = [r for r in read if isinstance(r, Pending) and r.data is not None]
    if files:
        if len(read) > 1:
            for r in files:
                diags.append(r.source.diag(pos_of(r.data, "extends", key=True), "mixed_rulesets",
                                           "an overlay must be the only .yaml file of its directory",
                                           length=len("extends"), hint="move the overlay into a directory of "
                                           "its own, or load the overlay file itself"))
            raise RulesetError(diags)
        versions = _from_file(files[0], diags)
    else:
        versions = []
        for r in read:
            if isinstance(r, Pending):
                version = _rebuild(r, diags)
            else:  # a stored version that is no overlay, beside overlaid ones
                version = check_version(*r, diags)
            if version is not None:
                versions.append(version)
        if not diags:
            _check_windows([(v.model, v.source, v.raw) for v in versions], diags)
    if diags or not versions:  # a mistake in the overlay is found once per base version: reported once
        raise RulesetError(list(dict.fromkeys(diags)) or [Diagnostic(name, 0, 0, "not_found", "no version was loaded")])
    return Ruleset(versions[0].id, tuple(sorted(versions, key=lambda v: v.model.valid.from_)), name)


def _from_file(pending: Pending, diags: list[Diagnostic]) -> list[CheckedVersion]:
    """An overlay file merged with the base it extends, loaded from disk."""
    source, data = pending.source, pending.data
    assert data is not None
    _stamp(data, source)
    if not _check_form(source, data, diags):
        return []
    extends = data["extends"]
    epos = pos_of(data, "extends")
    me = os.path.realpath(source.path)
    chain = _chain.get()
    if me in chain:
        names = [os.path.relpath(p) for p in chain[chain.index(me):]] + [os.path.relpath(me)]
        diags.append(source.diag(epos, "overlay_cycle", "overlays extend each other in a cycle: "
                                 + " -> ".join(names), length=len(extends),
                                 hint="an overlay extends a ruleset, or an overlay of one, never itself"))
        return []
    if len(chain) >= MAX_DEPTH:
        diags.append(source.diag(epos, "too_deep", f"overlays extend overlays more than {MAX_DEPTH} deep here",
                                 length=len(extends), hint="merge some of the overlays into one"))
        return []
    target = Path(source.path).parent / extends
    if not target.exists():
        diags.append(source.diag(epos, "not_found", f'the base "{extends}" does not exist (looked for {target})',
                                 length=len(extends), hint="`extends` is relative to the overlay file's directory"))
        return []
    if target.is_file() and target.suffix not in (".yaml", ".yml"):  # never read (nor quote) another file
        diags.append(source.diag(epos, "not_found", f'the base "{extends}" is not a .yaml ruleset file',
                                 length=len(extends), hint="extend a ruleset's .yaml file or its directory"))
        return []
    token = _chain.set(chain + (me,))
    try:
        base = load(target)
    except RulesetError as exc:  # located in the base's own files
        diags.extend(exc.diagnostics)
        return []
    finally:
        _chain.reset(token)
    if data["ruleset"] != base.id:
        diags.append(source.diag(pos_of(data, "ruleset"), "mixed_rulesets",
                                 f'the overlay is for ruleset "{data["ruleset"]}", but it extends ruleset '
                                 f'"{base.id}" ({extends})', length=len(str(data["ruleset"])),
                                 hint=f'write `ruleset: {base.id}`, or extend a version of "{data["ruleset"]}"'))
        return []
    if not _check_names(source, data, list(base.versions), diags):
        return []
    own = _text(data["version"])
    out = []
    for version in base.versions:
        name = own if len(base.versions) == 1 else f"{version.version}+{own}"
        merged = merge(source, data, version, name, diags)
        if merged is not None:
            out.append(merged)
    return out


def _rebuild(pending: Pending, diags: list[Diagnostic], depth: int = 0) -> CheckedVersion | None:
    """A stored overlaid version from its bundle alone (its `extends` is not followed)."""
    bundle = pending.bundle
    assert bundle is not None
    path = pending.source.path
    if depth >= MAX_DEPTH:
        diags.append(pending.source.diag(None, "too_deep", f"the stored overlay nests overlays more than "
                                         f"{MAX_DEPTH} deep"))
        return None
    base = _single(Source(f"{path} (base)", bundle["base"]), diags, depth + 1)
    if base is None:
        return None
    source = Source(path, bundle["overlay"])
    data, problems = source.parse_yaml()
    diags.extend(problems)
    if problems or not isinstance(data, YMap):
        if not problems:
            diags.append(source.diag(None, "invalid_value", "the stored overlay is not a YAML mapping"))
        return None
    _stamp(data, source)
    if not _check_form(source, data, diags):
        return None
    return merge(source, data, base, bundle["version"], diags, text=pending.source.text)


def _single(source: Source, diags: list[Diagnostic], depth: int) -> CheckedVersion | None:
    read = _read_version(source, diags)
    if read is None:
        return None
    if isinstance(read, Pending):
        if read.bundle is None:
            diags.append(source.diag(pos_of(read.data, "extends"), "invalid_value",
                                     "a stored base version is an overlay file, not its merged version"))
            return None
        return _rebuild(read, diags, depth)
    return check_version(*read, diags)


# -- the form of an overlay file ---------------------------------------------------------------

def _check_form(source: Source, data: YMap, diags: list[Diagnostic]) -> bool:
    """Unknown and missing keys, and the shape of `rules:`; the merged version checks the rest."""
    start = len(diags)
    for key in data:
        if key not in OVERLAY_KEYS:
            _unknown_key(source, data, key, OVERLAY_KEYS, diags, "an overlay")
    for key in ("ruleset", "extends", "version"):
        if key not in data:
            diags.append(source.diag(data.pos, "missing_key", f'"{key}" is required in an overlay'))
        elif key == "version" and isinstance(data[key], (int, Decimal)) and not isinstance(data[key], bool):
            continue
        elif not isinstance(data[key], str) or not data[key].strip():
            diags.append(source.diag(pos_of(data, key), "invalid_value", f"{key}: must be a non-empty text"))
    if "parameters" in data and not isinstance(data["parameters"], YMap):
        diags.append(source.diag(pos_of(data, "parameters"), "invalid_value",
                                 "parameters: must map parameter names to their replacements"))
    rules = data.get("rules")
    if "rules" in data and not isinstance(rules, YMap):
        diags.append(source.diag(pos_of(data, "rules"), "invalid_value",
                                 "rules: must be a mapping of replace, insert and remove",
                                 hint="e.g. `rules: {remove: [late-application]}`"))
    elif isinstance(rules, YMap):
        for key in rules:
            if key not in RULE_CHANGES:
                _unknown_key(source, rules, key, RULE_CHANGES, diags, "rules")
        for key in RULE_CHANGES:
            items = rules.get(key)
            if key in rules and not isinstance(items, YList):
                diags.append(source.diag(pos_of(rules, key), "invalid_value", f"rules.{key}: must be a list"))
                continue
            for i, item in enumerate(items or ()):
                where = pos_of(rules, key, i)
                if key == "remove":
                    if not isinstance(item, str):
                        diags.append(source.diag(where, "invalid_value", "rules.remove: each item is a rule id"))
                    continue
                if not isinstance(item, YMap) or not isinstance(item.get("id"), str):
                    diags.append(source.diag(where, "invalid_value", f"rules.{key}[{i}]: must be a rule with an `id`"))
                    continue
                anchors = [a for a in ("after", "before") if a in item]
                if key == "insert" and len(anchors) != 1:
                    diags.append(source.diag(where, "invalid_value", f'rules.insert: rule "{item["id"]}" needs '
                                             "exactly one of `after: ID` or `before: ID`",
                                             hint="name the rule it goes after (or before)"))
                elif key == "insert" and not isinstance(item[anchors[0]], str):
                    diags.append(source.diag(pos_of(item, anchors[0]), "invalid_value",
                                             f"rules.insert: `{anchors[0]}` must be a rule id"))
    return len(diags) == start


def _unknown_key(source: Source, where: YMap, key, allowed, diags: list[Diagnostic], what: str) -> None:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    diags.append(source.diag(pos_of(where, key, key=True), "unknown_key", f'unknown key "{key}" in {what}',
                             length=len(str(key)), hint=f'did you mean "{close[0]}"?' if close else
                             "an overlay has " + ", ".join(allowed), symbol=str(key),
                             suggestion=close[0] if close else None))


def _check_names(source: Source, data: YMap, bases: list[CheckedVersion], diags: list[Diagnostic]) -> bool:
    """Every parameter and rule the overlay names is in at least one base version."""
    start = len(diags)
    params = sorted({n for v in bases for n in v.model.parameters})
    for name in data.get("parameters") or {}:
        if name not in params:
            close = difflib.get_close_matches(str(name), params, n=1)
            diags.append(source.diag(pos_of(data, "parameters", name, key=True), "unknown_parameter",
                                     f'the base has no parameter "{name}" to replace', length=len(str(name)),
                                     hint=f'did you mean "{close[0]}"?' if close else
                                     "an overlay replaces parameters of its base; it cannot add one",
                                     symbol=str(name), suggestion=close[0] if close else None))
    ids = sorted({r.id for v in bases for r in v.model.rules})
    rules = data.get("rules") or {}
    named = [(("replace", i, "id"), item["id"], "replace") for i, item in enumerate(rules.get("replace") or ())]
    named += [(("remove", i), item, "remove") for i, item in enumerate(rules.get("remove") or ())]
    inserted: set[str] = set()
    for i, item in enumerate(rules.get("insert") or ()):
        anchor = "after" if "after" in item else "before"
        if item[anchor] not in inserted:  # next to a rule this overlay inserted before it is fine
            named.append((("insert", i, anchor), item[anchor], f"insert {anchor}"))
        inserted.add(item["id"])
    removing = {r for r in rules.get("remove") or () if isinstance(r, str)}
    for i, item in enumerate(rules.get("insert") or ()):
        anchor = "after" if "after" in item else "before"
        if item[anchor] in removing:
            diags.append(source.diag(pos_of(rules, "insert", i, anchor), "unknown_rule",
                                     f'rules.insert places rule "{item["id"]}" {anchor} rule "{item[anchor]}", '
                                     "which this overlay removes", length=len(str(item[anchor])),
                                     hint="anchor it on a rule that stays, or replace the rule instead"))
        if item["id"] in ids and item["id"] not in removing:
            diags.append(source.diag(pos_of(rules, "insert", i, "id"), "duplicate_rule",
                                     f'rules.insert adds rule "{item["id"]}", an id the base already has',
                                     length=len(str(item["id"])), hint="use `replace` to change that rule"))
    for path, rid, what in named:
        if rid not in ids:
            close = difflib.get_close_matches(rid, ids, n=1)
            diags.append(source.diag(pos_of(rules, *path), "unknown_rule",
                                     f'rules.{what} names rule "{rid}", which no base version has',
                                     length=len(rid), hint=f'did you mean "{close[0]}"?' if close else None,
                                     symbol=rid, suggestion=close[0] if close else None))
    return len(diags) == start


def _text(value) -> str:
    return str(value) if isinstance(value, (int, Decimal)) and not isinstance(value, bool) else value


# -- merging ------------------------------------------------------------------------------------

def merge(source: Source, data: YMap, base: CheckedVersion, name: str, diags: list[Diagnostic], *,
          text: str | None = None) -> CheckedVersion | None:
    """The base version with the overlay ``data`` (from ``source``) applied, checked like a ruleset,
    named ``name``; None (and diagnostics) if it does not check."""
    _stamp(base.raw, base.source)
    raw = _copy_map(base.raw)
    for key in ("title", "description", "notice", "sources", "examples"):
        if key in data:
            _put(raw, key, data, key)
    _put(raw, "version", data, "version", value=name)
    replaced_params: list[str] = []
    if "parameters" in data:
        params = _copy_map(base.raw["parameters"]) if isinstance(base.raw.get("parameters"), YMap) else None
        for pname in data["parameters"]:
            if params is not None and pname in params:
                _put(params, pname, data["parameters"], pname)
                replaced_params.append(pname)
        if params is not None:
            raw["parameters"] = params
    rules = data.get("rules") or {}
    entries = list(zip(base.raw["rules"], base.raw["rules"].item_pos))
    replaced, inserted, removed = [], [], []
    for i, item in enumerate(rules.get("replace") or ()):
        for j, (old, _) in enumerate(entries):
            if isinstance(old, dict) and old.get("id") == item["id"]:
                entries[j] = (item, pos_of(rules, "replace", i))
                replaced.append(item["id"])
    gone = set(rules.get("remove") or ())
    removed = [e[0].get("id") for e in entries if isinstance(e[0], dict) and e[0].get("id") in gone]
    entries = [e for e in entries if not (isinstance(e[0], dict) and e[0].get("id") in gone)]
    for i, item in enumerate(rules.get("insert") or ()):
        anchor = "after" if "after" in item else "before"
        at = next((j for j, (old, _) in enumerate(entries) if isinstance(old, dict)
                   and old.get("id") == item[anchor]), None)
        if at is None:  # not in this version: inserted in the versions that have it
            continue
        rule = _copy_map(item)
        for key in ("after", "before"):
            rule.pop(key, None)
        entries.insert(at + 1 if anchor == "after" else at, (rule, pos_of(rules, "insert", i)))
        inserted.append((item["id"], anchor, item[anchor]))
    merged_rules = YList(e[0] for e in entries)
    merged_rules.item_pos = [e[1] for e in entries]
    merged_rules.pos = base.raw["rules"].pos
    raw["rules"] = merged_rules
    raw.pos = data.pos  # a problem with no position of its own is the overlay's

    bundle = Source(source.path, text if text is not None else bundle_text(base.source.text, source.text, name))
    try:
        model = RulesetModel.model_validate(raw)
    except ValidationError as exc:
        diags.extend(model_errors(source, raw, exc))
        return None
    start = len(diags)
    version = check_version(model, bundle, raw, diags)
    if version is None:
        changes = [f"removes {', '.join(removed)}" if removed else "", f"replaces {', '.join(replaced)}" if replaced
                   else "", f"inserts {', '.join(i[0] for i in inserted)}" if inserted else "",
                   f"replaces parameters {', '.join(replaced_params)}" if replaced_params else ""]
        said = "; ".join(c for c in changes if c)
        for i in range(start, len(diags)):  # a problem the overlay caused in its base's lines: say so there
            if said and diags[i].file != source.path:
                note = f"found in the base as {source.path} changes it ({said})"
                diags[i] = dataclasses.replace(diags[i], hint=f"{diags[i].hint}; {note}" if diags[i].hint else note)
        return None
    version.overlay = OverlayInfo(source, base, str(data["extends"]), pos_of(data, "extends"),
                                  tuple(replaced_params), tuple(replaced), tuple(inserted), tuple(removed))
    return version


def _copy_map(m: YMap) -> YMap:
    out = YMap(m)
    out.key_pos, out.val_pos, out.pos = dict(m.key_pos), dict(m.val_pos), m.pos
    return out


def _put(target: YMap, key, source: YMap, skey, *, value=None) -> None:
    target[key] = source[skey] if value is None else value
    target.key_pos[key], target.val_pos[key] = source.key_pos[skey], source.val_pos[skey]


def _stamp(node, source: Source) -> None:
    """Mark every position in a YAML tree with the file it is in (positions already marked are kept)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, YMap):
            n.pos = _at(n.pos, source)
            n.key_pos = {k: _at(p, source) for k, p in n.key_pos.items()}
            n.val_pos = {k: _at(p, source) for k, p in n.val_pos.items()}
            stack.extend(n.values())
        elif isinstance(n, YList):
            n.pos = _at(n.pos, source)
            n.item_pos = [_at(p, source) for p in n.item_pos]
            stack.extend(n)


def _at(pos: Pos | None, source: Source) -> Pos | None:
    return pos if pos is None or pos.src is not None else dataclasses.replace(pos, src=source)


def source_files(version: CheckedVersion) -> list[str]:
    """The files a checked version was read from: for an overlaid version, the overlay's and its base's
    (so that no command writes its output over one of them)."""
    out = [version.source.path]
    info = getattr(version, "overlay", None)
    while info is not None:
        out.append(info.base.source.path)
        info = getattr(info.base, "overlay", None)
    return out


# -- lint --------------------------------------------------------------------------------------

def lint_overlay(ruleset: Ruleset) -> list[Diagnostic]:
    """An overlay that changes nothing in any version: the finding ``overlay_changes_nothing``."""
    infos = [(v, v.overlay) for v in ruleset.versions if getattr(v, "overlay", None) is not None]
    if not infos or len(infos) != len(ruleset.versions) or not all(o.changes_nothing(v) for v, o in infos):
        return []
    info = infos[0][1]
    return [info.source.diag(info.extends_pos, "overlay_changes_nothing",
                             f'the overlay changes nothing in "{info.extends}": every parameter and rule it '
                             "replaces is the same as the base's, and it inserts and removes no rule",
                             severity="warning", length=len(info.extends),
                             hint="replace a parameter with another value, or change a rule")]


# -- what-if: replay --set NAME=VALUE ----------------------------------------------------------

class WhatIfError(ValueError):
    """A --set NAME=VALUE that cannot be applied: an unknown name, or a value of the wrong type."""


def parse_setting(spec: str) -> tuple[str, object]:
    """NAME=VALUE with VALUE read as a YAML scalar: an exact number, a date, true/false or text."""
    name, eq, text = spec.partition("=")
    name = name.strip()
    if not eq or not name:
        raise WhatIfError(f"{spec}: write NAME=VALUE, e.g. --set INCOME_LIMIT=250000")
    value, problems = Source("--set", text).parse_yaml()
    if problems:
        raise WhatIfError(f"{spec}: {problems[0].message}")
    if value is None and text.strip():
        raise WhatIfError(f"{spec}: null is no value to decide with (a parameter ends with null in a ruleset "
                          "or an overlay, not with --set)")
    if value is None:
        raise WhatIfError(f"{spec}: no value after =")
    if isinstance(value, (YMap, YList)):
        raise WhatIfError(f"{spec}: the value must be one number, date, true/false or text")
    return name, value


def _shown(value) -> str:
    """A --set value as it was written: true/false, not Python's True/False."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, Decimal)):
        return "number"
    if isinstance(value, date):
        return "date"
    return "text"


def what_if(base: CheckedVersion, settings: dict[str, object]) -> CheckedVersion:
    """The base version with each named parameter it has replaced by one value for all dates (an
    in-memory overlay); raises :class:`WhatIfError` for a value of the wrong type."""
    params = base.raw.get("parameters")
    names = [n for n in settings if isinstance(params, YMap) and n in params]
    if not names:
        return base
    spec = "\n".join(f"{n}={settings[n]}" for n in names)
    source = Source("--set", spec)
    overlay = _ymap({"ruleset": base.id, "extends": "(the stored ruleset)", "version": f"{base.version}+what-if",
                     "parameters": {}}, Pos(1, 1, src=source))
    for name in names:
        old = params[name]
        values = old.get("values") if isinstance(old, dict) else None
        if not isinstance(values, dict) or not values:
            kind = "a scale" if isinstance(old, dict) and "scale" in old else "a table"
            raise WhatIfError(f"--set {name}: {name} is {kind} in {base.id} {base.version}; --set replaces a "
                              "parameter of single values (write an overlay to change a scale or a table)")
        kinds = {_kind(v) for v in values.values() if v is not None}
        if _kind(settings[name]) not in kinds:
            raise WhatIfError(f"--set {name}={_shown(settings[name])}: {name} holds {' or '.join(sorted(kinds))} "
                              f"values in {base.id} {base.version}, not {_kind(settings[name])}")
        first = min([k for k in values if isinstance(k, date)] + [base.model.valid.from_])
        new = {k: v for k, v in old.items() if k != "values"}
        new["values"] = {first: settings[name]}
        overlay["parameters"][name] = _ymap(new, Pos(1, 1, src=source))
        overlay["parameters"].key_pos[name] = overlay["parameters"].val_pos[name] = Pos(1, 1, src=source)
    diags: list[Diagnostic] = []
    version = merge(source, overlay, base, f"{base.version}+what-if", diags)
    if version is None:
        raise WhatIfError(f"--set {spec.replace(chr(10), ' ')}: {base.id} {base.version} does not check with it: "
                          + "; ".join(d.format().splitlines()[0] for d in diags[:3]))
    return version


def _ymap(value, pos: Pos):
    """Plain data as a YAML tree, every position at ``pos``."""
    if isinstance(value, dict):
        out = YMap({k: _ymap(v, pos) for k, v in value.items()})
        out.key_pos, out.val_pos, out.pos = {k: pos for k in value}, {k: pos for k in value}, pos
        return out
    if isinstance(value, list):
        items = YList(_ymap(v, pos) for v in value)
        items.item_pos, items.pos = [pos] * len(value), pos
        return items
    return value


__all__ = ["OverlayInfo", "WhatIfError", "bundle_text", "lint_overlay", "load_overlays", "merge",
           "parse_setting", "source_files", "what_if"]
