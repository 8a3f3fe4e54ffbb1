"""Automatic Persisted Queries: hash first, document on a miss, hash only afterwards."""

from __future__ import annotations

import hashlib

import orjson

QUERY = '{ tag(name: "alpha") { name postCount } }'
DIGEST = hashlib.sha256(QUERY.encode()).hexdigest()
PERSISTED = {"persistedQuery": {"version": 1, "sha256Hash": DIGEST}}


async def test_unknown_hash_then_registration_then_hash_only(client, world, sql):
    miss = await client.post("/graphql", json={"extensions": PERSISTED})
    assert miss.status_code == 200
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert sql.count == 0

    registered = await client.post("/graphql", json={"query": QUERY, "extensions": PERSISTED})
    expected = registered.json()
    assert expected["data"]["tag"]["name"] == "alpha"

    by_hash = await client.post("/graphql", json={"extensions": PERSISTED})
    assert by_hash.json() == expected
    by_get = await client.get("/graphql", params={"extensions": orjson.dumps(PERSISTED).decode()})
    assert by_get.json() == expected


async def test_a_hash_that_does_not_match_the_document_is_refused(client):
    wrong = {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}
    response = await client.post("/graphql", json={"query": QUERY, "extensions": wrong})
    assert response.status_code == 400


async def test_an_unsupported_version_is_refused(client):
    response = await client.post(
        "/graphql", json={"extensions": {"persistedQuery": {"version": 2, "sha256Hash": DIGEST}}}
    )
    assert response.status_code == 400
