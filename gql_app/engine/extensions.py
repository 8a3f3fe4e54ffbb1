"""The schema's per-request extensions that wrap the operation: its transaction and
its line in the request log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from gql_app.data.transaction import operation
from gql_app.observability import current_observation


class Transaction(SchemaExtension):
    """Runs the operation inside ``transaction.operation`` (begin, authenticate,
    commit or roll back) before the response is written."""

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        execution = self.execution_context
        read_only = execution.operation_type is OperationType.QUERY
        async with operation(execution.context, read_only) as op:
            if op.fault is not None:
                execution.result = op.unavailable()
            yield
            op.result = execution.result  # type: ignore[assignment]


class ObserveOperation(SchemaExtension):
    """Notes the operation's name and type (query/mutation) for the request's log line."""

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        finally:
            observation = current_observation.get()
            if observation is not None:
                execution = self.execution_context
                try:
                    observation.operation_type = execution.operation_type.value
                except Exception:  # no document, or no operation of that name
                    pass
                else:
                    observation.operation_name = execution.operation_name
