"""The expression language's run-time library: exact decimal arithmetic and calendar functions.

Every decimal operation goes through one fixed context, so a decision never depends on
the decimal context of the program that embeds vedtak.
"""

from __future__ import annotations

import calendar
import math
from bisect import bisect_left, bisect_right
from datetime import date, timedelta
from decimal import (ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_DOWN, ROUND_HALF_EVEN,
                     ROUND_HALF_UP, ROUND_UP, Context, Decimal, DivisionByZero, DivisionUndefined,
                     InvalidOperation, Overflow)

from ..language.limits import DIGITS

# 34 significant digits (IEEE decimal128); errors trap instead of producing NaN or Infinity.
CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN, Emin=-999999, Emax=999999,
                  traps=[InvalidOperation, DivisionByZero, Overflow])

ROUNDING_MODES = {
    "half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "half_down": ROUND_HALF_DOWN,
    "up": ROUND_UP, "down": ROUND_DOWN, "ceiling": ROUND_CEILING, "floor": ROUND_FLOOR,
}

add = CONTEXT.add
sub = CONTEXT.subtract
mul = CONTEXT.multiply
div = CONTEXT.divide
neg = CONTEXT.minus
dabs = CONTEXT.abs
floor = math.floor  # exact for int and Decimal
ceil = math.ceil

_QUANTS = {n: Decimal(1).scaleb(-n) for n in range(0, 13)}


class EvaluationError(ArithmeticError):
    """An expression has no value on a case's data; the text says why in the rule author's words
    (never Python's). The case is referred (evaluation-error)."""


class TooLarge(EvaluationError, OverflowError):
    """A result beyond what a decision may hold."""


class ParameterMissing(Exception):
    """A parameter read while evaluating has no value in force (it ended with null, or starts
    later): the rule refers the case (missing-parameter). Not an evaluation error: like a missing
    field, a missing parameter is data the law has not given, not a fault."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__("no value in force: " + ", ".join(names))
        self.names = names


def absent(name: str):
    """What the compiled plan reads in place of a parameter with no value in force in its period."""
    raise ParameterMissing((name,))


class RuleFailed(Exception):
    """Raised by a compiled plan: rule ``index`` could not be evaluated, because of ``cause``."""

    def __init__(self, index: int, cause: BaseException):
        super().__init__(index, cause)
        self.index = index
        self.cause = cause


def round_to(x: int | Decimal, places: int = 0, mode: str = "half_up") -> Decimal:
    """Round to ``places`` decimals, half-up unless another mode is named."""
    quant = _QUANTS.get(places) or Decimal(1).scaleb(-places)
    try:
        return Decimal(x).quantize(quant, rounding=ROUNDING_MODES[mode], context=CONTEXT)
    except InvalidOperation:  # the rounded number needs more digits than a decimal holds
        raise TooLarge(f"the rounded number has more than {DIGITS} digits") from None


def canonical(items) -> list:
    """Items in an order that does not depend on the list's order: by value, ties by their text
    (so that 1.0 and 1, or 1 and Decimal(1), come out the same whichever came first)."""
    return sorted(items, key=_canonical_key)


def _canonical_key(x):
    return (x, str(x), x.__class__.__name__)


def dsum(items) -> Decimal | int:
    """Exact sum of decimals (Python's ``sum`` would use the caller's context), added in a
    canonical order so that a rounded sum never depends on the order of a list's items."""
    total: Decimal | int = 0
    for x in canonical(items):
        total = add(total, x)
    return total


def kmin(items):
    """The least item; among equal items the canonical one, so the list's order never shows."""
    items = canonical(items)
    if not items:
        raise EvaluationError("min() of no items")
    return min(items)


def kmax(items):
    """The greatest item; among equal items the canonical one."""
    items = canonical(items)
    if not items:
        raise EvaluationError("max() of no items")
    return max(items)  # max() returns the first of equal greatest items


# -- optional fields of list items ------------------------------------------------------------
# A generator over a list whose items may lack a field is evaluated item by item: each item is
# kept, filtered out, or unknown (it lacks a field its evaluation needs). The aggregates then
# follow three-valued logic, which never depends on the order of the items:
#   any: true if some known item is true; else unknown if some item is unknown; else false.
#   all: false if some known item is false; else unknown if some item is unknown; else true.
#   sum, count, min, max: unknown if any item is unknown (every item counts towards them).
# Unknown is raised as ItemMissing naming every unknown item's path, e.g. persons[1].salary.
# Any other error in any item is raised as it is (every item is evaluated: no short-circuit).


class ItemMissing(ValueError):
    """A value needs an optional field that a list item lacks; ``paths`` names each one."""

    def __init__(self, paths: tuple[str, ...]):
        super().__init__("missing data: " + ", ".join(paths))
        self.paths = paths


SKIP = object()  # an item a generator's `if` filtered out


def item_field(record: dict, name: str, list_name: str, index: int):
    """An optional field of a list item; ItemMissing if the item lacks it."""
    value = record[name]
    if value is None:
        raise ItemMissing((f"{list_name}[{index}].{name}",))
    return value


def each(items, fn) -> list:
    """``fn(index, item)`` for every item: the kept values; ItemMissing if any item is unknown."""
    values, missing = _each(items, fn)
    if missing:
        raise ItemMissing(missing)
    return values


def _each(items, fn) -> tuple[list, tuple[str, ...]]:
    values, missing = [], []
    for i, item in enumerate(items):
        try:
            v = fn(i, item)
        except ItemMissing as exc:
            missing += exc.paths
            continue
        if v is not SKIP:
            values.append(v)
    return values, tuple(dict.fromkeys(missing))


def k_any(items, fn) -> bool:
    values, missing = _each(items, fn)
    if any(values):
        return True
    if missing:
        raise ItemMissing(missing)
    return False


def k_all(items, fn) -> bool:
    values, missing = _each(items, fn)
    if not all(values):
        return False
    if missing:
        raise ItemMissing(missing)
    return True


def years_between(start: date, end: date) -> int:
    """Whole years from ``start`` to ``end``, counted as age is: a year is complete on its anniversary.

    Someone born on 29 February completes a year on 1 March in years without a 29 February.
    Negative when ``end`` is before ``start``.
    """
    if end < start:
        return -years_between(end, start)
    return end.year - start.year - ((end.month, end.day) < (start.month, start.day))


def months_between(start: date, end: date) -> int:
    """Whole calendar months from ``start`` to ``end`` (a month is complete on the same day number)."""
    if end < start:
        return -months_between(end, start)
    return (end.year - start.year) * 12 + end.month - start.month - (end.day < start.day)


def days_between(start: date, end: date) -> int:
    """Days from ``start`` to ``end`` (negative when ``end`` is earlier)."""
    return (end - start).days


def make_date(year: int, month: int, day: int) -> date:
    """date(year, month, day); an EvaluationError naming the parts when they make no date."""
    try:
        return date(year, month, day)
    except (ValueError, OverflowError, TypeError):
        raise EvaluationError(f"date({year}, {month}, {day}) is not a date") from None


def add_days(day: date, n: int) -> date:
    """``day`` plus ``n`` days (minus, when ``n`` is negative)."""
    try:
        return day + timedelta(days=n)
    except (OverflowError, ValueError):
        raise EvaluationError(f"add_days({day.isoformat()}, {n}) is outside the calendar (years 1 to 9999)") from None


def add_months(day: date, n: int) -> date:
    """``day`` plus ``n`` calendar months. A day the target month lacks is clamped to that month's
    last day: add_months(2025-01-31, 1) is 2025-02-28, add_months(2024-02-29, 12) is 2025-02-28."""
    y, m = divmod(day.month - 1 + n, 12)
    year = day.year + y
    if not 1 <= year <= 9999:
        raise EvaluationError(f"add_months({day.isoformat()}, {n}) is outside the calendar (years 1 to 9999)")
    return date(year, m + 1, min(day.day, calendar.monthrange(year, m + 1)[1]))


def add_years(day: date, n: int) -> date:
    """``day`` plus ``n`` years; 29 February becomes 28 February in a year without one."""
    if not -10000 < n < 10000:
        raise EvaluationError(f"add_years({day.isoformat()}, {n}) is outside the calendar (years 1 to 9999)")
    return add_months(day, 12 * n)


def or_default(value, default):
    """An optional list-item field's value, or its default when the item lacks it."""
    return default if value is None else value


class Scale:
    """A scale in force: brackets by their lower bound (``froms``, ascending), each with a rate
    (``kind`` "rate") or an amount ("amount"). Built once per parameter period."""

    __slots__ = ("name", "froms", "values", "kind", "bases")

    def __init__(self, name: str, brackets, kind: str):
        self.name, self.kind = name, kind
        self.froms = tuple(Decimal(f) for f, _ in brackets)
        self.values = tuple(Decimal(v) for _, v in brackets)
        # bases[k]: the sum of the first k brackets' full parts, added in bracket order exactly as
        # marginal() adds them, so that a precomputed sum is the same number, digit for digit
        bases: list = [0]
        for i in range(len(self.froms) - 1):
            bases.append(add(bases[-1], mul(self.values[i], sub(self.froms[i + 1], self.froms[i]))))
        self.bases = tuple(bases)

    def brackets(self) -> list[dict]:
        """The brackets as data: the decision JSON and the explanation show them so."""
        return [{"from": f, self.kind: v} for f, v in zip(self.froms, self.values)]

    to_json_data = brackets  # what canonical JSON writes of a scale (decision.py's default hook)

    def parts(self, x) -> list[tuple]:
        """(from, to or None, value, the part of ``x`` inside, its amount) for every bracket ``x`` reaches."""
        out = []
        for i, lower in enumerate(self.froms):
            if not x > lower:
                break
            upper = self.froms[i + 1] if i + 1 < len(self.froms) else None
            inside = sub(min(x, upper) if upper is not None else x, lower)
            out.append((lower, upper, self.values[i], inside, mul(self.values[i], inside)))
        return out

    def __eq__(self, other) -> bool:
        return isinstance(other, Scale) and (self.froms, self.values, self.kind) == (other.froms, other.values, other.kind)

    def __hash__(self) -> int:
        return hash((self.froms, self.values, self.kind))

    def __str__(self) -> str:
        return "[" + ", ".join(f"from {_plain(f)}: {_plain(v)}" for f, v in zip(self.froms, self.values)) + "]"

    __repr__ = __str__


def _plain(d: Decimal) -> str:
    return format(d, "f")


def marginal(scale: Scale, x) -> Decimal:
    """The sum over the brackets ``x`` reaches of rate x the part of ``x`` inside the bracket:
    sum(rate_i * (min(x, from_{i+1}) - from_i) for every bracket with from_i < x)."""
    k = bisect_left(scale.froms, x)  # brackets whose lower bound is below x
    if k == 0:
        return Decimal(0)
    return add(scale.bases[k - 1], mul(scale.values[k - 1], sub(x, scale.froms[k - 1])))


def bracket(scale: Scale, x) -> Decimal:
    """The rate (or amount) of the bracket ``x`` falls in: the last whose ``from`` is at most ``x``."""
    i = bisect_right(scale.froms, x) - 1
    if i < 0:
        raise EvaluationError(f'{x} is below the first bracket of scale "{scale.name}", which starts at '
                              f"{_plain(scale.froms[0])}")
    return scale.values[i]


def table_missing(name: str, key) -> EvaluationError:
    return EvaluationError(f'table "{name}" has no value for the key "{key}"' if isinstance(key, str)
                           else f'table "{name}" has no value for the key {key}')


# Errors an expression can raise on particular data; they refer the case, never crash a batch.
EVALUATION_ERRORS = (ArithmeticError, ValueError, TypeError, OverflowError, LookupError, AttributeError)


def describe_error(exc: BaseException) -> str:
    """What an evaluation error means, in fixed words: the text of an :class:`EvaluationError`,
    a fixed sentence for every decimal signal and Python error, never Python's own text."""
    if isinstance(exc, RuleFailed):
        exc = exc.cause
    if isinstance(exc, EvaluationError):
        return str(exc)
    # the C decimal raises the trapped signal (InvalidOperation) listing the conditions met
    conditions = exc.args[0] if exc.args and isinstance(exc.args[0], list) else ()
    if isinstance(exc, DivisionUndefined) or DivisionUndefined in conditions:  # 0 / 0
        return "0 / 0 is undefined"
    if isinstance(exc, ZeroDivisionError):  # DivisionByZero is one
        return "division by zero"
    if isinstance(exc, (Overflow, OverflowError)):
        return "the result is too large for a decimal number"
    if isinstance(exc, InvalidOperation):
        return f"the result has no exact decimal value of at most {DIGITS} digits"
    if isinstance(exc, ItemMissing):
        return str(exc)
    return "the expression has no value on this case's data"
