"""How many statements a planned document may send, known before it runs: the
query lane and the transaction boundary send a document that needs at most one
without BEGIN/ROLLBACK (one statement is its own snapshot), and keep REPEATABLE
READ for the others.

Each field says what it reads (``engine.fields.Reads``): attributes and computed
fields nothing, a loader-backed field one statement per position in the document
(its loads batch), a declared root field its own bound. A field that says
nothing may send any number. A to-one field (``loaded`` with a by-id loader)
under rows read by a plain by-id loader is read in its parent's statement (a
LEFT JOIN, ``data.loaders.ByIdLoader``) and costs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gql_app.data.loaders import ByIdLoader, Join
from gql_app.engine.fields import READS, Reads

LEAF, OBJECT, LIST, ABSTRACT = range(4)
"""The kinds of completion (``planned_executor.Completion.kind``)."""
MANY = 2
"""More than one statement: the operation runs in one REPEATABLE READ transaction."""

Joins = dict[type[Any], tuple[Join, ...]]
Source = Callable[[str], Any]


def _no_source(type_name: str) -> Any:
    return None


def operation_bound(root: Any) -> tuple[int, Joins]:
    """(statements, capped at ``MANY``; the joins the plan reads its to-one rows by)."""
    joins: Joins = {}
    return object_bound(root, None, joins), joins


def reads_of(field: Any) -> Reads | None:
    """The field's declared reads; an attribute reads nothing; None: undeclared."""
    if field.attribute is not None:
        return Reads(0)
    definition = (field.field_def.extensions or {}).get("strawberry-definition")  # type: ignore[union-attr]
    metadata = getattr(definition, "metadata", None) or {}
    found = metadata.get(READS)
    return found if isinstance(found, Reads) else None


def joined(parent: Any, declared: Reads) -> Join | None:
    """The join that reads this to-one field with its parent's row, if there is one:
    both loaders plain by-id ones, the key a column of the parent's table."""
    if declared.loads is None or not isinstance(parent, type):
        return None
    loader, key = declared.loads
    if (
        issubclass(parent, ByIdLoader)
        and parent.joinable()
        and issubclass(loader, ByIdLoader)
        and loader.joinable()
        and key in parent.model.__table__.c
    ):
        return key, loader
    return None


def object_bound(plan: Any, parent: Any, joins: Joins) -> int:
    """Statements for an object of ``plan`` whose row ``parent`` (a loader class, or
    None) read."""
    total = 0
    for field in plan.fields:
        if field.typename or field.completion is None:
            continue
        declared = reads_of(field)
        if declared is None:
            return MANY
        join = joined(parent, declared)
        source = declared.source
        if join is not None:
            had = joins.get(parent, ())
            if join not in had:
                joins[parent] = (*had, join)
            source = _no_source  # a joined row brings no joins of its own
        else:
            total += declared.bound()
            for cls, wanted in declared.joins().items():
                joins[cls] = tuple(dict.fromkeys((*joins.get(cls, ()), *wanted)))
        total += completion_bound(field.completion, source, joins)
        if total >= MANY:
            return MANY
    return total


def completion_bound(completion: Any, source: Source, joins: Joins) -> int:
    if completion.kind == LIST:
        assert completion.item is not None
        return completion_bound(completion.item, source, joins)
    if completion.kind == OBJECT:
        assert completion.plan is not None
        return object_bound(completion.plan, source(completion.plan.name), joins)
    if completion.kind == ABSTRACT:
        total = 0
        for name, as_object in completion.objects.items():
            assert as_object.plan is not None
            total += object_bound(as_object.plan, source(name), joins)
        return min(total, MANY)
    return 0
