"""Static limits (depth, aliases, directives, cost, page sizes, ``nodes(ids:)``),
checked after validation and before the operation begins (no BEGIN, no SQL).
Refusals are GraphQL errors with a code: QUERY_TOO_COMPLEX for the limits,
BAD_USER_INPUT for page sizes and id counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    get_named_type,
    value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension

from gql_app.errors import ErrorCode
from gql_app.settings import Settings

PAGE_ARGUMENTS = ("first", "last")
INTROSPECTION_ROOTS = ("__schema", "__type")
MAX_INTROSPECTION_DEPTH = 20  # introspection is in memory; GraphiQL's own query needs 15


@dataclass
class Shape:
    """What a selection set costs, relative to a multiplier of 1."""

    depth: int = 0
    aliases: int = 0
    directives: int = 0
    cost: int = 0

    def add(self, other: Shape, multiplier: int = 1, depth_offset: int = 0) -> None:
        self.depth = max(self.depth, other.depth + depth_offset)
        self.aliases += other.aliases
        self.directives += other.directives
        self.cost += other.cost * multiplier


class QueryTooComplex(GraphQLError):
    def __init__(self, message: str, code: ErrorCode = ErrorCode.QUERY_TOO_COMPLEX) -> None:
        super().__init__(message, extensions={"code": code.value})


class Analysis:
    """One pass over an operation, named fragments expanded and each analysed once
    (nested spreads cannot make the analysis itself expensive):

    - depth: fields nested inside fields (fragments and inline fragments add none);
    - aliases and directives, counted as the query would run them (a fragment
      spread three times counts three times);
    - cost: the nodes the query could return, GitHub-style: a connection field
      adds ``parent multiplier * page size`` (``first``, ``last`` or the default),
      ``nodes(ids:)`` its id count;
    - page sizes out of ``0..max_page_size`` and more than ``max_ids`` ids in
      ``nodes(ids:)``, refused before a sibling field could touch the database.
    """

    def __init__(
        self,
        settings: Settings,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.settings = settings
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self._fragment_shapes: dict[str, Shape] = {}
        self._in_progress: set[str] = set()
        self.reads_variables = False
        """Whether the verdict depends on the variables (a page size or ids given by one)."""

    def selection_set(self, selection_set: SelectionSetNode | None, parent: Any) -> Shape:
        shape = Shape()
        if selection_set is None:
            return shape
        for selection in selection_set.selections:
            shape.directives += len(selection.directives or ())
            if isinstance(selection, FieldNode):
                shape.add(self.field(selection, parent))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                shape.add(self.selection_set(selection.selection_set, inner))
            elif isinstance(selection, FragmentSpreadNode):
                shape.add(self.fragment(selection.name.value))
        return shape

    def fragment(self, name: str) -> Shape:
        cached = self._fragment_shapes.get(name)
        if cached is not None:
            return cached
        definition = self.fragments.get(name)
        if definition is None or name in self._in_progress:
            return Shape()  # undefined or cyclic: validation reports it, never a crash here
        self._in_progress.add(name)
        parent = self.schema.get_type(definition.type_condition.name.value)
        shape = self.selection_set(definition.selection_set, parent)
        shape.directives += len(definition.directives or ())
        self._in_progress.discard(name)
        self._fragment_shapes[name] = shape
        return shape

    def field(self, node: FieldNode, parent: Any) -> Shape:
        name = node.name.value
        definition = getattr(parent, "fields", {}).get(name) if parent is not None else None
        field_type = get_named_type(definition.type) if definition is not None else None
        arguments = {arg.name.value: arg.value for arg in node.arguments or ()}
        multiplier, own_cost = 1, 0
        if field_type is not None and field_type.name.endswith("Connection"):
            multiplier = self.settings.default_page_size
            for argument in PAGE_ARGUMENTS:
                if argument in arguments:
                    multiplier = self.page_size(argument, self.value(arguments[argument]))
            own_cost = multiplier
        elif name == "nodes" and "ids" in arguments:
            multiplier = own_cost = self.id_count(self.value(arguments["ids"]))
        if name in INTROSPECTION_ROOTS and not self.settings.introspection:
            raise QueryTooComplex("Introspection is disabled.", ErrorCode.FORBIDDEN)
        child = self.selection_set(node.selection_set, field_type)
        if name in INTROSPECTION_ROOTS:
            if child.depth + 1 > MAX_INTROSPECTION_DEPTH:
                raise QueryTooComplex(
                    f"Introspection deeper than {MAX_INTROSPECTION_DEPTH} levels is refused."
                )
            child = Shape(aliases=child.aliases, directives=child.directives)
        return Shape(
            depth=1 + child.depth,
            aliases=child.aliases + (1 if node.alias is not None else 0),
            directives=child.directives,
            cost=own_cost + child.cost * multiplier,
        )

    def value(self, node: Any) -> Any:
        if isinstance(node, VariableNode):
            self.reads_variables = True
            return self.variables.get(node.name.value)
        if not isinstance(node, (IntValueNode, StringValueNode, NullValueNode)):
            self.reads_variables = True  # a list or object may hold variables
        return value_from_ast_untyped(node, self.variables)

    def page_size(self, argument: str, value: Any) -> int:
        if value is None:
            return self.settings.default_page_size
        cap = self.settings.max_page_size
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= cap:
            raise QueryTooComplex(
                f"`{argument}` must be between 0 and {cap}; got {value}.", ErrorCode.BAD_USER_INPUT
            )
        return value

    def id_count(self, ids: Any) -> int:
        count = len(ids) if isinstance(ids, list) else 1  # one ID is coerced to a list
        cap = self.settings.max_ids
        if count > cap:
            raise QueryTooComplex(
                f"`ids` takes at most {cap} IDs; got {count}.", ErrorCode.BAD_USER_INPUT
            )
        return count


def operation_shape(
    settings: Settings,
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> Shape:
    root = schema.get_root_type(operation.operation)
    return Analysis(settings, schema, fragments, variables).selection_set(
        operation.selection_set, root
    )


def violations(settings: Settings, shape: Shape) -> Iterator[str]:
    if shape.depth > settings.max_depth:
        yield f"Query depth {shape.depth} exceeds the maximum of {settings.max_depth}."
    if shape.aliases > settings.max_aliases:
        yield f"The query uses {shape.aliases} aliases; the maximum is {settings.max_aliases}."
    if shape.directives > settings.max_directives:
        yield (
            f"The query uses {shape.directives} directives; "
            f"the maximum is {settings.max_directives}."
        )
    if shape.cost > settings.max_cost:
        yield (
            f"The query could return {shape.cost} nodes; the maximum is {settings.max_cost}. "
            "Ask for smaller pages."
        )


class QueryLimits(SchemaExtension):
    """Refuses, before execution (and so before any SQL), what the limits forbid."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        settings: Settings = context.context.settings
        if context.query is not None and len(context.query) > settings.max_document_chars:
            raise QueryTooComplex(
                f"The document is {len(context.query)} characters long; "
                f"the maximum is {settings.max_document_chars}."
            )
        # graphql-core stops lexing past this many tokens (cheap refusal of huge documents)
        context.parse_options["max_tokens"] = settings.max_tokens
        yield

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        settings: Settings = context.context.settings
        if document is not None:
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            # Strawberry's ``operation_name`` falls back to the first operation's name;
            # what the client sent is the provided one.
            name = context._provided_operation_name
            if name is None and len(operations) > 1:
                raise QueryTooComplex(
                    "The document has several operations: say which to run with `operationName`.",
                    ErrorCode.BAD_USER_INPUT,
                )
            operation = next(
                (o for o in operations if name is None or (o.name and o.name.value == name)), None
            )
            if operation is not None:
                shape = operation_shape(
                    settings, context.schema._schema, operation, fragments, context.variables or {}
                )
                for message in violations(settings, shape):
                    raise QueryTooComplex(message)
        yield
