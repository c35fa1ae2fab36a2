"""Hypothesis strategies that generate schema-valid cases, leaning on threshold values."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from vedtak.language.load import CheckedVersion
from vedtak.language.model import FieldSpec


def _thresholds(version: CheckedVersion) -> list:
    """Every parameter value and numeric literal of the version, with its neighbours."""
    out = set()
    values = []
    for table in version.parameters.values():
        for _, v in table.values:
            if isinstance(v, dict):  # a table: its values
                values += list(v.values())
            elif hasattr(v, "froms"):  # a scale: its thresholds, where marginal() changes rate
                values += list(v.froms)
            else:
                values.append(v)
    for v in values:
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, Decimal)):
            out |= {v - 1, v, v + 1, v * 20}  # also where 5 % of a value crosses a limit
        elif isinstance(v, date):
            out |= {v - timedelta(days=1), v, v + timedelta(days=1)}
    return sorted(out, key=lambda x: (type(x).__name__, x))


def _field(spec: FieldSpec, numbers: list, dates: list, window: tuple[date, date]):
    t = spec.type
    lo = spec.min if spec.min is not None else Decimal(-10**6)
    hi = spec.max if spec.max is not None else Decimal(10**7)
    if t == "bool":
        s = st.booleans()
    elif t == "string":
        s = st.sampled_from(spec.one_of) if spec.one_of else st.text("abcxyz0123456789-", min_size=1, max_size=8)
    elif t == "int":
        near = [int(n) for n in numbers if n == int(n) and lo <= n <= hi]
        ints = st.integers(int(lo), int(min(hi, 10**6)))
        s = st.one_of(st.sampled_from(near), ints) if near else ints
    elif t in ("decimal", "money"):
        near = [Decimal(n) for n in numbers if lo <= n <= hi]
        decs = st.decimals(min_value=lo, max_value=min(hi, Decimal(10**7)), places=2, allow_nan=False,
                           allow_infinity=False)
        s = st.one_of(st.sampled_from(near), decs, st.integers(int(lo), int(min(hi, 10**7))).map(Decimal)) \
            if near else decs
    elif t == "date":
        s = st.one_of(st.sampled_from(dates), st.dates(window[0] - timedelta(days=365 * 40), window[1])) \
            if dates else st.dates(window[0] - timedelta(days=365 * 40), window[1])
    else:
        item = st.fixed_dictionaries({n: _field(f, numbers, dates, window) for n, f in (spec.items or {}).items()})
        s = st.lists(item, max_size=4)
    if spec.optional:
        s = st.one_of(st.none(), s)
    return s


def cases(version: CheckedVersion, *, decision_dates: list[date] | None = None):
    """Valid cases for one version, with decision dates inside its window."""
    model = version.model
    start = model.valid.from_
    end = model.valid.to or start + timedelta(days=3 * 365)
    thresholds = _thresholds(version)
    numbers = [x for x in thresholds if isinstance(x, (int, Decimal)) and not isinstance(x, bool)]
    dates = [x for x in thresholds if isinstance(x, date)]
    fields = {}
    for name, spec in model.case.items():
        if name == model.decision_date:
            inside = [d for d in dates + (decision_dates or []) if start <= d <= end]
            s = st.dates(start, end)
            fields[name] = st.one_of(st.sampled_from(inside), s) if inside else s
        else:
            fields[name] = _field(spec, numbers, dates, (start, end))
    optional = {n for n, s in model.case.items() if s.optional}
    return st.fixed_dictionaries(fields).map(lambda c: {k: v for k, v in c.items()
                                                        if not (k in optional and v is None)})
