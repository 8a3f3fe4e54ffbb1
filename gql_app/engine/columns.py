"""Only the columns a document asks for: the columns of each table a planned query
document reads, so its loader and page statements select those instead of whole
rows (``data.loaders.LoaderRegistry.narrow``).

A GraphQL object type whose values are rows of one table says so once
(``@rows_of(models.Post)`` on the Strawberry type). For each such table the
document reads the union, over every position of every type mapped to it, of the
columns its fields read: an attribute field its own column, a resolver field the
columns it declares (``engine.fields.COLUMNS``: ``loaded`` its key and its guard's,
``computed(..., columns=...)``), plus the primary key and the columns code outside
the fields reads from every row (``always``: visibility rules). One set per table
and document keeps every row primed across loaders complete for every position of
its type. A field that does not declare what it reads makes its table read whole.
The loaders add the columns they match keys and order pages by.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from graphql import GraphQLObjectType

from gql_app.data.loaders import Columns
from gql_app.engine.fields import COLUMNS
from gql_app.engine.statements import ABSTRACT, LIST, OBJECT

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rows:
    """The table a GraphQL object type's values are rows of, and the columns read
    from every such row whatever the document asks (visibility rules)."""

    model: type[Any]
    always: frozenset[str]


_ROWS: dict[type[Any], Rows] = {}
"""Strawberry type (its class) -> the table its values are rows of."""


def rows_of(model: type[Any], always: Iterable[str] = ()) -> Callable[[T], T]:
    """Declare that the decorated Strawberry type's values are rows of ``model``'s
    table; ``always``: columns read from each row by code other than its fields
    (e.g. a Node fetch's visibility rule). Put it above ``@strawberry.type``."""
    table = model.__table__  # type: ignore[attr-defined]
    names = frozenset(always) | {column.name for column in table.primary_key}
    unknown = names - set(table.c.keys())
    if unknown:
        raise ValueError(f"{model.__name__} has no columns {sorted(unknown)}")

    def register(cls: T) -> T:
        _ROWS[cls] = Rows(model, names)  # type: ignore[index]
        return cls

    return register


def rows_of_type(object_type: GraphQLObjectType) -> Rows | None:
    """The table ``object_type``'s values are rows of, if declared."""
    definition = (object_type.extensions or {}).get("strawberry-definition")
    return _ROWS.get(getattr(definition, "origin", None))  # type: ignore[arg-type]


def document_columns(root: Any) -> Columns:
    """The columns of each table the planned document (its root ``ObjectPlan``)
    reads; a table read whole is left out (its loaders select every column)."""
    found: dict[type[Any], set[str]] = {}
    whole: set[type[Any]] = set()
    stack = [root]
    while stack:
        plan = stack.pop()
        rows = rows_of_type(plan.type)
        names = None
        if rows is not None:
            names = found.setdefault(rows.model, set(rows.always))
        for field in plan.fields:
            if field.typename or field.completion is None:
                continue
            if names is not None:
                read = columns_read(field)
                if read is None:
                    whole.add(rows.model)  # type: ignore[union-attr]
                else:
                    names |= read
            stack.extend(_plans_of(field.completion))
    result: dict[type[Any], frozenset[str]] = {}
    for model, names in found.items():
        if model not in whole and names <= set(model.__table__.c.keys()):  # type: ignore[attr-defined]
            result[model] = frozenset(names)
    return result


def columns_read(field: Any) -> frozenset[str] | None:
    """The parent columns a planned field reads; None: undeclared (any)."""
    if field.attribute is not None:
        return frozenset((field.attribute,))
    definition = (field.field_def.extensions or {}).get("strawberry-definition")
    found = (getattr(definition, "metadata", None) or {}).get(COLUMNS)
    return found if isinstance(found, frozenset) else None


def _plans_of(completion: Any) -> list[Any]:
    """The object plans directly under a completion (through lists and every runtime
    type of an abstract one)."""
    while completion.kind == LIST:
        completion = completion.item
    if completion.kind == OBJECT:
        return [completion.plan]
    if completion.kind == ABSTRACT:
        return [as_object.plan for as_object in completion.objects.values()]
    return []
