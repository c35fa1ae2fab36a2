"""What names mean in an expression: value types, the symbols of a ruleset version's scope, and
item functions (a derived value of one list item, checked where it is applied)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from .source import Pos, Source


@dataclass(frozen=True)
class Type:
    """A value type: bool, int, decimal, string, date, list (of records) or record."""

    kind: str
    fields: tuple[tuple[str, "Type"], ...] = ()
    optional: frozenset[str] = frozenset()  # a list's (or item's) fields that an item may lack
    # a string field's `one_of` (for a table's completeness); a list's item fields with defaults
    choices: tuple = field(default=(), compare=False)
    defaults: tuple[tuple[str, object], ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        return self.kind

    def __deepcopy__(self, memo) -> "Type":  # immutable: copies of checked trees share their types
        return self

    def field(self, name: str) -> "Type | None":
        return dict(self.fields).get(name)

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "decimal")


BOOL, INT, DECIMAL, STRING, DATE = Type("bool"), Type("int"), Type("decimal"), Type("string"), Type("date")
SCALARS = {"bool": BOOL, "int": INT, "decimal": DECIMAL, "money": DECIMAL, "string": STRING, "date": DATE}


@dataclass(frozen=True)
class Symbol:
    """A name an expression may use."""

    kind: str  # "field", "parameter", "derived", "itemfn"; "broken" for a name that failed its checks
    type: Type
    optional: bool = False
    data: object = field(default=None, compare=False)  # a table's ParameterTable; an ItemFunction


@dataclass
class ItemFunction:
    """``name(param): body``: a derived value of one list item. Its body is checked, and inlined,
    where it is applied, against the items of the list it is applied to."""

    name: str
    param: str
    text: str
    tree: ast.expr
    pos: Pos
    source: Source
    depth: int = 0
    size: int = 0
    # item type -> (result type, checked body, names, known, constants), or None when it failed there
    checked: dict = field(default_factory=dict)
    uses: int = 0
