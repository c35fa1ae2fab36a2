"""Case validation: a raw case (a dict, as JSON gives it) becomes a typed case or a list of errors.

Each version's schema is turned into one generated Python function with a fast path for
well-formed cases; anything unusual falls through to a careful path that lists every
problem with its field path. Money and decimals become ``Decimal``, never float.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from ..language.limits import DIGITS, number_in_range
from ..language.model import FieldSpec

# Lone surrogates (U+D800..U+DFFF) are not text: no UTF-8 can encode them, so no log can store them.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_BIG = 10 ** DIGITS  # whole numbers must stay below this, as decimals must (the engine's precision)
_RANGE = f"the engine holds numbers exactly only below 10^{DIGITS} with at most {DIGITS} significant digits"


class BigNumber(str):
    """A number in a case's JSON that neither int nor Decimal can hold (over 4 300 digits, or an
    exponent beyond any decimal); kept as its text, so that validation rejects that field as
    ``out_of_range`` instead of the whole line being unreadable."""

    __slots__ = ()


_NUMBER_LITERAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def unholdable(text: str) -> bool:
    """Whether ``text`` is a number literal the engine cannot hold. A number field given such a
    literal, as a JSON number (kept as :class:`BigNumber`) or as text (what the audit log keeps of
    it, and what a replay reads), is out_of_range alike."""
    text = text.strip()
    if not _NUMBER_LITERAL.fullmatch(text):
        return False
    try:
        return not number_in_range(Decimal(text))
    except (InvalidOperation, ValueError):
        return True


def shown(text: str, limit: int = 40) -> str:
    """Text from a case as a message may quote it: lone surrogates escaped, long text shortened."""
    if len(text) > limit:
        text = f"{text[:limit // 2]}...{text[-8:]} ({len(text):,} characters)"
    if not text.isascii() and LONE_SURROGATE.search(text):
        text = LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def _as_text(value):
    """A decimal or float as the text the audit log keeps of it (and a replay reads); else the value."""
    if isinstance(value, float) and math.isfinite(value):
        value = Decimal(repr(value))
    return str(value) if isinstance(value, Decimal) else value


def number_text(value) -> str:
    """A number as a message shows it: in full when short, else abbreviated with its size."""
    if type(value) is int:
        if -_BIG < value < _BIG:
            return str(value)
        return f"a whole number of about {int(abs(value).bit_length() * 0.30103) + 1:,} digits"
    if isinstance(value, Decimal):
        sign, digits, exp = value.as_tuple()
        if len(digits) <= DIGITS:  # str() writes a large or tiny exponent in E notation: short
            return str(value)
        head = "".join(map(str, digits[:6]))
        return (f"{'-' if sign else ''}{head[0]}.{head[1:]}...E{value.adjusted():+} "
                f"({len(digits):,} digits)")
    return shown(str(value))


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
    if value.__class__ is str and _NUMBER_LITERAL.fullmatch(value.strip()):
        return "a number"  # the log keeps a decimal as its text: a replay must say what the run said
    return {bool: "a bool", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", Decimal: "a number", BigNumber: "a number"}.get(type(value), type(value).__name__)


_NOT_FINITE = {"nan": "NaN", "snan": "NaN", "inf": "infinity", "infinity": "infinity"}


def _not_a_number(value, whole: bool) -> str | None:
    """Why a value that looks like a number is none the engine takes: NaN, an infinity, or digits
    other than 0-9 (Decimal reads Arabic-Indic or full-width digits; an int field never did).
    The same for a JSON number, a CSV cell and the text the audit log keeps of either."""
    if value.__class__ is float or isinstance(value, Decimal):
        if math.isfinite(value) if value.__class__ is float else value.is_finite():
            return None
        text = str(value)
    elif value.__class__ is str:
        text = value.strip()
        if not text.isascii():
            return (f"expected a {'whole ' if whole else ''}number written with the digits 0-9"
                    if any(c.isdigit() for c in text) else None)
    else:
        return None
    kind = _NOT_FINITE.get(text.lower().lstrip("+-"))
    return f"{kind} is not a number the engine accepts" if kind else None


def _out_of_range(spec: FieldSpec, value, path: str, errors: list[CaseError]) -> None:
    errors.append(CaseError(path, "out_of_range", _quoted(spec, number_text(value), "the value")
                            + f" is out of range: {_RANGE}"))


def _quoted(spec: FieldSpec, text: str, instead: str) -> str:
    """``text``, which quotes a value, or ``instead`` for a field marked pii: a message never repeats
    personal data, so that no rejection can carry it into the audit log or its work items."""
    return instead if spec.pii else text


def _convert(spec: FieldSpec, value, path: str, errors: list[CaseError]):
    """Check and convert one present, non-null value; on error append and return None."""
    t = spec.type
    if t == "string":
        if type(value) is not str:
            errors.append(CaseError(path, "wrong_type", f"expected a string, got {_type_name(value)}"))
            return None
        if not value.isascii() and LONE_SURROGATE.search(value):
            errors.append(CaseError(path, "malformed_input", "the string holds a lone surrogate, which is not text"))
            return None
        if spec.one_of is not None and value not in spec.one_of:
            errors.append(CaseError(path, "not_allowed", _quoted(spec, f'"{shown(value)}"', "the value")
                                    + " is not one of " + ", ".join(spec.one_of)))
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
            errors.append(CaseError(path, "bad_date", "expected a date as YYYY-MM-DD"
                                    + _quoted(spec, f", got {shown(repr(_as_text(value)))}", "")))
        return None
    if t in ("int", "decimal", "money") and (why := _not_a_number(value, t == "int")):
        errors.append(CaseError(path, "wrong_type", why + (_quoted(spec, f", got {shown(repr(value))}", "")
                                                          if not str(value).isascii() else "")))
        return None
    if t == "int":
        if type(value) is int and not -_BIG < value < _BIG or isinstance(value, str) and unholdable(value) or (
                type(value) in (float, Decimal) and not number_in_range(Decimal(value))):
            _out_of_range(spec, value, path, errors)
            return None
        if type(value) is not int:
            errors.append(CaseError(path, "wrong_type", f"expected a whole number, got {_type_name(value)}"
                                    + (_quoted(spec, f" ({number_text(_as_text(value))})", "")
                                       if _type_name(value) == "a number"
                                       else "")))
            return None
        return _bounded(spec, value, path, errors)
    if t in ("decimal", "money"):
        num = to_decimal(value)
        if num is not None and not number_in_range(num) or num is None and isinstance(value, str) and unholdable(value):
            _out_of_range(spec, value if num is None else num, path, errors)
            return None
        if num is None:
            errors.append(CaseError(path, "wrong_type", f"expected a number, got {_type_name(value)}"
                                    + (_quoted(spec, f" {shown(repr(value))}", "") if isinstance(value, str) else "")))
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


def _fits(num: Decimal) -> bool:
    """A quick, strict form of :func:`number_in_range` for the fast path (trailing zeros count)."""
    _, digits, exp = num.as_tuple()
    return exp.__class__ is int and len(digits) <= DIGITS and -999_999 <= exp + len(digits) - 1 < DIGITS


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
            if not value.isascii():  # Decimal reads other scripts' digits: the engine takes 0-9 only
                return None
            num = Decimal(value.strip().replace("_", "x"))
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return num if num.is_finite() else None


def _bounded(spec: FieldSpec, value, path: str, errors: list[CaseError]):
    if spec.min is not None and value < spec.min:
        errors.append(CaseError(path, "out_of_range",
                                f"{_quoted(spec, str(value), 'the value')} is below the minimum {spec.min}"))
        return None
    if spec.max is not None and value > spec.max:
        errors.append(CaseError(path, "out_of_range",
                                f"{_quoted(spec, str(value), 'the value')} is above the maximum {spec.max}"))
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
    # in sorted order, as the log keeps the case (canonical JSON): a replay lists them alike
    for name in sorted((n for n in raw if n not in schema), key=str):
        import difflib
        name = shown(str(name), 60)
        close = difflib.get_close_matches(name, list(schema), n=1)
        errors.append(CaseError(prefix + name, "unknown_field", "not a field of this ruleset's cases"
                                + (f'; did you mean "{close[0]}"?' if close else "")))
    return out


def validate_slow(schema: dict[str, FieldSpec], raw) -> tuple[dict | None, list[CaseError]]:
    """Validate a case, collecting every error; the reference the generated fast path must match."""
    if type(raw) is not dict:
        return None, [CaseError("", "wrong_type", f"a case is a JSON object, got {_type_name(raw)}")]
    errors: list[CaseError] = []
    out = _record(schema, raw, "", errors)
    return (None, errors) if errors else (out, [])


def _bound(t: str, bound, name: str) -> str:
    """A bound as the generated validator compares with it: a whole bound of an int field as an
    int literal (an int compares with an int faster than with a Decimal, and the same way)."""
    if t == "int" and isinstance(bound, (int, Decimal)) and not isinstance(bound, bool):
        whole = Decimal(bound)
        if whole.is_finite() and whole == whole.to_integral_value() and abs(whole) < _BIG:
            return str(int(whole))
    return name


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
                 "_int": int, "_bool": bool, "_str": str, "_dec": Decimal, "_BIG": _BIG, "_bad": object(),
                 "_lone": LONE_SURROGATE.search, "_fits": _fits}
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
            bounds += f" and {v} >= {_bound(t, spec.min, f'_min{i}')}"
        if spec.max is not None:
            env[f"_max{i}"] = spec.max
            bounds += f" and {v} <= {_bound(t, spec.max, f'_max{i}')}"
        # a whole number the engine cannot hold takes the careful path (out_of_range); a side the
        # field's own bounds already close needs no check of its own
        low, high = spec.min is None or spec.min <= -_BIG, spec.max is None or spec.max >= _BIG
        held = f"-_BIG < {v} < _BIG" if low and high else f"-_BIG < {v}" if low else f"{v} < _BIG" if high else ""
        if t == "string":
            extra = ""
            if spec.one_of is not None:
                env[f"_one{i}"] = frozenset(spec.one_of)
                extra = f" and {v} in _one{i}"
            # a lone surrogate cannot be stored: such a string takes the careful path
            conds.append(f"({null_ok}({v}.__class__ is _str and ({v}.isascii() or not _lone({v})){extra}))")
            outs.append(f"{name!r}: {v}")
        elif t == "bool":
            conds.append(f"({null_ok}{v}.__class__ is _bool)")
            outs.append(f"{name!r}: {v}")
        elif t == "int":
            conds.append(f"({null_ok}({v}.__class__ is _int{' and ' + held if held else ''}{bounds}))")
            outs.append(f"{name!r}: {v}")
        elif t in ("decimal", "money"):
            # ints become exact Decimals; a number the engine cannot hold, and anything else, takes
            # the careful path (which rejects it as out_of_range)
            lines.append(f"                if {v}.__class__ is _int: {v} = " + (f"_D({v}) if {held} else _bad" if held
                                                                           else f"_D({v})"))
            lines.append(f"                elif {v}.__class__ is _dec and not _fits({v}): {v} = _bad")
            conds.append(f"({null_ok}({v}.__class__ is _dec{bounds}))")
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
    lines.append("        except (KeyError, ValueError, TypeError, ArithmeticError):")
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
