"""The query lane and driver reads answer exactly as the full pipeline does.

Every case is sent to the app (lane and driver reads on, the default) and to the
same server with both off (Strawberry's whole pipeline, an ORM session per
operation), on the same database: status, media type, body and the SQL
statements sent must be the same.
"""

from __future__ import annotations

import gc
import hashlib
from typing import Any

import orjson
import pytest
from sqlalchemy import event
from sqlalchemy.pool import PoolProxiedConnection

from bench.cpu_per_request import caller
from tests.documents import (
    ORDER_DETAILS,
    ORDER_STATS,
    ORDERS,
    VIEWER,
    W1_FEED,
    W2_PEOPLE,
    W3_NODE,
)

INTROSPECTION = '{ __schema { queryType { name } } __type(name: "Post") { fields { name } } }'
SALES = "query S($from: DateTime!, $to: DateTime!) { salesReport(from: $from, to: $to) { orderCount revenue unitsSold days { day orderCount revenue } topProducts { unitsSold revenue } } }"
FRAGMENTS = """
query Frag($first: Int) { users(first: $first) { nodes { ...U } } }
fragment U on User { username posts(first: 2) { totalCount nodes { title } } }
"""


def cases(world: Any) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(what, JSON body, headers) for every case."""
    post = world.gid("Post", world.posts[world.alice][0])
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}
    alice = {"Authorization": f"Bearer {world.tokens['alice']}"}
    return [
        ("W1", {"query": W1_FEED}, {}),
        ("W2", {"query": W2_PEOPLE}, {}),
        ("W3", {"query": W3_NODE, "variables": {"postId": post}}, {}),
        ("W3 as alice", {"query": W3_NODE, "variables": {"postId": post}}, alice),
        ("fragments, variables", {"query": FRAGMENTS, "variables": {"first": 3}}, {}),
        ("introspection", {"query": INTROSPECTION}, {}),
        ("viewer, signed in", {"query": VIEWER}, alice),
        ("viewer, anonymous", {"query": VIEWER}, {}),
        ("viewer, unknown token", {"query": VIEWER}, {"Authorization": "Bearer nope"}),
        ("orders, anonymous: a field error", {"query": ORDERS}, {}),
        (
            "sales report: aggregates, dates",
            {
                "query": SALES,
                "variables": {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
            },
            admin,
        ),
        (
            "orders, enum filter",
            {"query": ORDERS, "variables": {"filter": {"status": "PAID"}}},
            admin,
        ),
        ("order details, enum results", {"query": ORDER_DETAILS}, admin),
        ("order stats, numerics", {"query": ORDER_STATS}, admin),
        ("bad global id", {"query": W3_NODE, "variables": {"postId": "bm9wZQ"}}, {}),
        ("variable missing", {"query": W3_NODE}, {}),
        ("variable of the wrong type", {"query": W3_NODE, "variables": {"postId": 5}}, {}),
        ("page size over the limit", {"query": FRAGMENTS, "variables": {"first": 1000}}, {}),
        ("syntax error", {"query": "{ users { "}, {}),
        ("unknown field", {"query": "{ nope }"}, {}),
        (
            "two operations, none named",
            {"query": "query A { viewer { id } } query B { viewer { id } }"},
            {},
        ),
        (
            "named operation",
            {
                "query": "query A { tags(first: 1) { totalCount } } query B { viewer { id } }",
                "operationName": "A",
            },
            {},
        ),
        ("variables not an object", {"query": W3_NODE, "variables": "x"}, {}),
        ("mutation", {"query": "mutation { logOut { ok } }"}, {}),
    ]


class Statements:
    def __init__(self, *engines: Any) -> None:
        self.engines = engines
        self.sent: list[tuple[str, Any]] = []

    def listener(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append((statement, conn))

    def __enter__(self) -> Statements:
        for engine in self.engines:
            event.listen(engine.sync_engine, "before_cursor_execute", self.listener)
        return self

    def __exit__(self, *exc: object) -> None:
        for engine in self.engines:
            event.remove(engine.sync_engine, "before_cursor_execute", self.listener)


def comparable(response: Any) -> tuple[int, str, Any]:
    return response.status_code, response.headers["content-type"], response.json()


async def test_lane_and_full_path_answer_alike(app, client, full_path_app, full_path_client, world):
    for what, body, headers in cases(world):
        for accept in ("application/json", "application/graphql-response+json"):
            sent = {**headers, "Accept": accept}
            with Statements(app.state.engine) as lane_sql:
                lane = await client.post("/graphql", json=body, headers=sent)
            with Statements(full_path_app.state.engine) as full_sql:
                full = await full_path_client.post("/graphql", json=body, headers=sent)
            assert comparable(lane) == comparable(full), what
            assert [s for s, _ in lane_sql.sent] == [s for s, _ in full_sql.sent], what
            assert lane.headers["x-request-id"]


async def test_queries_take_the_lane_and_the_driver(app, client, world):
    post = world.gid("Post", world.posts[world.alice][0])
    body = {"query": W3_NODE, "variables": {"postId": post}}
    with Statements(app.state.engine) as sql:
        response = await client.post("/graphql", json=body)
    assert response.json()["data"]["node"]["title"]
    assert (W3_NODE, None) in app.lane.prepared._entries  # prepared by the lane
    assert len(sql.sent) == 1  # the post with its author (tests/test_round_trips.py)
    assert all(isinstance(conn, PoolProxiedConnection) for _, conn in sql.sent)  # on the driver


async def test_persisted_queries_on_the_lane(client, world):
    post = world.gid("Post", world.posts[world.alice][0])
    digest = hashlib.sha256(W3_NODE.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    variables = {"postId": post}
    # An unknown hash alone: PERSISTED_QUERY_NOT_FOUND; the retry with the document registers it
    miss = await client.post("/graphql", json={"extensions": persisted, "variables": variables})
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    full = {"query": W3_NODE, "extensions": persisted, "variables": variables}
    first = await client.post("/graphql", json=full)
    again = await client.post("/graphql", json={"extensions": persisted, "variables": variables})
    assert first.json() == again.json() and again.json()["data"]["node"]["title"]


@pytest.mark.parametrize("size", [2, 10])
async def test_driver_reads_stay_batched(client, app, size):
    """The statement budget is the same on the driver: W2 at two page sizes."""
    query = W2_PEOPLE.replace("first: 20", f"first: {size}")
    with Statements(app.state.engine) as sql:
        response = await client.post("/graphql", json={"query": query})
    assert "errors" not in response.json()
    assert len(sql.sent) == 3  # users, their post pages, the posts' tags


async def test_a_lane_request_leaves_no_reference_cycle_behind(app, world):
    """Everything a query request made is freed by reference counting when it ends:
    the cyclic collector (and its pauses) has nothing of it to find. The app is
    called as uvicorn calls it (an HTTP client's own objects would count too)."""
    post = world.gid("Post", world.posts[world.alice][0])
    alice = f"Bearer {world.tokens['alice']}"
    bodies = [
        ({"query": W1_FEED}, None),
        ({"query": W2_PEOPLE}, alice),
        ({"query": W3_NODE, "variables": {"postId": post}}, None),
        ({"query": FRAGMENTS, "variables": {"first": 3}}, alice),
        ({"query": '{ node(id: "bad") { id } }'}, None),  # a field error
        ({"query": "query($n: Int!) { posts(first: $n) { totalCount } }"}, None),  # no $n
    ]
    for body, authorization in bodies:  # plans and statements cached before counting
        assert await asgi_post(app, body, authorization) == 200
    gc.collect()
    gc.disable()
    try:
        for body, authorization in bodies * 4:
            assert await asgi_post(app, body, authorization) == 200
        gc.set_debug(gc.DEBUG_SAVEALL)
        found = gc.collect()
        cyclic = sorted({type(o).__qualname__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert found == 0, " ".join(cyclic)


async def asgi_post(app: Any, body: dict[str, Any], authorization: str | None) -> int:
    """POST /graphql to the ASGI app, as uvicorn calls it; the response's status."""
    extra = [(b"authorization", authorization.encode())] if authorization else []
    return await caller(app, orjson.dumps(body), extra)()
