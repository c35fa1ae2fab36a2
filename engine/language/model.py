"""The ruleset model: frozen pydantic types for what a ruleset file says, before any checking."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .limits import DIGITS, clip, number_in_range

FIELD_TYPES = ("string", "int", "decimal", "money", "bool", "date", "list")
STATUSES = ("decided", "referred", "rejected")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _expr_text(value: Any) -> Any:
    """YAML reads `when: true` or `amount: 0` as scalars; expressions are their text."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, Decimal)):
        return str(value)
    return value


class FieldSpec(Frozen):
    """One case field: its type, whether it may be absent, bounds, and whether it is personal data."""

    type: Literal["string", "int", "decimal", "money", "bool", "date", "list"]
    optional: bool = False
    pii: bool = False
    min: Decimal | None = None
    max: Decimal | None = None
    one_of: tuple[str, ...] | None = None
    items: dict[str, "FieldSpec"] | None = None
    description: str | None = None
    default: bool | int | Decimal | date | str | None = None  # used when the field is absent

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set and self.default is not None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data

    @field_validator("items", mode="before")
    @classmethod
    def _items_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: ({"type": v} if isinstance(v, str) else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "FieldSpec":
        if self.type == "list" and not self.items:
            raise ValueError("a list field needs `items`, the fields of each list item")
        if self.type != "list" and self.items is not None:
            raise ValueError("only a list field has `items`")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "decimal", "money"):
            raise ValueError("`min` and `max` apply only to int, decimal and money fields")
        for bound in (self.min, self.max):
            if bound is not None and not number_in_range(bound):
                raise ValueError(f"`min` and `max` must be numbers of at most {DIGITS} significant digits, "
                                 f"below 10^{DIGITS}; {clip(str(bound))} is out of range")
        if self.one_of is not None and self.type != "string":
            raise ValueError("`one_of` applies only to string fields")
        if self.items:
            for name, spec in self.items.items():
                if spec.type == "list":
                    raise ValueError(f'list item field "{name}" cannot itself be a list')
        if "default" in self.model_fields_set:
            if self.default is None:
                raise ValueError("`default: null` gives no default: leave `default` out")
            if not self.optional:
                raise ValueError("a field with a `default` may be absent: mark it `optional: true`")
            if self.type == "list":
                raise ValueError("a list field has no default (an absent list is an error; give [])")
            if isinstance(self.default, float):
                raise ValueError(f"{self.default} is not an exact number")
        return self


class Window(Frozen):
    """The decision dates a version governs: from ``from`` up to and including ``to``."""

    from_: date = Field(alias="from")
    to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Window":
        if self.to is not None and self.to < self.from_:
            raise ValueError("`to` is before `from`")
        return self

    def holds(self, day: date) -> bool:
        return self.from_ <= day and (self.to is None or day <= self.to)


Scalar = bool | int | Decimal | date | str


class Bracket(Frozen):
    """One bracket of a scale: from its ``from`` (inclusive) up to the next bracket's, a ``rate``
    (marginal: applied to the part of the amount inside the bracket) or an ``amount`` (per band)."""

    from_: Decimal = Field(alias="from")
    rate: Decimal | None = None
    amount: Decimal | None = None

    @model_validator(mode="before")
    @classmethod
    def _exact(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("from", "rate", "amount"):
                if isinstance(data.get(key), (float, bool)):
                    raise ValueError(f"`{key}` must be an exact number, not {data[key]!r}")
        return data

    @model_validator(mode="after")
    def _one_value(self) -> "Bracket":
        if (self.rate is None) == (self.amount is None):
            raise ValueError("a bracket needs exactly one of `rate` (marginal) or `amount` (per band)")
        return self

    @property
    def value(self) -> Decimal:
        return self.rate if self.rate is not None else self.amount  # type: ignore[return-value]


def _what(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, date):
        return f"a date ({value.isoformat()})"
    if isinstance(value, Decimal):
        return f"a decimal number ({value})"
    if isinstance(value, str):
        return f'text ("{value[:30]}")'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def _table_shape(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise ValueError("a table on a date maps keys to values, e.g. `2025-01-01: {north: 10, south: 12}`")
    for key, entry in (value or {}).items():
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise ValueError(f"a table key is text or a whole number, not {_what(key)}"
                             + (f'; quote it: "{key.isoformat()}"' if isinstance(key, date) else ""))
        if isinstance(entry, (dict, list)):
            raise ValueError(f'the table entry "{key}" is {_what(entry)}: a table value is one number, date, '
                             "true/false or text")
        if entry is None:
            raise ValueError(f'the table entry "{key}" is null: leave the key out (a lookup of it then '
                             "refers the case)")
    return value


def _scale_shape(value: Any) -> Any:
    if value is not None and not isinstance(value, list):
        raise ValueError("a scale on a date is a list of brackets, e.g. "
                         "`2025-01-01: [{from: 0, rate: 0}, {from: 200000, rate: 0.017}]`")
    for i, bracket in enumerate(value or ()):
        if not isinstance(bracket, dict):
            raise ValueError(f"bracket {i + 1} is {_what(bracket)}: a bracket is a mapping, "
                             "e.g. `{from: 200000, rate: 0.017}`")
        for key in ("from", "rate", "amount"):
            v = bracket.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, Decimal))):
                raise ValueError(f"bracket {i + 1}: `{key}` is {_what(v)}, not a number"
                                 + (" (write it without quotes)" if isinstance(v, str) else ""))
    return value


class Parameter(Frozen):
    """An effective-dated parameter: each value is in force from its date until the next; ``null``
    from a date on means no value is in force from that day. A parameter is a plain value
    (``values``), a scale of brackets (``scale``) or a table of values by key (``table``)."""

    values: dict[date, Scalar | None] | None = None
    scale: dict[date, Annotated[tuple[Bracket, ...] | None, BeforeValidator(_scale_shape)]] | None = None
    table: dict[date, Annotated[dict[str | int, Scalar] | None, BeforeValidator(_table_shape)]] | None = None
    unit: str | None = None
    description: str | None = None
    basis: str | None = None

    @field_validator("values", "scale", "table", mode="before")
    @classmethod
    def _non_empty(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise ValueError("a parameter needs at least one dated value")
        if isinstance(data, dict):
            if all(v is None for v in data.values()):
                raise ValueError("every dated value is null: the parameter never has a value "
                                 "(null after a value ends it; give a value from some date)")
            for value in data.values():
                if isinstance(value, float):
                    raise ValueError(f"{value} is not an exact number")
                if isinstance(value, dict):
                    for v in value.values():
                        if isinstance(v, float):
                            raise ValueError(f"{v} is not an exact number")
                if isinstance(value, (list, tuple)) and not value:
                    raise ValueError("a scale needs at least one bracket (or null: no scale in force)")
        return data

    @model_validator(mode="after")
    def _one_form(self) -> "Parameter":
        given = [k for k in ("values", "scale", "table") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a parameter needs exactly one of `values`, `scale` (brackets) or `table` (values "
                             "by key)" + (f"; it has {' and '.join(given)}" if given else ""))
        return self

    @property
    def kind(self) -> str:
        return "scale" if self.scale is not None else "table" if self.table is not None else "values"

    @property
    def dated(self) -> dict:
        """The dated values of whichever form this parameter has."""
        return self.scale if self.scale is not None else self.table if self.table is not None else self.values  # type: ignore


class Rule(Frozen):
    """One rule: a condition, and what follows when it is the first that holds."""

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    basis: str
    when: str
    decide: str | None = None
    refer: str | None = None
    values: dict[str, str] = {}
    because: str
    description: str | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _when_text(cls, v: Any) -> Any:
        return _expr_text(v)

    @field_validator("values", mode="before")
    @classmethod
    def _value_texts(cls, data: Any) -> Any:
        return {k: _expr_text(v) for k, v in data.items()} if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _one_result(self) -> "Rule":
        if (self.decide is None) == (self.refer is None):
            raise ValueError("a rule needs exactly one of `decide` (an outcome) or `refer` (a queue)")
        return self


class Otherwise(Frozen):
    """What happens when no rule holds: usually a referral to a queue."""

    decide: str | None = None
    refer: str | None = None
    values: dict[str, str] = {}
    because: str
    basis: str = ""

    @field_validator("values", mode="before")
    @classmethod
    def _value_texts(cls, data: Any) -> Any:
        return {k: _expr_text(v) for k, v in data.items()} if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _one_result(self) -> "Otherwise":
        if (self.decide is None) == (self.refer is None):
            raise ValueError("`otherwise` needs exactly one of `decide` or `refer`")
        return self


class Expect(Frozen):
    """What an example must produce; any key left out is not compared, nor any value not named."""

    status: Literal["decided", "referred", "rejected"] | None = None
    outcome: str | None = None
    queue: str | None = None
    rule: str | None = None
    reason: str | None = None
    values: dict[str, Any] | None = None
    errors: tuple[str, ...] | None = None  # error codes of a rejection


def plain(value: Any) -> Any:
    """YAML mappings and lists as plain dicts and lists, as a case from JSON would be: a key is always
    text (YAML may write 2025-01-01 or 1 as a key; JSON cannot)."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class Example(Frozen):
    """Executable documentation: a case and its expected result (`vedtak test`)."""

    name: str
    case: dict[str, Any]
    expect: Expect

    @field_validator("case", mode="before")
    @classmethod
    def _plain(cls, data: Any) -> Any:
        return plain(data)


class RulesetModel(Frozen):
    """One version of a ruleset, exactly as its YAML file states it."""

    ruleset: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    title: str
    version: str
    valid: Window
    decision_date: str
    case_id: str
    automate: tuple[str, ...] = ()
    review_queue: str = "review"
    description: str | None = None
    sources: tuple[str, ...] = ()
    notice: str | None = None
    case: dict[str, FieldSpec]
    parameters: dict[str, Parameter] = {}
    derive: dict[str, str] = {}
    rules: tuple[Rule, ...]
    otherwise: Otherwise
    examples: tuple[Example, ...] = ()

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, Decimal)) else v

    @field_validator("derive", mode="before")
    @classmethod
    def _derive_texts(cls, data: Any) -> Any:
        return {k: _expr_text(v) for k, v in data.items()} if isinstance(data, dict) else data

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Every outcome a rule (or `otherwise`) can decide, in order of first appearance."""
        seen: dict[str, None] = {}
        for r in (*self.rules, self.otherwise):
            if r.decide:
                seen[r.decide] = None
        return tuple(seen)

    @property
    def queues(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for r in (*self.rules, self.otherwise):
            if r.refer:
                seen[r.refer] = None
        return tuple(seen)
