"""The Decimal scalar, as the contract words it: "Exact decimal number encoded as a
string, e.g. "12.50". Never a float."

Inputs are strings in plain decimal notation (JSON's number grammar without the
exponent); anything else is BAD_USER_INPUT before any resolver runs, on the query
lane and on the full path alike. Read-only against the shared ``world``: products
SKU-000..SKU-011 priced 5.50..16.50. The mutations' amounts are refused the same way
(tests/test_money_mutations.py, tests/test_commerce_mutations.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from gql_app.engine.scalars import parse_decimal, serialize_decimal
from tests.conftest import GraphQLClient, StatementCounter

FROM_PRICE = """
query FromPrice($min: Decimal) { products(filter: {minPrice: $min}) { nodes { sku price } } }
"""

FROM_PRICE_LITERAL = "{ products(filter: {minPrice: %s}) { nodes { sku } } }"

TOP_TWO = [{"sku": "SKU-010", "price": "15.50"}, {"sku": "SKU-011", "price": "16.50"}]


@pytest.fixture(params=["lane", "full path"])
def client(request, gql, full_path_client) -> GraphQLClient:
    return gql if request.param == "lane" else GraphQLClient(full_path_client)


@pytest.fixture
def sql(app, full_path_app) -> Iterator[StatementCounter]:
    """Every SQL statement either server (lane or full path) sends while the test runs."""
    counter = StatementCounter()

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counter.statements.append(statement)

    engines = [app.state.engine.sync_engine, full_path_app.state.engine.sync_engine]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", listener)
    yield counter
    for engine in engines:
        event.remove(engine, "before_cursor_execute", listener)


def codes(body: dict) -> list[str]:
    return [error["extensions"]["code"] for error in body["errors"]]


@pytest.mark.parametrize("spelling", ["15.5", "15.50", "15.500", "15.01"])
async def test_a_decimal_string_filters_by_its_exact_value(client, world, sql, spelling):
    # When products are filtered from a price written in plain decimal notation
    body = await client(FROM_PRICE, {"min": spelling})
    # Then the two priced 15.50 and 16.50 (or just the last) come back, prices as
    # strings, read by one statement (the counter sees both servers)
    expected = TOP_TWO if Decimal(spelling) <= Decimal("15.50") else TOP_TWO[1:]
    assert body == {"data": {"products": {"nodes": expected}}}
    assert sql.count == 1


@pytest.mark.parametrize("spelling", ["0", "-0", "0.00", "-1", "-0.5"])
async def test_zero_and_negative_decimals_are_decimals(client, world, spelling):
    body = await client(FROM_PRICE, {"min": spelling})
    assert len(body["data"]["products"]["nodes"]) == 12


NOT_DECIMALS = {
    "JSON integer": 15,
    "JSON float": 15.5,
    "JSON boolean": True,
    "JSON array": ["15.50"],
    "JSON object": {"value": "15.50"},
    "exponent": "1.55e1",
    "capital exponent": "155E-1",
    "leading space": " 15.50",
    "trailing space": "15.50 ",
    "trailing newline": "15.50\n",
    "plus sign": "+15.50",
    "no integer digits": ".5",
    "no fraction digits": "15.",
    "leading zero": "015.50",
    "underscore": "1_5.50",
    "comma": "15,50",
    "empty": "",
    "minus alone": "-",
    "two minus signs": "--15",
    "hexadecimal": "0x0F",
    "NaN": "NaN",
    "sNaN": "sNaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "non-ASCII digits": "\u0661\u0665.\u0665\u0660",
    "full-width digits": "\uff11\uff15",
}


@pytest.mark.parametrize("value", list(NOT_DECIMALS.values()), ids=list(NOT_DECIMALS))
async def test_a_variable_that_is_not_a_decimal_string_is_bad_user_input(client, world, sql, value):
    # When a Decimal variable is a JSON number, or a string Python's Decimal() would
    # read but that is not plain decimal notation
    body = await client(FROM_PRICE, {"min": value}, expect_errors=True)
    # Then the variable is refused, coded, before any resolver ran: no data, no SQL
    assert body.get("data") is None
    assert codes(body) == ["BAD_USER_INPUT"]
    message = body["errors"][0]["message"]
    assert message.startswith("Variable '$min' has invalid value")
    assert 'A Decimal is a string in plain decimal notation, e.g. "12.50"' in message
    assert sql.count == 0


@pytest.mark.parametrize("literal", ["15.5", "15", "true", "FIFTEEN", '"1e1"', '" 15"'])
async def test_a_literal_that_is_not_a_decimal_string_is_bad_user_input(
    client, world, sql, literal
):
    # When the document itself writes the Decimal as a number (or anything but a
    # string in plain decimal notation)
    body = await client(FROM_PRICE_LITERAL % literal, expect_errors=True)
    # Then the document does not validate: coded, no data at all, no SQL
    assert "data" not in body
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "A Decimal is a string in plain decimal notation" in body["errors"][0]["message"]
    assert sql.count == 0


async def test_a_string_literal_in_plain_notation_is_accepted(client, world):
    body = await client(FROM_PRICE_LITERAL % '"15.50"')
    assert body == {"data": {"products": {"nodes": [{"sku": "SKU-010"}, {"sku": "SKU-011"}]}}}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("12.50"), "12.50"),
        (Decimal("0.00"), "0.00"),
        (Decimal("-3.1"), "-3.1"),
        (Decimal("1E+2"), "100"),
        (Decimal("5E-7"), "0.0000005"),
    ],
)
def test_decimals_are_written_in_the_notation_they_are_read_in(value, text):
    # Every Decimal the server writes is one it would read back, to the same value
    assert serialize_decimal(value) == text
    assert parse_decimal(text) == value
