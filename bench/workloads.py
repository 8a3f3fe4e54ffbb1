"""The SPEC's benchmark documents, shared by the harness and every contender.

The text is sent as is; the raw floor recognizes a document by its exact text.
"""

from __future__ import annotations

W1_FEED = (
    "query Feed { posts(first: 50, filter: {published: true}, "
    "orderBy: {field: PUBLISHED_AT, direction: DESC}) "
    "{ totalCount edges { cursor node { id title publishedAt "
    "author { username profile { displayName } } tags { name } commentCount "
    "comments(first: 3) { nodes { body author { username } } } } } } }"
)

W2_PEOPLE = (
    "query People { users(first: 20, orderBy: {field: CREATED_AT}) "
    "{ nodes { username postCount posts(first: 5) "
    "{ totalCount nodes { title tags { name } commentCount } } } } }"
)

W3_NODE = (
    "query Node($postId: ID!) { node(id: $postId) { ... on Post { title author { username } } } }"
)

W4_ADD_COMMENT = (
    "mutation AddComment($input: AddCommentInput!) { addComment(input: $input) "
    "{ comment { id body author { username } } userErrors { code message } } }"
)

READ_WORKLOADS = {"W1 feed": W1_FEED, "W2 people": W2_PEOPLE, "W3 node": W3_NODE}

# W6 (bench/live.py): the subscriptions and the writes that feed them.
W6_COMMENT_ADDED = (
    "subscription CommentAdded($postId: ID!) { commentAdded(postId: $postId) "
    "{ id body createdAt author { username } } }"
)
W6_PRODUCT_CHANGED = "subscription ProductChanged { productChanged { id name price stock } }"
W6_ADJUST_PRICES = (
    "mutation AdjustPrices($input: AdjustPricesInput!) { adjustPrices(input: $input) "
    "{ affectedCount userErrors { code message } } }"
)
