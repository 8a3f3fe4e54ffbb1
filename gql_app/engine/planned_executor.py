"""Replaces graphql-core's executor for query operations (as Strawberry's execution
context class): a document's selection is compiled once into a plan of resolvers
and completions, then walked without a task or coroutine per field, so every
loader sees all of its keys before its batch is sent.

Subscription operations run here too, once per event (the root value is the
event's object, ``web.live``). The GraphQL semantics stay graphql-core's; mutations,
``@defer``/``@stream``, introspection roots and field middleware take its own path.
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
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    is_abstract_type,
    is_leaf_type,
    located_error,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, inspect, is_iterable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

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

    __slots__ = ("abstract", "coerce", "details", "item", "kind", "nullable", "objects", "plan")

    def __init__(self, kind: int, nullable: bool) -> None:
        self.kind = kind
        self.nullable = nullable
        self.coerce: Any = None
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
        "completion",
        "details",
        "field_def",
        "key",
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


class ObjectPlan:
    """The fields to execute on an object of one concrete type; for the operation's
    root, the most statements it may send and the to-one rows read with their
    parents (``engine.statements``)."""

    __slots__ = ("by_key", "fields", "joins", "name", "statements", "type")

    def __init__(self, object_type: GraphQLObjectType, fields: list[FieldPlan]) -> None:
        self.type = object_type
        self.name = object_type.name
        self.fields = fields
        self.by_key = {field.key: field for field in fields}
        self.statements = 0
        self.joins: Joins = {}


class _TypeResolved:
    """An abstract value whose runtime type was awaited."""

    __slots__ = ("runtime_type", "value")

    def __init__(self, runtime_type: Any, value: Any) -> None:
        self.runtime_type = runtime_type
        self.value = value


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

    async def _execute_plan(self, root: ObjectPlan) -> Any:
        self._root_plan = root
        self._data: dict[str, Any] | None = {}
        self._arguments: dict[int, dict[str, Any]] = {}
        self._converted: dict[int, dict[str, Any]] = {}
        self._infos: dict[int, Any] = {}
        self._outstanding = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._context = contextvars.copy_context()
        expect(self.context_value, root)
        try:
            self._execute_object(root, self.root_value, None, self._data)
            if self._outstanding:
                try:
                    await self._finished
                except BaseException:
                    for task in self._tasks:
                        task.cancel()
                    raise
            return self.build_response(self._data)
        finally:
            # graphql-core's executor is in a reference cycle (its async helpers
            # are its bound methods): let go of the request's values now rather
            # than at the next full collection.
            self._data = None
            self._tasks = []
            self._infos = {}
            self._arguments = {}
            self._converted = {}

    def _wait(
        self,
        awaitable: Any,
        completion: Completion,
        field: FieldPlan,
        path: Path,
        container: Any,
        key: str | int,
    ) -> None:
        """Complete ``container[key]`` when ``awaitable`` settles (futures need no task)."""
        container[key] = None
        if asyncio.isfuture(awaitable):
            future = awaitable
        else:
            future = asyncio.ensure_future(awaitable)
            self._tasks.append(future)
        self._outstanding += 1
        future.add_done_callback(
            partial(self._settled, completion, field, path, container, key),
            context=self._context,  # one context for all: no copy per callback
        )

    def _settled(
        self,
        completion: Completion,
        field: FieldPlan,
        path: Path,
        container: Any,
        key: str | int,
        future: asyncio.Future[Any],
    ) -> None:
        if self._finished.done():
            return
        try:
            if future.cancelled():  # the request is being torn down
                self._finished.cancel()
                return
            if (error := future.exception()) is not None:
                if not isinstance(error, Exception):
                    raise error
                self._fail(error, completion, field, path, container, key)
            else:
                result = future.result()
                if type(result) is _TypeResolved:
                    self._complete_abstract(
                        completion, field, path, result.value, container, key, result.runtime_type
                    )
                else:
                    self._complete(completion, field, path, result, container, key)
        except BaseException as error:
            self._finished.set_exception(error)
            return
        self._outstanding -= 1
        if not self._outstanding:
            self._finished.set_result(None)

    def _execute_object(
        self, plan: ObjectPlan, source: Any, path: Path | None, out: dict[str, Any]
    ) -> None:
        for field in plan.fields:
            key = field.key
            completion = field.completion
            if field.typename:
                out[key] = plan.name
                continue
            assert completion is not None
            attribute = field.attribute
            if attribute is not None:
                try:
                    value = getattr(source, attribute)
                except Exception as error:
                    self._fail(error, completion, field, Path(path, key, plan.name), out, key)
                    continue
                if completion.kind == LEAF and value is not None:
                    try:
                        coerced = completion.coerce(value)
                    except Exception as error:
                        self._fail(error, completion, field, Path(path, key, plan.name), out, key)
                        continue
                    if coerced is not None and coerced is not Undefined:
                        out[key] = coerced
                        continue
                self._complete(completion, field, Path(path, key, plan.name), value, out, key)
                continue
            field_path = Path(path, key, plan.name)
            try:
                if field.static_args:
                    args = field.args
                else:
                    args = self._arguments.get(id(field))  # type: ignore[assignment]
                    if args is None:
                        args = self._arguments[id(field)] = self._argument_values(field)
                if field.shared_info:
                    info = self._infos.get(id(field))
                    if info is None:
                        info = self._infos[id(field)] = self._info(field, field_path)
                else:
                    info = self._info(field, field_path)
                if field.strawberry is not None:
                    value = self._call_strawberry(field, field.strawberry, source, info, args)
                else:
                    value = field.resolve(source, info, **args)
            except Exception as error:
                self._fail(error, completion, field, field_path, out, key)
                continue
            if is_awaitable(value):
                self._wait(value, completion, field, field_path, out, key)
            else:
                self._complete(completion, field, field_path, value, out, key)

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
        converted = self._converted.get(id(field))
        if converted is None:
            converted = self._converted[id(field)] = convert_arguments(
                args,
                call.field.arguments,
                scalar_registry=call.scalar_registry,
                config=call.config,
                info=strawberry_info,
            )
        kwargs = dict(converted)
        for name in call.source_names:
            kwargs[name] = source
        if call.info_name is not None:
            kwargs[call.info_name] = strawberry_info
        if call.pass_self:
            return call.resolver(source, **kwargs)
        return call.resolver(**kwargs)

    def _complete(
        self,
        completion: Completion,
        field: FieldPlan,
        path: Path,
        value: Any,
        container: Any,
        key: str | int,
    ) -> None:
        """Complete ``value`` into ``container[key]``, the position at ``path``."""
        if value is None or value is Undefined:
            if completion.nullable:
                container[key] = None
            else:
                self._fail_null(completion, field, path, container, key)
            return
        if isinstance(value, Exception):
            self._fail(value, completion, field, path, container, key)
            return
        kind = completion.kind
        try:
            if kind == LEAF:
                coerced = completion.coerce(value)
                if coerced is None or coerced is Undefined:
                    raise _null_leaf(completion, value, coerced)
                container[key] = coerced
            elif kind == OBJECT:
                plan = completion.plan
                assert plan is not None
                if plan.type.is_type_of is not None:
                    self._check_type_of(plan.type, field, path, value)
                out: dict[str, Any] = {}
                container[key] = out
                self._execute_object(plan, value, path, out)
            elif kind == LIST:
                if not is_iterable(value):
                    raise _not_iterable(field)
                item = completion.item
                assert item is not None
                items: list[Any] = []
                container[key] = items
                for index, element in enumerate(value):
                    items.append(None)
                    item_path = Path(path, index, None)
                    if is_awaitable(element):
                        self._wait(element, item, field, item_path, items, index)
                    else:
                        self._complete(item, field, item_path, element, items, index)
            else:
                self._complete_abstract(completion, field, path, value, container, key, None)
        except Exception as error:
            self._fail(error, completion, field, path, container, key)

    def _complete_abstract(
        self,
        completion: Completion,
        field: FieldPlan,
        path: Path,
        value: Any,
        container: Any,
        key: str | int,
        runtime_type: Any,
    ) -> None:
        """Resolve the value's runtime type (awaiting it if need be), then complete it
        as an object of that type."""
        abstract = completion.abstract
        assert abstract is not None
        info = self._info(field, path)
        try:
            if runtime_type is None:
                resolve_type = abstract.resolve_type or self.type_resolver
                runtime_type = resolve_type(value, info, abstract)
                if is_awaitable(runtime_type):
                    typed = _await_type(runtime_type, value)
                    self._wait(typed, completion, field, path, container, key)
                    return
            object_type = self.ensure_valid_runtime_type(
                runtime_type, abstract, completion.details, info, value
            )
            as_object = completion.objects.get(object_type.name)
            if as_object is None:
                as_object = Completion(OBJECT, completion.nullable)
                as_object.plan = self._object_plan(object_type, completion.details)
                completion.objects[object_type.name] = as_object
        except Exception as error:
            self._fail(error, completion, field, path, container, key)
            return
        self._complete(as_object, field, path, value, container, key)

    def _check_type_of(
        self, object_type: GraphQLObjectType, field: FieldPlan, path: Path, value: Any
    ) -> None:
        info = self._info(field, path)
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

    # ------------------------------------------------------------ errors

    def _fail_null(
        self, completion: Completion, field: FieldPlan, path: Path, container: Any, key: str | int
    ) -> None:
        message = (
            f"Cannot return null for non-nullable field {field.parent_type.name}.{field.name}."
        )
        self._fail(TypeError(message), completion, field, path, container, key)

    def _fail(
        self,
        raw: Exception,
        completion: Completion,
        field: FieldPlan,
        path: Path,
        container: Any,
        key: str | int,
    ) -> None:
        """A field error at ``path``: null it, or its nearest nullable ancestor."""
        error = located_error(raw, field.nodes, path.as_list())
        if completion.nullable:
            container[key] = None
            self.collected_errors.add(error, path)
            return
        position = self._nullable_ancestor(path)
        if position is None:
            self._data = None
            self.collected_errors.add(error, None)
            return
        ancestor_container, ancestor_key, ancestor_path = position
        if ancestor_container is not None:
            ancestor_container[ancestor_key] = None
        self.collected_errors.add(error, ancestor_path)

    def _nullable_ancestor(self, path: Path) -> tuple[Any, str | int, Path] | None:
        """The nearest nullable position above ``path`` (None: the whole response)."""
        chain = []
        node = path.prev
        while node is not None:
            chain.append(node)
            node = node.prev
        chain.reverse()
        container: Any = self._data
        if container is None:
            return None  # the whole response is null already
        plan: ObjectPlan | None = self._root_plan
        completion: Completion | None = None
        found = None
        for index, node in enumerate(chain):
            if completion is None or completion.kind != LIST:
                if plan is None:
                    break
                field = plan.by_key.get(node.key)  # type: ignore[arg-type]
                if field is None or field.completion is None:
                    break
                completion = field.completion
            else:
                completion = completion.item
                assert completion is not None
            if completion.nullable:
                found = (container, node.key, node)
            try:
                container = container[node.key]
            except (KeyError, IndexError, TypeError):
                container = None
            if completion.kind == OBJECT:
                plan = completion.plan
            elif completion.kind == ABSTRACT:
                following = chain[index + 1] if index + 1 < len(chain) else path
                found_type = completion.objects.get(following.typename or "")
                plan = found_type.plan if found_type is not None else None
            if container is None:
                # Already nulled above: the error lands inside a nulled position.
                return found if found is not None else (None, node.key, node)
        return found


def expect(ctx: Any, root: ObjectPlan) -> None:
    """Tell the operation's loaders and database what the plan reads: the joins, and
    whether one statement is all it sends (``ReadDB.expect``)."""
    loaders = getattr(ctx, "loaders", None)
    if loaders is None:
        return
    loaders.want(root.joins)
    db = getattr(ctx, "_db", None)
    if db is not None:
        db.expect(root.statements)


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


async def _await_type(runtime_type: Any, value: Any) -> _TypeResolved:
    return _TypeResolved(await runtime_type, value)


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
