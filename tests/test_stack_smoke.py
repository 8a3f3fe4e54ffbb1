async def test_an_isolated_stack_serves_its_own_world(stack, stack_sql):
    body = await stack.gql("{ users(first: 1) { totalCount } }")
    assert body["data"]["users"]["totalCount"] == len(stack.world.users)
    assert stack_sql.count == 1
