"""Replaces graphql-core's executor for query operations (as Strawberry's execution
context class): a document's selection is compiled once into a plan of object
plans, fields and completions, each object plan into a Python function
(``engine.compiled``), and executed breadth-first: a field is resolved for every
object at its position at once, so every loader gets all of its keys in one call
and one future per batch (no task, coroutine, future or callback per field or
per key).

Subscription operations run here too, once per event (the root value is the
event's object, ``web.live``). The GraphQL semantics stay graphql-core's (answers,
error messages and paths, null propagation; errors listed in response order);
mutations, ``@defer``/``@stream``, introspection roots and field middleware take
its own path.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect as pyinspect
from dataclasses import dataclass
from functools import partial
from types import GeneratorType
from typing import Any

from cachetools import LRUCache
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    is_abstract_type,
    is_leaf_type,
    located_error,
)
from graphql.execution import ExecutionResult, default_field_resolver, default_type_resolver
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.pyutils import Path, Undefined, inspect, is_iterable
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from gql_app.data.loaders import Columns
from gql_app.engine.columns import document_columns
from gql_app.engine.compiled import (
    BATCHED,
    LOADED,
    RESOLVER,
    TYPENAME,
    VALUE,
    Fill,
    compile_fill,
)
from gql_app.engine.fields import Batched, Refused
from gql_app.engine.statements import ABSTRACT, LEAF, LIST, OBJECT, Joins, operation_bound

INCREMENTAL = frozenset({"defer", "stream"})
CONDITIONAL = frozenset({"skip", "include"})
INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})


_AWAITABLE_TYPES: dict[type, bool] = {}


def is_awaitable(value: Any) -> bool:
    """``inspect.isawaitable``, decided once per type (``__await__`` lives on the type).

    graphql-core's check calls ``hasattr(value, "__await__")`` on every value,
    which for a Core row means a failed key lookup and an exception.
    """
    cls = type(value)
    known = _AWAITABLE_TYPES.get(cls)
    if known is None:
        if cls is GeneratorType:  # a generator-based coroutine, or not: per object
            return pyinspect.isawaitable(value)
        known = _AWAITABLE_TYPES[cls] = hasattr(cls, "__await__")
    return known


@dataclass(frozen=True, slots=True)
class StrawberryCall:
    """How to call a Strawberry resolver directly (no field extensions or handlers)."""

    field: StrawberryField
    resolver: Any
    info_class: Any
    config: Any
    scalar_registry: Any
    pass_self: bool
    source_names: tuple[str, ...]
    info_name: str | None

    @classmethod
    def of(cls, schema: Any, field_def: GraphQLField, resolve: Any) -> StrawberryCall | None:
        field = (field_def.extensions or {}).get("strawberry-definition")
        strawberry_schema = getattr(schema, "_strawberry_schema", None)
        if (
            not isinstance(field, StrawberryField)
            or field.base_resolver is None
            or field.is_subscription  # its resolver subscribes; an event resolves to itself
            or field.extensions
            or strawberry_schema is None
            or getattr(resolve, "shares_info", False)  # a direct resolver: faster still
            or strawberry_schema.schema_converter._get_field_exception_handlers(field)
        ):
            return None
        resolver = field.base_resolver
        return cls(
            field=field,
            resolver=resolver,
            info_class=strawberry_schema.config.info_class,
            config=strawberry_schema.config,
            scalar_registry=strawberry_schema.schema_converter.scalar_registry,
            pass_self=resolver.self_parameter is not None,
            source_names=tuple(
                parameter.name
                for parameter in (resolver.parent_parameter, resolver.root_parameter)
                if parameter is not None
            ),
            info_name=resolver.info_parameter.name if resolver.info_parameter else None,
        )


class Completion:
    """How a value of one output type is completed (a position in the response)."""

    __slots__ = (
        "abstract",
        "coerce",
        "details",
        "item",
        "kind",
        "leaf",
        "nullable",
        "objects",
        "plan",
    )

    def __init__(self, kind: int, nullable: bool) -> None:
        self.kind = kind
        self.nullable = nullable
        self.coerce: Any = None
        self.leaf: str | None = None
        """LEAF: the scalar or enum type's name."""
        self.plan: ObjectPlan | None = None
        self.item: Completion | None = None
        self.abstract: GraphQLAbstractType | None = None
        self.details: list[FieldDetails] = []
        self.objects: dict[str, Completion] = {}
        """ABSTRACT: how a value is completed once its runtime type (the key) is known."""


class FieldPlan:
    """One response key of an object: its field, resolver, arguments and completion."""

    __slots__ = (
        "args",
        "attribute",
        "batch",
        "completion",
        "details",
        "field_def",
        "index",
        "key",
        "loads",
        "mode",
        "name",
        "nodes",
        "parent_type",
        "resolve",
        "shared_info",
        "static_args",
        "strawberry",
        "typename",
    )

    def __init__(self, key: str, details: list[FieldDetails], parent_type: GraphQLObjectType):
        self.key = key
        self.details = details
        self.nodes = [detail.node for detail in details]
        self.name = self.nodes[0].name.value
        self.parent_type = parent_type
        self.typename = self.name == "__typename"
        self.field_def: GraphQLField | None = None
        self.resolve: Any = None
        self.attribute: str | None = None
        self.args: dict[str, Any] = {}
        self.static_args = True
        self.completion: Completion | None = None
        self.shared_info = False
        self.strawberry: StrawberryCall | None = None
        self.mode = TYPENAME if self.typename else RESOLVER
        self.index = 0
        """The field's position in its object plan."""
        self.batch: Batched | None = None
        """BATCHED: the resolver's batch form."""
        self.loads: tuple[type[Any], str, Any] | None = None
        """LOADED: (by-key loader, the source's key attribute, guard or None)."""


class ObjectPlan:
    """The fields to execute on an object of one concrete type; for the operation's
    root, the most statements it may send, the to-one rows read with their
    parents (``engine.statements``) and the columns read of each table
    (``engine.columns``, worked out when the plan first runs)."""

    __slots__ = (
        "batched",
        "by_key",
        "columns",
        "fields",
        "fill",
        "joins",
        "name",
        "statements",
        "type",
    )

    def __init__(self, object_type: GraphQLObjectType, fields: list[FieldPlan]) -> None:
        self.type = object_type
        self.name = object_type.name
        self.fields = fields
        self.by_key = {field.key: field for field in fields}
        self.statements = 0
        self.joins: Joins = {}
        self.columns: Columns | None = None
        for index, field in enumerate(fields):
            field.index = index
        self.fill: Fill = compile_fill(self, _leaf_type_name)
        """The plain fields of a batch of objects, compiled (``engine.compiled``)."""
        self.batched = [
            field
            for field in fields
            if field.mode in (LOADED, BATCHED, RESOLVER)
            or (field.mode == VALUE and _leaf_type_name(field) is None)
        ]
        """The fields executed per batch after the fill, in document order."""


class PlanCache:
    """Compiled plans by operation (and the values of variables in @skip/@include), LRU."""

    def __init__(self, maxsize: int = 512) -> None:
        self.entries: LRUCache[tuple[int, tuple[Any, ...]], tuple[Any, ObjectPlan]] = LRUCache(
            maxsize
        )
        self._conditions: LRUCache[int, tuple[Any, tuple[str, ...] | None]] = LRUCache(maxsize)

    def conditions(self, executor: PlannedExecutor) -> tuple[str, ...] | None:
        """Variables the operation's @skip/@include read; None if it cannot be planned."""
        operation = executor.operation
        found = self._conditions.get(id(operation))
        if found is not None and found[0] is operation:
            return found[1]
        names = _condition_variables(executor)
        self._conditions[id(operation)] = (operation, names)
        return names

    def get(self, executor: PlannedExecutor) -> ObjectPlan | None:
        names = self.conditions(executor)
        if names is None:
            return None
        operation = executor.operation
        coerced = executor.variable_values.coerced
        key = (id(operation), tuple(coerced.get(name) for name in names))
        found = self.entries.get(key)
        if found is not None and found[0] is operation:
            return found[1]
        plan = executor.compile_root()
        self.entries[key] = (operation, plan)
        return plan


def _condition_variables(executor: PlannedExecutor) -> tuple[str, ...] | None:
    """Names of variables used by @skip/@include, or None if the plan path does not apply."""
    operation: OperationDefinitionNode = executor.operation
    fragments = executor.fragment_definitions
    names: set[str] = set()
    seen: set[str] = set()

    def visit(selection_set: SelectionSetNode | None, root: bool) -> bool:
        if selection_set is None:
            return True
        for selection in selection_set.selections:
            for directive in selection.directives or ():
                name = directive.name.value
                if name in INCREMENTAL:
                    return False
                if name in CONDITIONAL:
                    for argument in directive.arguments or ():
                        if isinstance(argument.value, VariableNode):
                            names.add(argument.value.name.value)
            if isinstance(selection, FieldNode):
                if root and selection.name.value in INTROSPECTION_ROOTS:
                    return False
                if not visit(selection.selection_set, False):
                    return False
            elif isinstance(selection, InlineFragmentNode):
                if not visit(selection.selection_set, root):
                    return False
            elif isinstance(selection, FragmentSpreadNode):
                spread = selection.name.value
                if spread in seen:
                    continue
                seen.add(spread)
                fragment = fragments.get(spread)
                if fragment is None or fragment.variable_definitions:
                    return False
                if not visit(fragment.selection_set, root):
                    return False
        return True

    if not visit(operation.selection_set, True):
        return None
    return tuple(sorted(names))


PLANS = PlanCache()


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, running query operations from a cached plan.

    graphql-core completes every field generically (looks it up, builds an info,
    coerces the arguments, checks the result for awaitability, wraps a pending
    value in a task); here that is decided once per document and position. The
    resolvers, info, coercion, abstract type resolution, error messages and null
    propagation are graphql-core's.
    """

    @classmethod
    def run(
        cls,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        definitions: dict[str, FragmentDefinitionNode],
        fragments: dict[str, FragmentDetails],
        context: Any,
        variables: dict[str, Any] | None,
        extensions: Any,
    ) -> Any:
        """What graphql-core's ``execute`` does, for a query the lane prepared (parsed,
        validated, its operation and fragments found once): coerce the variables,
        build the executor, execute. The result, or an awaitable of it."""
        coerced = get_variable_values(
            schema, operation.variable_definitions or (), variables or {}, max_errors=50
        )
        if isinstance(coerced, list):
            return ExecutionResult(None, errors=coerced)
        executor = cls(
            schema,
            definitions,
            fragments,
            None,
            context,
            operation,
            coerced,
            default_field_resolver,
            default_type_resolver,
            default_field_resolver,
            is_awaitable=optimized_is_awaitable,
            operation_extensions=extensions,
        )
        return executor.execute_operation()

    def execute_operation(self, serially: bool | None = None) -> Any:
        if (
            self.operation.operation is OperationType.MUTATION
            or serially
            or self.abort_signal is not None
            or not self.error_propagation
            or (self.middleware_manager is not None and self.middleware_manager.middlewares)
        ):
            return super().execute_operation(serially)
        plan = PLANS.get(self)
        if plan is None:
            return super().execute_operation(serially)
        return self._execute_plan(plan)

    # ------------------------------------------------------------ compiling

    def compile_root(self) -> ObjectPlan:
        root_type = self.schema.get_root_type(self.operation.operation)
        assert root_type is not None  # validated: the schema has a query type
        grouped = collect_fields(
            self.schema,
            self.fragments,
            self.variable_values,
            root_type,
            self.operation,
            self.hide_suggestions,
        ).grouped_field_set
        root = self._compile_object(root_type, grouped)
        root.statements, root.joins = operation_bound(root)
        return root

    def _compile_object(
        self, object_type: GraphQLObjectType, grouped: dict[str, list[FieldDetails]]
    ) -> ObjectPlan:
        fields = []
        for key, details in grouped.items():
            plan = FieldPlan(key, details, object_type)
            if not plan.typename:
                field_def = self.schema.get_field(object_type, plan.name)
                if field_def is None:
                    continue  # graphql-core omits such keys too
                plan.field_def = field_def
                plan.resolve = field_def.resolve or self.field_resolver
                plan.attribute = getattr(plan.resolve, "attribute", None)
                plan.shared_info = getattr(plan.resolve, "shares_info", False)
                plan.strawberry = StrawberryCall.of(self.schema, field_def, plan.resolve)
                plan.loads = getattr(plan.resolve, "loads", None)
                if plan.strawberry is not None:
                    wrapped = getattr(plan.strawberry.resolver, "wrapped_func", None)
                    plan.batch = getattr(wrapped, "batch", None)
                if plan.loads is not None:
                    plan.mode = LOADED
                elif plan.batch is not None:
                    plan.mode = BATCHED
                elif plan.attribute is not None or getattr(plan.resolve, "computed", False):
                    plan.mode = VALUE
                if field_def.args or plan.nodes[0].arguments:
                    plan.static_args = not _uses_variables(plan.nodes[0])
                    if plan.static_args:
                        try:
                            plan.args = self._argument_values(plan)
                        except Exception:
                            plan.static_args = False
                plan.completion = self._compile_type(field_def.type, details)
            fields.append(plan)
        return ObjectPlan(object_type, fields)

    def _compile_type(self, output_type: GraphQLOutputType, details: list[FieldDetails]) -> Any:
        nullable = not isinstance(output_type, GraphQLNonNull)
        if not nullable:
            output_type = output_type.of_type  # type: ignore[union-attr]
        if isinstance(output_type, GraphQLList):
            completion = Completion(LIST, nullable)
            completion.item = self._compile_type(output_type.of_type, details)
        elif is_leaf_type(output_type):
            completion = Completion(LEAF, nullable)
            completion.coerce = output_type.coerce_output_value  # type: ignore[union-attr]
            completion.leaf = output_type.name  # type: ignore[union-attr]
        elif is_abstract_type(output_type):
            completion = Completion(ABSTRACT, nullable)
            completion.abstract = output_type  # type: ignore[assignment]
            completion.details = details
            # Every runtime type's plan, up front: the statement count reads them all.
            for object_type in self.schema.get_possible_types(output_type):  # type: ignore[arg-type]
                as_object = Completion(OBJECT, nullable)
                as_object.plan = self._object_plan(object_type, details)
                completion.objects[object_type.name] = as_object
        else:
            completion = Completion(OBJECT, nullable)
            completion.plan = self._object_plan(output_type, details)  # type: ignore[arg-type]
        return completion

    def _object_plan(
        self, object_type: GraphQLObjectType, details: list[FieldDetails]
    ) -> ObjectPlan:
        grouped = collect_subfields(
            self.schema,
            self.fragments,
            self.variable_values,
            self.operation,
            object_type,
            details,
            self.hide_suggestions,
        ).grouped_field_set
        return self._compile_object(object_type, grouped)

    def _argument_values(self, plan: FieldPlan) -> dict[str, Any]:
        assert plan.field_def is not None
        return get_argument_values(
            plan.field_def,
            plan.nodes[0],
            self.variable_values,
            plan.details[0].fragment_variable_values,
            self.hide_suggestions,
        )

    # ------------------------------------------------------------ executing
    #
    # Breadth-first and batched: a field of an object position is resolved for every
    # object at that position at once (``_execute_batch``), so a loader-backed field
    # sends all of its keys in one call and gets one future back for the batch
    # (``Loader.load_keys``), and each value is completed in a loop over the batch.
    # Where a value sits is a ``Slot`` (its container, key and parent), from which an
    # error's path and its nullable ancestor are found; no path is built otherwise.

    async def _execute_plan(self, root: ObjectPlan) -> Any:
        self._data: dict[str, Any] | None = {}
        self._arguments: dict[int, dict[str, Any]] = {}
        self._converted: dict[int, dict[str, Any]] = {}
        self._infos: dict[int, Any] = {}
        self._outstanding = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._context = contextvars.copy_context()
        held = expect(self.context_value, root)
        try:
            self._execute_batch(root, [self.root_value], [self._data], [None])
            if held is not None:
                await held.send_held()
            if self._outstanding:
                try:
                    await self._finished
                except BaseException:
                    for task in self._tasks:
                        task.cancel()
                    raise
            errors = self.collected_errors.errors
            if len(errors) > 1:
                # A batch resolves a field for all its objects before the next field:
                # errors are put in the order of their positions in the response,
                # which is the order graphql-core's depth-first execution finds them.
                errors.sort(key=partial(_response_order, root))
            return self.build_response(self._data)
        finally:
            # graphql-core's executor is in a reference cycle (its async helpers
            # are its bound methods): broken here, so the executor and the
            # request's values go when the request ends, not at a collection.
            self._data = None
            self._tasks = []
            self._infos = {}
            self._arguments = {}
            self._converted = {}
            self.async_helpers = None  # type: ignore[assignment]  # its bound methods: the cycle

    def _execute_batch(
        self, plan: ObjectPlan, sources: list[Any], outs: list[dict[str, Any]], slots: list[Any]
    ) -> None:
        """Every field of ``plan`` for every object of the batch, in document order
        (a pending field holds its key with None until it completes)."""
        values = plan.fill(self, sources, outs, slots)
        for field in plan.batched:
            mode = field.mode
            if mode == VALUE:
                self._complete_field(field, values[field.index], outs, slots)
            elif mode == LOADED:
                self._load_field(field, sources, outs, slots, values[field.index])
            elif mode == BATCHED:
                self._batch_field(plan, field, sources, outs, slots)
            else:
                self._resolve_field(plan, field, sources, outs, slots)

    def _field_args(self, field: FieldPlan) -> dict[str, Any]:
        if field.static_args:
            return field.args
        args = self._arguments.get(id(field))
        if args is None:
            args = self._arguments[id(field)] = self._argument_values(field)
        return args

    def shared_info(self, field: FieldPlan, slot: Slot | None) -> Any:
        """One info per position of the plan, for direct resolvers (they read its
        context and depth only)."""
        info = self._infos.get(id(field))
        if info is None:
            path = Path(slot_path(slot), field.key, field.parent_type.name)
            info = self._infos[id(field)] = self._info(field, path)
        return info

    def _load_field(
        self,
        field: FieldPlan,
        sources: list[Any],
        outs: list[dict[str, Any]],
        slots: list[Any],
        keys: list[Any],
    ) -> None:
        """A ``loaded`` field: the loader's values for the batch's keys, in one call."""
        assert field.loads is not None
        self._load(field, field.loads[0], keys, _values_for, outs, slots)

    def _batch_field(
        self,
        plan: ObjectPlan,
        field: FieldPlan,
        sources: list[Any],
        outs: list[dict[str, Any]],
        slots: list[Any],
    ) -> None:
        """A resolver with a batch form (``engine.fields.Batched``), called once; when
        the form declines (None), the resolver runs per object."""
        call = field.strawberry
        assert call is not None and field.batch is not None
        try:
            info = call.info_class(_raw_info=self.shared_info(field, slots[0]), _field=call.field)
            kwargs = self._converted_args(field, call, info, self._field_args(field))
            batched = field.batch(sources, info, kwargs)
        except Exception as error:
            self._complete_field(field, [error] * len(sources), outs, slots)
            return
        if batched is None:
            self._resolve_field(plan, field, sources, outs, slots)
            return
        loader_class, keys, finish = batched
        self._load(field, loader_class, keys, finish, outs, slots)

    def _load(
        self,
        field: FieldPlan,
        loader_class: type[Any],
        keys: list[Any],
        finish: Any,
        outs: list[dict[str, Any]],
        slots: list[Any],
    ) -> None:
        """Complete ``finish(loader, keys)`` once the loader knows the keys (None and
        ``Refused`` keys aside): at once if it does, else when its batch is read."""
        try:
            info = self.shared_info(field, slots[0])
            loader = self.context_value.loaders.get(loader_class, info)
            found = loader.load_keys([k for k in keys if k is not None and type(k) is not Refused])
        except Exception as error:
            self._complete_field(field, [error] * len(keys), outs, slots)
            return
        if found is None:
            self._complete_field(field, finish(loader, keys), outs, slots)
            return
        self._outstanding += 1
        found.add_done_callback(
            partial(self._loaded, field, loader, keys, finish, outs, slots),
            context=self._context,
        )

    def _loaded(
        self,
        field: FieldPlan,
        loader: Any,
        keys: list[Any],
        finish: Any,
        outs: list[dict[str, Any]],
        slots: list[Any],
        future: asyncio.Future[Any],
    ) -> None:
        def complete() -> None:
            if (error := future.exception()) is not None:
                if not isinstance(error, Exception):
                    raise error
                self._complete_field(field, [error] * len(keys), outs, slots)
            else:
                self._complete_field(field, finish(loader, keys), outs, slots)

        self._settle(future, complete)

    def _resolve_field(
        self,
        plan: ObjectPlan,
        field: FieldPlan,
        sources: list[Any],
        outs: list[dict[str, Any]],
        slots: list[Any],
    ) -> None:
        """A field with a resolver of its own, called per object; its pending values
        are awaited together and completed as one batch."""
        key = field.key
        values: list[Any] = []
        pending: list[int] = []
        try:
            args = self._field_args(field)
        except Exception as error:
            self._complete_field(field, [error] * len(sources), outs, slots)
            return
        for index, source in enumerate(sources):
            try:
                if field.shared_info:
                    info = self.shared_info(field, slots[index])
                else:
                    info = self._info(field, Path(slot_path(slots[index]), key, plan.name))
                if field.strawberry is not None:
                    value = self._call_strawberry(field, field.strawberry, source, info, args)
                else:
                    value = field.resolve(source, info, **args)
            except Exception as error:
                value = error
            if is_awaitable(value):
                pending.append(index)
                outs[index][key] = None
            values.append(value)
        if pending:
            self._wait_all(
                values, pending, partial(self._complete_field, field, values, outs, slots)
            )
        else:
            self._complete_field(field, values, outs, slots)

    def _wait_all(self, values: list[Any], pending: list[int], then: Any) -> None:
        """Replace ``values[i]`` (i in ``pending``) by what it settles to (an error by
        the exception), then call ``then()`` once."""
        group = _Group(len(pending), then)
        self._outstanding += 1
        for index in pending:
            awaitable = values[index]
            if asyncio.isfuture(awaitable):
                future = awaitable
            else:
                future = asyncio.ensure_future(awaitable)
                self._tasks.append(future)
            future.add_done_callback(
                partial(self._one_settled, group, values, index), context=self._context
            )

    def _one_settled(
        self, group: _Group, values: list[Any], index: int, future: asyncio.Future[Any]
    ) -> None:
        if self._finished.done():
            return
        if future.cancelled():  # the request is being torn down
            self._finished.cancel()
            return
        error = future.exception()
        if error is not None and not isinstance(error, Exception):
            self._finished.set_exception(error)
            return
        values[index] = error if error is not None else future.result()
        group.remaining -= 1
        if not group.remaining:
            self._settle(None, group.then)

    def _settle(self, future: asyncio.Future[Any] | None, complete: Any) -> None:
        """Run ``complete`` for a settled wait, then count the wait done."""
        if self._finished.done():
            return
        if future is not None and future.cancelled():
            self._finished.cancel()
            return
        try:
            complete()
        except BaseException as error:
            self._finished.set_exception(error)
            return
        self._outstanding -= 1
        if not self._outstanding:
            self._finished.set_result(None)

    # ------------------------------------------------------------ completing

    def _complete_field(
        self, field: FieldPlan, values: list[Any], outs: list[dict[str, Any]], slots: list[Any]
    ) -> None:
        """Complete a field's values into ``outs``: one position per object."""
        completion = field.completion
        assert completion is not None
        where = Positions(outs, [field.key] * len(values), slots, field.parent_type.name)
        self._complete(completion, field, values, where)

    def _complete(
        self, completion: Completion, field: FieldPlan, values: list[Any], where: Positions
    ) -> None:
        """Complete each ``values[i]`` into its position ``i`` of ``where``."""
        kind = completion.kind
        nullable = completion.nullable
        containers, keys = where.containers, where.keys
        objects: list[Any] = []
        at: list[int] = []
        for index, value in enumerate(values):
            if value is None or value is Undefined:
                if nullable:
                    containers[index][keys[index]] = None
                else:
                    self._fail_at(_null_error(field), _NON_NULL, field, where, index)
            elif isinstance(value, Exception):
                self._fail_at(value, completion, field, where, index)
            elif kind == LEAF:
                try:
                    coerced = completion.coerce(value)
                    if coerced is None or coerced is Undefined:
                        raise _null_leaf(completion, value, coerced)
                except Exception as error:
                    self._fail_at(error, completion, field, where, index)
                    continue
                containers[index][keys[index]] = coerced
            else:
                objects.append(value)
                at.append(index)
        if not objects:
            return
        if kind == OBJECT:
            self._complete_objects(completion, field, objects, where, at)
        elif kind == LIST:
            self._complete_lists(completion, field, objects, where, at)
        else:
            self._complete_abstract(completion, field, objects, where, at)

    def _complete_objects(
        self,
        completion: Completion,
        field: FieldPlan,
        values: list[Any],
        where: Positions,
        at: list[int],
    ) -> None:
        """Objects of one type at positions ``at`` of ``where``: executed as one batch."""
        plan = completion.plan
        assert plan is not None
        if plan.type.is_type_of is not None:
            self._check_types(completion, field, values, where, at)
            if not values:
                return
        containers, keys, parents = where.containers, where.keys, where.parents
        nullable, typename = completion.nullable, where.typename
        outs: list[dict[str, Any]] = []
        slots: list[Slot] = []
        for index in at:  # the hot loop of every object position: kept flat
            out: dict[str, Any] = {}
            container, key = containers[index], keys[index]
            container[key] = out
            outs.append(out)
            slots.append(Slot(parents[index], container, key, nullable, typename))
        self._execute_batch(plan, values, outs, slots)

    def _check_types(
        self,
        completion: Completion,
        field: FieldPlan,
        values: list[Any],
        where: Positions,
        at: list[int],
    ) -> None:
        """Keep in ``values``/``at`` only the values the type's ``is_type_of`` accepts."""
        plan = completion.plan
        assert plan is not None
        kept: list[tuple[Any, int]] = []
        for value, index in zip(values, at, strict=True):
            try:
                self._check_type_of(plan.type, field, where.slot(index, False), value)
            except Exception as error:
                self._fail_at(error, completion, field, where, index)
                continue
            kept.append((value, index))
        values[:] = [value for value, _ in kept]
        at[:] = [index for _, index in kept]

    def _complete_lists(
        self,
        completion: Completion,
        field: FieldPlan,
        values: list[Any],
        where: Positions,
        at: list[int],
    ) -> None:
        """Lists at positions ``at``: their items completed as one batch."""
        item = completion.item
        assert item is not None
        elements: list[Any] = []
        items_at = Positions([], [], [], None)
        in_container, in_key, in_parent = (
            items_at.containers.append,
            items_at.keys.append,
            items_at.parents.append,
        )
        pending: list[int] = []
        for value, index in zip(values, at, strict=True):
            if type(value) is not list:
                if not is_iterable(value):
                    self._fail_at(_not_iterable(field), completion, field, where, index)
                    continue
                value = list(value)
            slot = where.slot(index, completion.nullable)
            items: list[Any] = [None] * len(value)
            slot.container[slot.key] = items
            for position, element in enumerate(value):
                if _AWAITABLE_TYPES.get(element.__class__, True) and is_awaitable(element):
                    pending.append(len(elements))
                elements.append(element)
                in_container(items)
                in_key(position)
                in_parent(slot)
        if not elements:
            return
        complete = partial(self._complete, item, field, elements, items_at)
        if pending:
            self._wait_all(elements, pending, complete)
        else:
            complete()

    def _complete_abstract(
        self,
        completion: Completion,
        field: FieldPlan,
        values: list[Any],
        where: Positions,
        at: list[int],
    ) -> None:
        """Resolve each value's runtime type (awaiting it if need be), then complete
        the values of each type as objects of that type."""
        abstract = completion.abstract
        assert abstract is not None
        resolve_type = abstract.resolve_type or self.type_resolver
        by_type: dict[str, tuple[Completion, list[Any], list[int]]] = {}
        for value, index in zip(values, at, strict=True):
            try:
                info = self._info(field, where.path(index))
                runtime_type = resolve_type(value, info, abstract)
                if is_awaitable(runtime_type):
                    self._resolve_type_later(completion, field, runtime_type, value, where, index)
                    continue
                as_object = self._as_object(completion, runtime_type, value, info)
            except Exception as error:
                self._fail_at(error, completion, field, where, index)
                continue
            name = as_object.plan.name  # type: ignore[union-attr]
            group = by_type.get(name)
            if group is None:
                group = by_type[name] = (as_object, [], [])
            group[1].append(value)
            group[2].append(index)
        for as_object, group_values, group_at in by_type.values():
            self._complete_objects(as_object, field, group_values, where, group_at)

    def _as_object(
        self, completion: Completion, runtime_type: Any, value: Any, info: Any
    ) -> Completion:
        assert completion.abstract is not None
        object_type = self.ensure_valid_runtime_type(
            runtime_type, completion.abstract, completion.details, info, value
        )
        as_object = completion.objects.get(object_type.name)
        if as_object is None:
            as_object = Completion(OBJECT, completion.nullable)
            as_object.plan = self._object_plan(object_type, completion.details)
            completion.objects[object_type.name] = as_object
        return as_object

    def _resolve_type_later(
        self,
        completion: Completion,
        field: FieldPlan,
        runtime_type: Any,
        value: Any,
        where: Positions,
        index: int,
    ) -> None:
        resolved = [runtime_type]

        def complete() -> None:
            found = resolved[0]
            try:
                if isinstance(found, Exception):
                    raise found
                info = self._info(field, where.path(index))
                as_object = self._as_object(completion, found, value, info)
            except Exception as error:
                self._fail_at(error, completion, field, where, index)
                return
            self._complete_objects(as_object, field, [value], where, [index])

        where.containers[index][where.keys[index]] = None
        self._wait_all(resolved, [0], complete)

    def _check_type_of(
        self, object_type: GraphQLObjectType, field: FieldPlan, slot: Slot, value: Any
    ) -> None:
        info = self._info(field, slot_path(slot))  # type: ignore[arg-type]
        matches = object_type.is_type_of(value, info)  # type: ignore[misc]
        if is_awaitable(matches):
            matches.close()  # type: ignore[union-attr]
            raise GraphQLError(
                f"Type {object_type.name} has an asynchronous is_type_of,"
                " which the planned executor does not support.",
                field.nodes,
            )
        if not matches:
            raise GraphQLError(
                f"Expected value of type '{object_type.name}' but got: {inspect(value)}.",
                field.nodes,
            )

    def _info(self, field: FieldPlan, path: Path) -> Any:
        return self.build_resolve_info(
            field.field_def,  # type: ignore[arg-type]
            field.nodes,
            field.parent_type,
            path,
        )

    def _call_strawberry(
        self, field: FieldPlan, call: StrawberryCall, source: Any, info: Any, args: dict[str, Any]
    ) -> Any:
        """Strawberry's resolver wrapper without its per-call argument conversion."""
        strawberry_info = call.info_class(_raw_info=info, _field=call.field)
        kwargs = dict(self._converted_args(field, call, strawberry_info, args))
        for name in call.source_names:
            kwargs[name] = source
        if call.info_name is not None:
            kwargs[call.info_name] = strawberry_info
        if call.pass_self:
            return call.resolver(source, **kwargs)
        return call.resolver(**kwargs)

    def _converted_args(
        self, field: FieldPlan, call: StrawberryCall, info: Any, args: dict[str, Any]
    ) -> dict[str, Any]:
        """The field's arguments as Strawberry passes them (converted once per request)."""
        converted = self._converted.get(id(field))
        if converted is None:
            converted = self._converted[id(field)] = convert_arguments(
                args,
                call.field.arguments,
                scalar_registry=call.scalar_registry,
                config=call.config,
                info=info,
            )
        return converted

    # ------------------------------------------------------------ errors

    def leaf(self, field: FieldPlan, value: Any, out: dict[str, Any], slot: Slot | None) -> None:
        """Complete one leaf value at ``out[field.key]`` (compiled fills call this for
        what their inline check does not pass: nulls, errors, awaitables, coercion)."""
        completion = field.completion
        assert completion is not None
        values = [value]
        where = Positions([out], [field.key], [slot], field.parent_type.name)
        complete = partial(self._complete, completion, field, values, where)
        if is_awaitable(value):
            out[field.key] = None
            self._wait_all(values, [0], complete)
        else:
            complete()

    def fail_leaf(
        self, field: FieldPlan, error: Exception, out: dict[str, Any], slot: Slot | None
    ) -> None:
        """A field error at ``out[field.key]`` (compiled fills call this)."""
        assert field.completion is not None
        self._fail(error, field.completion, field, out, field.key, slot, field.parent_type.name)

    def _fail_at(
        self, raw: Exception, completion: Completion, field: FieldPlan, where: Positions, index: int
    ) -> None:
        self._fail(
            raw,
            completion,
            field,
            where.containers[index],
            where.keys[index],
            where.parents[index],
            where.typename,
        )

    def _fail(
        self,
        raw: Exception,
        completion: Completion,
        field: FieldPlan,
        container: Any,
        key: Any,
        parent: Slot | None,
        typename: str | None,
    ) -> None:
        """A field error at ``container[key]``: null it, or its nearest nullable ancestor."""
        path = Path(slot_path(parent), key, typename)
        error = located_error(raw, field.nodes, path.as_list())
        if completion.nullable:
            container[key] = None
            self.collected_errors.add(error, path)
            return
        slot = parent
        while slot is not None and not slot.nullable:
            slot = slot.parent
        if slot is None:
            self._data = None
            self.collected_errors.add(error, None)
            return
        slot.container[slot.key] = None
        self.collected_errors.add(error, slot_path(slot))


class Slot:
    """Where an object or a list sits in the response: its container and key, whether
    that position is nullable, and the slot holding the container (None: the root).
    Errors find their path and their nullable ancestor from it."""

    __slots__ = ("container", "key", "nullable", "parent", "path", "typename")

    def __init__(
        self, parent: Slot | None, container: Any, key: Any, nullable: bool, typename: str | None
    ) -> None:
        self.parent = parent
        self.container = container
        self.key = key
        self.nullable = nullable
        self.typename = typename
        self.path: Path | None = None


def slot_path(slot: Slot | None) -> Path | None:
    """The response path of a slot (made on first use: only errors and resolvers
    with an info of their own need one)."""
    if slot is None:
        return None
    path = slot.path
    if path is None:
        path = slot.path = Path(slot_path(slot.parent), slot.key, slot.typename)
    return path


class Positions:
    """Where a batch of values goes: value ``i`` into ``containers[i][keys[i]]``, a
    container held by the slot ``parents[i]``; ``typename``: the type whose fields
    the keys are (None: the keys are list indexes)."""

    __slots__ = ("containers", "keys", "parents", "typename")

    def __init__(
        self, containers: list[Any], keys: list[Any], parents: list[Any], typename: str | None
    ) -> None:
        self.containers = containers
        self.keys = keys
        self.parents = parents
        self.typename = typename

    def slot(self, index: int, nullable: bool) -> Slot:
        """The slot of position ``index``, for the object or list completed there."""
        return Slot(
            self.parents[index], self.containers[index], self.keys[index], nullable, self.typename
        )

    def path(self, index: int) -> Path:
        return Path(slot_path(self.parents[index]), self.keys[index], self.typename)


class _Group:
    """Values awaited together: ``then`` runs when the last one settles."""

    __slots__ = ("remaining", "then")

    def __init__(self, remaining: int, then: Any) -> None:
        self.remaining = remaining
        self.then = then


_NON_NULL = Completion(LEAF, False)
"""Where a null for a non-null field propagates from."""


def _values_for(loader: Any, keys: list[Any]) -> list[Any]:
    """A ``loaded`` field's values for the batch's keys (None for a null key; a
    refused one's error)."""
    loaded = loader.loaded
    return [
        None if key is None else key.error if type(key) is Refused else loaded(key) for key in keys
    ]


def expect(ctx: Any, root: ObjectPlan) -> Any:
    """Tell the operation's loaders and database what the plan reads: the joins, the
    columns of each table (unless ``Settings.narrow_columns`` is off), and whether one
    statement is all it sends (``ReadDB.expect``). With one statement, the loaders'
    scheduler holds its batch for the executor to send (``BatchScheduler.hold``):
    returned, or None."""
    loaders = getattr(ctx, "loaders", None)
    if loaders is None:
        return None
    loaders.want(root.joins)
    settings = getattr(ctx, "settings", None)
    if settings is None or settings.narrow_columns:
        if root.columns is None:
            root.columns = document_columns(root)
        loaders.narrow(root.columns)
    db = getattr(ctx, "_db", None)
    if db is not None:
        db.expect(root.statements)
    if root.statements != 1 or loaders.shared is not None:
        return None
    loaders.scheduler.hold()
    return loaders.scheduler


def _response_order(root: ObjectPlan, error: GraphQLError) -> tuple[int, ...]:
    """Where an error's path is in the response, as a sortable key: field positions in
    their object plans, list indexes as they are."""
    order: list[int] = []
    plans: list[ObjectPlan] = [root]
    completion: Completion | None = None
    for key in error.path or ():
        if isinstance(key, int):
            order.append(key)
            completion = completion.item if completion is not None else None
        else:
            field = next((p.by_key[key] for p in plans if key in p.by_key), None)
            if field is None:
                break
            order.append(field.index)
            completion = field.completion
        if completion is None:
            plans = []
        elif completion.kind == OBJECT:
            plans = [completion.plan]  # type: ignore[list-item]
        elif completion.kind == ABSTRACT:
            plans = [c.plan for c in completion.objects.values() if c.plan is not None]
    return tuple(order)


def _leaf_type_name(field: FieldPlan) -> str | None:
    """The name of the field's leaf type when its completion is a leaf, else None."""
    completion = field.completion
    return completion.leaf if completion is not None else None


def _null_error(field: FieldPlan) -> TypeError:
    return TypeError(
        f"Cannot return null for non-nullable field {field.parent_type.name}.{field.name}."
    )


def _null_leaf(completion: Completion, value: Any, coerced: Any) -> TypeError:
    return TypeError(
        f"Expected `{inspect(completion.coerce.__self__)}.coerce_output_value("
        f"{inspect(value)})` to return non-nullable value, returned:"
        f" {inspect(coerced)}"
    )


def _not_iterable(field: FieldPlan) -> GraphQLError:
    return GraphQLError(
        "Expected Iterable, but did not find one for field"
        f" '{field.parent_type.name}.{field.name}'."
    )


def _uses_variables(node: FieldNode) -> bool:
    """Do the field's arguments reference any variable (at any depth)?"""
    stack: list[Any] = [argument.value for argument in node.arguments or ()]
    while stack:
        value = stack.pop()
        if isinstance(value, VariableNode):
            return True
        stack.extend(getattr(value, "values", None) or ())
        stack.extend(field.value for field in getattr(value, "fields", None) or ())
    return False
