"""Query documents used by more than one test module, defined once.

A document used by a single module stays a constant of that module. The
benchmark workloads (W1-W4) have their one source in ``bench/workloads.py``,
which the bench runs as is; this module re-exports them, and is the only test
module that imports from ``bench``. Test modules import shared documents from
here, never from each other.
"""

from __future__ import annotations

from bench.workloads import W1_FEED, W2_PEOPLE, W3_NODE

__all__ = [
    "CREATE_POST",
    "DEEP",
    "ORDERS",
    "ORDER_DETAILS",
    "ORDER_STATS",
    "VIEWER",
    "W1_FEED",
    "W1_FEED_N",
    "W2_PEOPLE",
    "W2_PEOPLE_N",
    "W3_NODE",
]

# ---------------------------------------------------------------- workloads, page size $n

W1_FEED_N = """
query Feed($n: Int) {
  posts(first: $n, filter: {published: true}, orderBy: {field: PUBLISHED_AT, direction: DESC}) {
    totalCount
    edges { cursor node { id title publishedAt author { username profile { displayName } }
      tags { name } commentCount comments(first: 3) { nodes { body author { username } } } } }
  }
}
"""
"""W1 (the feed) with the root page size a variable."""

W2_PEOPLE_N = """
query People($n: Int) {
  users(first: $n, orderBy: {field: CREATED_AT}) {
    nodes { username postCount posts(first: 5) { totalCount nodes { title tags { name } commentCount } } }
  }
}
"""
"""W2 (people and their posts) with the root page size a variable."""

DEEP = """
query Deep($n: Int) {
  users(first: $n) { nodes { posts(first: $n) { nodes { comments(first: $n) {
    nodes { author { profile { displayName } } } } } } } }
}
"""
"""Three nested pages of ``$n``, then two loader hops."""

# ---------------------------------------------------------------- viewer

VIEWER = "{ viewer { username email } }"

# ---------------------------------------------------------------- commerce

ORDERS = """
query Orders($filter: OrderFilter, $orderBy: OrderOrder) {
  orders(first: 100, filter: $filter, orderBy: $orderBy) { totalCount nodes { id } }
}
"""

ORDER_DETAILS = """
query OrderDetails {
  orders(first: 100) {
    nodes {
      id status total itemCount
      items { product { sku } quantity unitPrice subtotal }
    }
  }
}
"""

ORDER_STATS = """
query OrderStats {
  users(first: 3) {
    nodes { username orderStats { orderCount totalSpent averageOrderValue lastOrderAt } }
  }
}
"""

# ---------------------------------------------------------------- content mutations

CREATE_POST = """
mutation CreatePost($input: CreatePostInput!) {
  createPost(input: $input) {
    post { title author { username } tags { name } } userErrors { code }
  }
}
"""
