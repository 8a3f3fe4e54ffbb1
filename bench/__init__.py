"""Benchmarks: ``python -m bench.run`` (W1-W5 against gql_app, a naive baseline and the
raw asyncpg floor) and ``python -m bench.bulk_updates`` (W5 alone, at scale)."""
