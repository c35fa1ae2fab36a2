"""Case validation: a raw case (a dict, as JSON gives it) becomes a typed case or a list of errors.

Each version's schema is turned into one generated Python function with a fast path for
well-formed cases; anything unusual falls through to a careful path that lists every
problem with its field path. Money and decimals become ``Decimal``, never float.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from .model import FieldSpec


@dataclass(frozen=True)
class CaseError:
    """One problem with a case: where (``path``, e.g. ``children[1].birth_date``), a code, and why."""

    path: str
    code: str
    message: str

    def to_dict(self) -> dict:
        return {"path": self.path, "code": self.code, "message": self.message}


def _type_name(value) -> str:
    if value is None:
        return "null"
    return {bool: "a bool", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", Decimal: "a number"}.get(type(value), type(value).__name__)


def _convert(spec: FieldSpec, value, path: str, errors: list[CaseError]):
    """Check and convert one present, non-null value; on error append and return None."""
    t = spec.type
    if t == "string":
        if type(value) is not str:
            errors.append(CaseError(path, "wrong_type", f"expected a string, got {_type_name(value)}"))
            return None
        if spec.one_of is not None and value not in spec.one_of:
            errors.append(CaseError(path, "not_allowed", f'"{value}" is not one of ' + ", ".join(spec.one_of)))
            return None
        return value
    if t == "bool":
        if type(value) is not bool:
            errors.append(CaseError(path, "wrong_type", f"expected true or false, got {_type_name(value)}"))
            return None
        return value
    if t == "date":
        if type(value) is date:
            return value
        if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        if isinstance(value, datetime):
            errors.append(CaseError(path, "wrong_type", "expected a date, got a date and time"))
        else:
            errors.append(CaseError(path, "bad_date", f"expected a date as YYYY-MM-DD, got {value!r}"))
        return None
    if t == "int":
        if type(value) is not int:
            errors.append(CaseError(path, "wrong_type", f"expected a whole number, got {_type_name(value)}"
                                    + (f" ({value})" if isinstance(value, (float, Decimal)) else "")))
            return None
        return _bounded(spec, value, path, errors)
    if t in ("decimal", "money"):
        num = to_decimal(value)
        if num is None:
            errors.append(CaseError(path, "wrong_type", f"expected a number, got {_type_name(value)}"
                                    + (f" {value!r}" if isinstance(value, str) else "")))
            return None
        return _bounded(spec, num, path, errors)
    if t == "list":
        if type(value) is not list:
            errors.append(CaseError(path, "wrong_type", f"expected a list, got {_type_name(value)}"))
            return None
        items = []
        for i, item in enumerate(value):
            ipath = f"{path}[{i}]"
            if type(item) is not dict:
                errors.append(CaseError(ipath, "wrong_type", f"expected an object, got {_type_name(item)}"))
                continue
            items.append(_record(spec.items or {}, item, ipath + ".", errors))
        return items
    raise AssertionError(t)  # pragma: no cover - the model admits no other type


def to_decimal(value) -> Decimal | None:
    """An exact Decimal from an int, Decimal, numeric string or float (by its shortest repr)."""
    if type(value) is bool:
        return None
    try:
        if type(value) is int:
            return Decimal(value)
        if isinstance(value, Decimal):
            num = value
        elif isinstance(value, float):
            num = Decimal(repr(value))
        elif isinstance(value, str):
            num = Decimal(value.strip().replace("_", "x"))
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return num if num.is_finite() else None


def _bounded(spec: FieldSpec, value, path: str, errors: list[CaseError]):
    if spec.min is not None and value < spec.min:
        errors.append(CaseError(path, "out_of_range", f"{value} is below the minimum {spec.min}"))
        return None
    if spec.max is not None and value > spec.max:
        errors.append(CaseError(path, "out_of_range", f"{value} is above the maximum {spec.max}"))
        return None
    return value


def _record(schema: dict[str, FieldSpec], raw: dict, prefix: str, errors: list[CaseError]) -> dict:
    out = {}
    for name, spec in schema.items():
        value = raw.get(name)
        if value is None:
            if not spec.optional:
                errors.append(CaseError(prefix + name, "missing_field",
                                        "required field is null" if name in raw else "required field is missing"))
            out[name] = None
            continue
        out[name] = _convert(spec, value, prefix + name, errors)
    for name in raw:
        if name not in schema:
            import difflib
            close = difflib.get_close_matches(str(name), list(schema), n=1)
            errors.append(CaseError(prefix + str(name), "unknown_field", "not a field of this ruleset's cases"
                                    + (f'; did you mean "{close[0]}"?' if close else "")))
    return out


def validate_slow(schema: dict[str, FieldSpec], raw) -> tuple[dict | None, list[CaseError]]:
    """Validate a case, collecting every error; the reference the generated fast path must match."""
    if type(raw) is not dict:
        return None, [CaseError("", "wrong_type", f"a case is a JSON object, got {_type_name(raw)}")]
    errors: list[CaseError] = []
    out = _record(schema, raw, "", errors)
    return (None, errors) if errors else (out, [])


def build_validator(schema: dict[str, FieldSpec]):
    """Generate ``validate(raw) -> (case, errors)`` for one schema, fast for well-formed cases."""
    names = list(schema)
    lines = ["def validate(d):", "    if d.__class__ is dict:", "        try:"]
    required = [n for n in names if not schema[n].optional]
    optional = [n for n in names if schema[n].optional]
    count = f"{len(required)}" + "".join(f" + ({n!r} in d)" for n in optional)
    lines.append(f"            if len(d) == {count}:")
    conds, outs = [], []
    env: dict = {"_D": Decimal, "_iso": date.fromisoformat, "_slow": validate_slow, "_schema": schema,
                 "_int": int, "_bool": bool, "_str": str, "_dec": Decimal}
    for i, name in enumerate(names):
        spec = schema[name]
        v = f"v{i}"
        getter = f"d.get({name!r})" if spec.optional else f"d[{name!r}]"
        lines.append(f"                {v} = {getter}")
        null_ok = f"{v} is None or " if spec.optional else ""
        t = spec.type
        bounds = ""
        if spec.min is not None:
            env[f"_min{i}"] = spec.min
            bounds += f" and {v} >= _min{i}"
        if spec.max is not None:
            env[f"_max{i}"] = spec.max
            bounds += f" and {v} <= _max{i}"
        if t == "string":
            extra = ""
            if spec.one_of is not None:
                env[f"_one{i}"] = frozenset(spec.one_of)
                extra = f" and {v} in _one{i}"
            conds.append(f"({null_ok}({v}.__class__ is _str{extra}))")
            outs.append(f"{name!r}: {v}")
        elif t == "bool":
            conds.append(f"({null_ok}{v}.__class__ is _bool)")
            outs.append(f"{name!r}: {v}")
        elif t == "int":
            conds.append(f"({null_ok}({v}.__class__ is _int{bounds}))")
            outs.append(f"{name!r}: {v}")
        elif t in ("decimal", "money"):
            # ints become exact Decimals; anything else takes the careful path
            lines.append(f"                if {v}.__class__ is _int: {v} = _D({v})")
            conds.append(f"({null_ok}({v}.__class__ is _dec and {v}.is_finite(){bounds}))")
            outs.append(f"{name!r}: {v}")
        elif t == "date":
            lines.append(f"                if {v}.__class__ is _str and len({v}) == 10 and {v}[4] == '-' == {v}[7]:"
                         f" {v} = _iso({v})")
            env["_date"] = date
            conds.append(f"({null_ok}{v}.__class__ is _date)")
            outs.append(f"{name!r}: {v}")
        else:  # lists: checked item by item on the careful path
            conds.append("False")
    cond = " and ".join(conds) if conds else "True"
    lines.append(f"                if {cond}:")
    lines.append("                    return {" + ", ".join(outs) + "}, ()")
    lines.append("        except (KeyError, ValueError, TypeError):")
    lines.append("            pass")
    lines.append("    return _slow(_schema, d)")
    if any(schema[n].type == "list" for n in names):
        # lists need per-item checks; the careful path is exact and still quick
        lines = ["def validate(d):", "    return _slow(_schema, d)"]
    code = "\n".join(lines)
    exec(compile(code, "<vedtak case validator>", "exec"), env)
    fn = env["validate"]
    fn.__doc__ = "Validate one raw case against the ruleset's case schema."
    fn.source = code
    return fn
