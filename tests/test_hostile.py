"""A hostile-input battery: whatever a client sends, the answer is a coded error
(or a correct answer), never a 500, a stack trace, driver text or SQL, and the
server is left with an idle pool and still answers a normal query."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gql_app.models import AuthToken
from gql_app.users.passwords import token_digest
from tests.conftest import in_use

CODES = {
    "BAD_USER_INPUT",
    "BAD_REQUEST",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "QUERY_TOO_COMPLEX",
}
LEAKS = ("Traceback", "SELECT ", "INSERT ", "asyncpg", "sqlalchemy", "psycopg", 'File "')


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def raw(body: bytes, content_type: str = "application/json") -> dict:
    return {"content": body, "headers": {"Content-Type": content_type}}


def gql(query: str, variables: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token
    return {
        "content": orjson.dumps({"query": query, "variables": variables or {}}),
        "headers": headers,
    }


NODE = "query($id: ID!) { node(id: $id) { id } }"
POSTS = "query($f: PostFilter, $first: Int, $after: String) { posts(first: $first, after: $after, filter: $f) { totalCount } }"
PRODUCTS = "query($f: ProductFilter) { products(filter: $f) { totalCount } }"
VIEWER = "{ viewer { username } }"
TRANSFER = """mutation($amount: Decimal!) { transferFunds(input: {fromAccountId: "QWNjb3VudDoy",
  toAccountId: "QWNjb3VudDoz", amount: $amount}) { transfer { id } userErrors { code } } }"""
ORDER = "mutation($lines: [OrderLineInput!]!) { placeOrder(input: {lines: $lines}) { order { id } userErrors { code } } }"

CASES = [
    # ---- bodies
    ("empty-body", raw(b"")),
    ("string-body", raw(b'"{ viewer { id } }"')),
    ("null-body", raw(b"null")),
    ("array-body", raw(b"[]")),
    ("number-body", raw(b"12")),
    ("truncated-json", raw(b'{"query": "{ viewer')),
    ("query-not-a-string", raw(b'{"query": 42}')),
    ("variables-array", raw(b'{"query": "{ __typename }", "variables": [1]}')),
    ("variables-string", raw(b'{"query": "{ __typename }", "variables": "{}"}')),
    ("operation-name-number", raw(b'{"query": "{ __typename }", "operationName": 1}')),
    ("extensions-string", raw(b'{"query": "{ __typename }", "extensions": "x"}')),
    ("invalid-utf8", raw(b'{"query": "\xff\xfe"}')),
    ("form-post", raw(b"query=%7B__typename%7D", "application/x-www-form-urlencoded")),
    ("text-plain", raw(b'{"query": "{ __typename }"}', "text/plain")),
    ("oversized-body", raw(b'{"query": "{ __typename }", "x": "' + b"a" * 1_200_000 + b'"}')),
    # ---- documents
    ("syntax-error", gql("{ posts(first: ) }")),
    ("unknown-field", gql("{ passwords }")),
    (
        "depth-bomb",
        gql("{ " + "posts(first: 1) { nodes { author { " * 12 + "id" + " } } }" * 12 + " }"),
    ),
    (
        "alias-bomb",
        gql("{ " + " ".join(f"a{i}: posts(first: 1) {{ totalCount }}" for i in range(200)) + " }"),
    ),
    ("directive-bomb", gql("{ " + "__typename @skip(if: false) " * 200 + "}")),
    ("token-bomb", gql("{ " + "__typename " * 20_000 + "}")),
    ("fragment-cycle", gql("fragment A on Query { ...B } fragment B on Query { ...A } { ...A }")),
    ("undefined-fragment", gql("{ ...Nope }")),
    ("several-operations", gql("query A { __typename } query B { __typename }")),
    (
        "cost-bomb",
        gql(
            "{ users(first: 100) { nodes { posts(first: 100) { nodes { comments(first: 100) { totalCount } } } } } }"
        ),
    ),
    # ---- variables and scalars
    ("int-as-string", gql(POSTS, {"first": "ten"})),
    ("int-overflow", gql(POSTS, {"first": 2**31})),
    ("huge-number", gql(POSTS, {"first": 1e308})),
    ("negative-page", gql(POSTS, {"first": -5})),
    ("bad-datetime", gql(POSTS, {"f": {"publishedAfter": "2026-13-45T99:00:00Z"}})),
    (
        "naive-datetime-in-far-past",
        gql(POSTS, {"f": {"publishedAfter": "0001-01-01T00:00:00-14:00"}}),
    ),
    (
        "datetime-before-year-one-in-utc",
        gql(POSTS, {"f": {"publishedAfter": "0001-01-01T00:00:00+14:00"}}),
    ),
    (
        "datetime-after-year-9999-in-utc",
        gql(POSTS, {"f": {"publishedBefore": "9999-12-31T23:59:59-14:00"}}),
    ),
    ("decimal-nan", gql(PRODUCTS, {"f": {"minPrice": "NaN"}})),
    ("decimal-huge", gql(PRODUCTS, {"f": {"minPrice": "1e99999"}})),
    ("enum-injection", gql("{ posts(orderBy: {field: DROP_TABLE}) { totalCount } }")),
    ("wrong-input-shape", gql(POSTS, {"f": "published"})),
    # ---- IDs and cursors
    ("empty-id", gql(NODE, {"id": ""})),
    ("sql-in-id", gql(NODE, {"id": "'; DROP TABLE users; --"})),
    ("sql-in-decoded-id", gql(NODE, {"id": b64("User:1 OR 1=1")})),
    ("negative-pk", gql(NODE, {"id": b64("User:-1")})),
    ("huge-pk", gql(NODE, {"id": b64("User:" + "9" * 40)})),
    ("unknown-type", gql(NODE, {"id": b64("Secret:1")})),
    ("non-canonical-id", gql(NODE, {"id": b64("User:01")})),
    ("garbage-cursor", gql(POSTS, {"after": "%%%"})),
    (
        "forged-cursor-json",
        gql(POSTS, {"after": b64('["Query.posts","CREATED_AT:DESC",{"$gt":1},1]')}),
    ),
    ("cursor-nul", gql(POSTS, {"after": b64('["Query.posts","CREATED_AT:DESC","\\u0000",1]')})),
    # ---- injection strings and NUL
    ("like-injection", gql(POSTS, {"f": {"search": "%' OR 1=1 --"}})),
    ("nul-in-search", gql(POSTS, {"f": {"search": "a\u0000b"}})),
    ("nul-in-tag-name", gql("query($n: String!) { tag(name: $n) { id } }", {"n": "\u0000"})),
    ("quote-in-sku", gql("query($s: String) { product(sku: $s) { id } }", {"s": "' OR ''='"})),
    ("long-username", gql("query($u: String) { user(username: $u) { id } }", {"u": "x" * 10_000})),
    # ---- tokens
    ("forged-token", gql(VIEWER, token="Bearer forged")),
    ("bearer-without-token", gql(VIEWER, token="Bearer ")),
    ("huge-token", gql(VIEWER, token="Bearer " + "x" * 10_000)),
    ("basic-auth", gql(VIEWER, token="Basic YWRtaW46YWRtaW4=")),
    # ---- mutations
    ("amount-overflow", gql(TRANSFER, {"amount": "1e400"})),
    ("amount-negative-zero", gql(TRANSFER, {"amount": "-0"})),
    ("amount-three-decimals", gql(TRANSFER, {"amount": "0.001"})),
    (
        "quantity-overflow",
        gql(ORDER, {"lines": [{"productId": b64("Product:1"), "quantity": 2**40}]}),
    ),
    (
        "thousand-lines",
        gql(ORDER, {"lines": [{"productId": b64("Product:1"), "quantity": 1}] * 1000}),
    ),
]


@pytest.mark.parametrize("request_kwargs", [c[1] for c in CASES], ids=[c[0] for c in CASES])
async def test_hostile_input_gets_a_coded_refusal(stack, request_kwargs):
    response = await stack.http.post("/graphql", **request_kwargs)
    assert response.status_code < 500, response.text
    for leak in LEAKS:
        assert leak not in response.text, response.text[:500]
    body = response.json()
    for error in body.get("errors", []):
        assert error["extensions"]["code"] in CODES, error


async def test_revoked_and_expired_tokens_are_anonymous(stack):
    token = (
        await stack.gql(
            'mutation { signUp(input: {username: "hostile", email: "h@example.com", password: "long enough"}) { token } }'
        )
    )["data"]["signUp"]["token"]
    assert (await stack.gql(VIEWER, token=token))["data"]["viewer"]["username"] == "hostile"
    await stack.gql("mutation { logOut { ok } }", token=token)
    assert (await stack.gql(VIEWER, token=token))["data"]["viewer"] is None
    second = (
        await stack.gql(
            'mutation { logIn(input: {email: "h@example.com", password: "long enough"}) { token } }'
        )
    )["data"]["logIn"]["token"]
    async with AsyncSession(stack.engine) as session:
        await session.execute(
            update(AuthToken)
            .where(AuthToken.token_hash == token_digest(second))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        await session.commit()
    assert (await stack.gql(VIEWER, token=second))["data"]["viewer"] is None


async def test_after_the_battery_the_pool_is_idle_and_the_server_answers(stack):
    assert in_use(stack.engine) == 0
    body = await stack.gql("{ users(first: 1) { totalCount } }")
    assert body["data"]["users"]["totalCount"] >= len(stack.world.users)
