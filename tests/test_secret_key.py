"""The development secret key is refused anywhere but the embedded development server.

With DATABASE_URL set, ``gql-app serve`` exits 1 before it touches anything and
``create_app()`` (so ``uvicorn gql_app.web.app:create_app --factory``) raises,
both naming GQL_SECRET_KEY. Without DATABASE_URL, ``gql-app serve`` starts the
embedded server and its workers accept the default.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gql_app.settings import DEV_SECRET_KEY, Settings, UnsafeSettings
from gql_app.tools.embedded import PGDATA
from gql_app.web.app import create_app
from tests.live_support import free_port
from tests.serving import log_of, start, stop, wait_for

# Never connected to: the refusal comes before any connection.
ELSEWHERE = "postgresql://gql:pw@127.0.0.1:9/gql"
SERVE = [sys.executable, "-m", "gql_app.tools.cli", "serve"]
UVICORN = [sys.executable, "-m", "uvicorn"]


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without any gql_app setting, plus ``variables``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GQL_", "PROMETHEUS_")) and k != "DATABASE_URL"
    }
    return {**env, **variables}


@pytest.mark.parametrize("key", [{}, {"GQL_SECRET_KEY": DEV_SECRET_KEY}, {"GQL_SECRET_KEY": ""}])
def test_serve_refuses_the_default_secret_key_with_a_database_url(tmp_path, key):
    # When `gql-app serve` starts with DATABASE_URL and the default key (unset or spelled
    # out) or an empty one
    result = subprocess.run(
        [*SERVE, "--port", str(free_port())],
        env=environment(DATABASE_URL=ELSEWHERE, GQL_DATA_DIR=str(tmp_path), **key),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it exits 1 with the reason, having started nothing
    assert result.returncode == 1, result.stderr
    assert "GQL_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr
    assert "GraphiQL" not in result.stdout
    assert not (tmp_path / PGDATA).exists()


def test_uvicorn_factory_exits_on_the_default_secret_key_with_a_database_url():
    # When uvicorn builds the app from the environment: DATABASE_URL and no key
    result = subprocess.run(
        [*UVICORN, "gql_app.web.app:create_app", "--factory", "--port", str(free_port())],
        env=environment(DATABASE_URL=ELSEWHERE),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it exits non-zero, naming the variable
    assert result.returncode != 0
    assert "UnsafeSettings" in result.stderr and "GQL_SECRET_KEY" in result.stderr


def test_create_app_refuses_the_default_secret_key_with_a_database_url():
    settings = Settings(DATABASE_URL=ELSEWHERE, secret_key=DEV_SECRET_KEY, embedded_url=None)
    with pytest.raises(UnsafeSettings, match="GQL_SECRET_KEY"):
        create_app(settings)


@pytest.mark.parametrize(
    ("database_url", "embedded_url", "secret_key"),
    [
        (ELSEWHERE, None, "a-long-random-production-key"),  # a real deployment
        (None, None, DEV_SECRET_KEY),  # development: the embedded server is started later
        (ELSEWHERE, ELSEWHERE, DEV_SECRET_KEY),  # a worker of `gql-app serve` on it
    ],
)
def test_create_app_accepts(database_url, embedded_url, secret_key):
    settings = Settings(DATABASE_URL=database_url, embedded_url=embedded_url, secret_key=secret_key)
    assert create_app(settings) is not None  # no lifespan: nothing connects


def test_an_embedded_url_that_is_not_the_database_does_not_allow_the_default():
    # A GQL_EMBEDDED_URL left in the environment does not cover another database
    settings = Settings(
        DATABASE_URL=ELSEWHERE, embedded_url=ELSEWHERE + "2", secret_key=DEV_SECRET_KEY
    )
    with pytest.raises(UnsafeSettings):
        create_app(settings)


def test_serve_on_the_embedded_server_accepts_the_default_secret_key(tmp_path: Path):
    # When `gql-app serve --workers 2` starts with no DATABASE_URL and no key
    port = free_port()
    env = environment(GQL_DATA_DIR=str(tmp_path / "data"), GQL_LOG_LEVEL="WARNING")
    process = start([*SERVE, "--port", str(port), "--workers", "2"], env, tmp_path)
    try:
        # Then the embedded server is started, and both workers serve
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_for(http, "/ready", process, log_of(tmp_path), limit_s=90)
            for _ in range(4):  # new connections: the two workers take turns
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as fresh:
                    response = fresh.post(
                        "/graphql", json={"query": "{ tags(first: 1) { totalCount } }"}
                    )
                assert response.status_code == 200, response.text
    finally:
        stop(process, limit_s=20)
