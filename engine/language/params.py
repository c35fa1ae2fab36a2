"""Parameters: effective-dated values, scales (brackets) and tables (values by key), checked at load.

Each parameter becomes a :class:`ParameterTable`: its type and its dated values, sorted. A
value of ``None`` from a date on means that nothing is in force from that day: a rule that
needs the parameter then refers the case (``missing-parameter``). A scale's dated value is a
:class:`vedtak.evaluation.runtime.Scale`, a table's a plain dict from key to value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ..errors import Diagnostic
from .expr import DECIMAL, INT, SCALARS, STRING, Type
from .limits import DIGITS, clip, number_in_range
from .locate import pos_of
from .model import FieldSpec, Parameter
from ..evaluation.runtime import Scale
from .source import Source, YMap


@dataclass
class ParameterTable:
    name: str
    type: Type
    values: tuple[tuple[date, object], ...]  # sorted by date; None: no value in force from that date
    unit: str | None
    kind: str = "values"  # "values", "scale" or "table"

    def at(self, day: date):
        """The value in force on ``day``, or None if the parameter has no value then."""
        found = None
        for since, value in self.values:
            if since <= day:
                found = value
            else:
                break
        return found


def scalar_kind(v) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, Decimal):
        return "decimal"
    if isinstance(v, date):
        return "date"
    if isinstance(v, str):
        return "string"
    return None


def values_type(values, unit: str | None) -> Type | str:
    """The one type of a parameter's (or a table's) values, or a text saying why there is none."""
    kinds = {scalar_kind(v) for v in values if v is not None}
    kinds.discard(None)
    if kinds <= {"int", "decimal"} and kinds:
        return DECIMAL if ("decimal" in kinds or unit) else INT
    if len(kinds) == 1:
        return SCALARS[kinds.pop()]
    return "values of mixed types: " + ", ".join(sorted(kinds))  # type: ignore[arg-type]


def _wide(v) -> bool:
    """Whether a number is beyond what the engine holds exactly."""
    if isinstance(v, bool) or not isinstance(v, (int, Decimal)):
        return False
    return not number_in_range(Decimal(v) if isinstance(v, Decimal) or v.bit_length() < 256 else Decimal("Inf"))


def _range_diag(source: Source, pos, name: str, where: str, v) -> Diagnostic:
    return source.diag(pos, "out_of_range", f'parameter "{name}" {where}: the number {clip(str(v))} is out of range',
                       hint=f"a number has at most {DIGITS} significant digits and is below 10^{DIGITS}")


def check_parameter(name: str, param: Parameter, source: Source, raw: YMap,
                    diags: list[Diagnostic]) -> ParameterTable | None:
    """The checked table of one parameter, or None after appending located diagnostics."""
    start = len(diags)
    if param.scale is not None:
        return _check_scale(name, param, source, raw, diags)
    if param.table is not None:
        return _check_table(name, param, source, raw, diags)
    assert param.values is not None
    if _text_with_unit(name, param, param.values, ("values",), source, raw, diags):
        return None
    t = values_type(param.values.values(), param.unit)
    if isinstance(t, str):
        placeholder = any(isinstance(v, str) and v.strip().lower() in _PLACEHOLDERS for v in param.values.values())
        diags.append(source.diag(pos_of(raw, "parameters", name, "values"), "type_mismatch",
                                 f'parameter "{name}" has {t}',
                                 hint="write null (unquoted) for no value in force from that date" if placeholder
                                 else "give every value of a parameter one type"))
        return None
    for day, v in param.values.items():
        if _wide(v):
            diags.append(_range_diag(source, pos_of(raw, "parameters", name, "values", day), name, f"on {day}", v))
    if len(diags) > start:
        return None
    values = tuple(sorted(param.values.items()))
    if t == DECIMAL:
        values = tuple((d, None if v is None else Decimal(v)) for d, v in values)
    return ParameterTable(name, t, values, param.unit)


_PLACEHOLDERS = ("none", "null", "nil", "-", "n/a", "")


def _text_with_unit(name: str, param: Parameter, values: dict, path: tuple, source: Source, raw: YMap,
                    diags: list[Diagnostic]) -> bool:
    """A parameter with a `unit` holds numbers: a text value (YAML reads 1e5 as text) is located
    where it is written, not where it is used."""
    if not param.unit:
        return False
    found = False
    for key, v in values.items():
        if isinstance(v, str):
            try:
                number = Decimal(v.replace("_", ""))
                hint = f"write it as a plain number, e.g. {number:f}" if number.is_finite() else None
            except ArithmeticError:
                hint = "write a number"
            if v.strip().lower() in _PLACEHOLDERS:
                hint = "write null (unquoted) for no value in force from that date"
            diags.append(source.diag(pos_of(raw, "parameters", name, *path, key), "type_mismatch",
                                     f'parameter "{name}" has a unit ({param.unit}), so its values are numbers; '
                                     f'"{clip(v)}" is text', hint=hint))
            found = True
    return found


def _check_scale(name: str, param: Parameter, source: Source, raw: YMap, diags: list[Diagnostic]) -> ParameterTable | None:
    start = len(diags)
    kinds = set()
    dated = []
    for day, brackets in sorted(param.scale.items()):  # type: ignore[union-attr]
        if brackets is None:
            dated.append((day, None))
            continue
        kinds |= {"rate" if b.rate is not None else "amount" for b in brackets}
        for i, b in enumerate(brackets):
            for key, v in (("from", b.from_), ("rate", b.rate), ("amount", b.amount)):
                if v is not None and _wide(v):
                    diags.append(_range_diag(source, pos_of(raw, "parameters", name, "scale", day, i, key), name,
                                             f"on {day}, bracket {i + 1}", v))
        for i in range(1, len(brackets)):
            if brackets[i].from_ <= brackets[i - 1].from_:
                diags.append(source.diag(pos_of(raw, "parameters", name, "scale", day, i, "from"),
                                         "scale_not_ascending",
                                         f'scale "{name}" on {day}: bracket {i + 1} starts at {brackets[i].from_}, '
                                         f"not above bracket {i}'s {brackets[i - 1].from_}",
                                         hint="list the brackets by their `from`, each above the one before"))
        dated.append((day, brackets))
    if len(kinds) > 1:
        diags.append(source.diag(pos_of(raw, "parameters", name, "scale"), "type_mismatch",
                                 f'scale "{name}" mixes brackets with `rate` and with `amount`',
                                 hint="a scale's brackets all have a rate (for marginal()) or all an amount"))
    if len(diags) > start:
        return None
    kind = kinds.pop() if kinds else "rate"
    values = tuple((day, None if b is None else Scale(name, [(x.from_, x.value) for x in b], kind)) for day, b in dated)
    return ParameterTable(name, Type("scale", ((kind, DECIMAL),)), values, param.unit, "scale")


def _check_table(name: str, param: Parameter, source: Source, raw: YMap, diags: list[Diagnostic]) -> ParameterTable | None:
    start = len(diags)
    entries = [(day, t) for day, t in param.table.items() if t is not None]  # type: ignore[union-attr]
    keys = {scalar_kind(k) for _, t in entries for k in t}
    if not keys <= {"string", "int"} or len(keys) > 1:
        diags.append(source.diag(pos_of(raw, "parameters", name, "table"), "type_mismatch",
                                 f'table "{name}" has keys of mixed types: ' + ", ".join(sorted(k or "?" for k in keys)),
                                 hint="a table's keys are all text or all whole numbers"))
        return None
    if any([_text_with_unit(name, param, tab, ("table", day), source, raw, diags) for day, tab in entries]):
        return None
    key_type = STRING if keys == {"string"} or not keys else INT
    t = values_type([v for _, tab in entries for v in tab.values()], param.unit)
    if isinstance(t, str):
        diags.append(source.diag(pos_of(raw, "parameters", name, "table"), "type_mismatch",
                                 f'table "{name}" has {t}', hint="give every value of a table one type"))
        return None
    for day, tab in entries:
        if not tab:
            diags.append(source.diag(pos_of(raw, "parameters", name, "table", day), "invalid_value",
                                     f'table "{name}" on {day} has no entries', hint="write null for no table in force"))
        for k, v in tab.items():
            if _wide(v):
                diags.append(_range_diag(source, pos_of(raw, "parameters", name, "table", day, k), name,
                                         f'on {day}, key "{k}"', v))
            if _wide(k):  # a key is compared with case values, which are held below 10^34 too
                diags.append(_range_diag(source, pos_of(raw, "parameters", name, "table", day, k, key=True),
                                         name, f"on {day}, a key", k))
    if len(diags) > start:
        return None
    values = tuple(sorted(
        (day, None if tab is None else {k: (Decimal(v) if t == DECIMAL else v) for k, v in tab.items()})
        for day, tab in param.table.items()))  # type: ignore[union-attr]
    return ParameterTable(name, Type("table", (("key", key_type), ("value", t))), values, param.unit, "table")


def check_default(name: str, spec: FieldSpec, source: Source, pos, diags: list[Diagnostic]) -> object:
    """A field's default as the case would hold it (money and decimals as Decimal), or None after a
    located diagnostic when it does not fit the field."""
    v = spec.default
    kind = scalar_kind(v)
    want = spec.type
    ok = (kind == want or (want in ("money", "decimal") and kind in ("int", "decimal"))
          or (want == "int" and kind == "int"))
    why = None if ok else f"is {kind or type(v).__name__}, not {want}"
    if ok and want in ("int", "decimal", "money"):
        d = Decimal(v)
        if _wide(v):
            why = "is out of range"
        elif spec.min is not None and d < spec.min:
            why = f"is below the field's min {spec.min}"
        elif spec.max is not None and d > spec.max:
            why = f"is above the field's max {spec.max}"
    if ok and spec.one_of is not None and v not in spec.one_of:
        why = "is not one of " + ", ".join(spec.one_of)
    if why is not None:
        shown = f'"{clip(v)}"' if isinstance(v, str) else clip(str(v))
        diags.append(source.diag(pos, "bad_default", f'the default of "{name}" ({shown}) {why}',
                                 hint="a default must be a valid value of the field"))
        return None
    return Decimal(v) if want in ("money", "decimal") else v
