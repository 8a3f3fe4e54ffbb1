"""A `gql-app serve` process for tests: started in its own process group with its
output in a log file, waited for over HTTP, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def start(command: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """``command`` in ``cwd``, its output in ``cwd/serve.log`` (``log_of``)."""
    with log_of(cwd).open("wb") as sink:
        return subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def log_of(cwd: Path) -> Path:
    return cwd / "serve.log"


def wait_for(
    http: httpx.Client,
    path: str,
    process: subprocess.Popen[bytes],
    log: Path,
    limit_s: float = 12,
) -> None:
    """Until ``path`` answers 200; fails if the server exits or takes over ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if http.get(path).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], limit_s: float = 8) -> None:
    """SIGTERM to the server's process group; it must be gone within ``limit_s``."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    started = time.monotonic()
    try:
        process.wait(timeout=limit_s)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert time.monotonic() - started < limit_s, "SIGTERM did not stop the server in time"
