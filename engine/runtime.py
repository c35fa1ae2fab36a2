"""The expression language's run-time library: exact decimal arithmetic and calendar functions.

Every decimal operation goes through one fixed context, so a decision never depends on
the decimal context of the program that embeds vedtak.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import (ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_DOWN, ROUND_HALF_EVEN,
                     ROUND_HALF_UP, ROUND_UP, Context, Decimal, DivisionByZero, InvalidOperation,
                     Overflow)

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


def round_to(x: int | Decimal, places: int = 0, mode: str = "half_up") -> Decimal:
    """Round to ``places`` decimals, half-up unless another mode is named."""
    quant = _QUANTS.get(places) or Decimal(1).scaleb(-places)
    return Decimal(x).quantize(quant, rounding=ROUNDING_MODES[mode], context=CONTEXT)


def dsum(items) -> Decimal | int:
    """Exact sum of decimals (Python's ``sum`` would use the caller's context)."""
    total: Decimal | int = 0
    for x in items:
        total = add(total, x)
    return total


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
    return date(year, month, day)


# Errors an expression can raise on particular data; they refer the case, never crash a batch.
EVALUATION_ERRORS = (ArithmeticError, ValueError, TypeError, OverflowError)
