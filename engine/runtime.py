"""The expression language's run-time library: exact decimal arithmetic and calendar functions.

Every decimal operation goes through one fixed context, so a decision never depends on
the decimal context of the program that embeds vedtak.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import (ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_DOWN, ROUND_HALF_EVEN,
                     ROUND_HALF_UP, ROUND_UP, Context, Decimal, DivisionByZero, DivisionUndefined,
                     InvalidOperation, Overflow)

from .limits import DIGITS

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
