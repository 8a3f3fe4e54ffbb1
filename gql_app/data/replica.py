"""The read replica (``GQL_READ_REPLICA_URL``) as this process sees it: whether
query operations may read it now, and for whom.

A monitor task (``Replica.run``, started by the app's lifespan) writes, every
``GQL_REPLICA_CHECK_INTERVAL_S``, a heartbeat on the primary (a WAL record with no
table behind it, ``HEARTBEAT``: its position) and reads the position the replica
has replayed (``pg_last_wal_replay_lsn()``). Each heartbeat is kept with the time
it was sent until the replica has replayed it, so:

- the lag in bytes is the last heartbeat's position minus the replayed one;
- the lag in seconds is the age of the oldest heartbeat not replayed yet: about 0
  on an idle primary however long ago the last write was (unlike
  ``now() - pg_last_xact_replay_timestamp()``), growing while replay stalls;
- ``visible_before``: every commit that finished before that moment is visible on
  the replica (it precedes a heartbeat sent after it, which has been replayed).

Routing reads this state and never asks the database: the replica serves query
operations while it is ``ok`` (lag at most ``GQL_REPLICA_MAX_LAG_S``); ``lagging``
or ``unavailable``, queries read the primary until a check finds it back.
A bearer token that committed a mutation in this process reads the primary until
the replica shows that commit (``wrote`` / ``serves``): its own writes are seen.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.util import greenlet_spawn

log = logging.getLogger(__name__)

MAX_SAMPLES = 4096
"""Primary positions kept while the replica has not replayed them (an hour at 1 s)."""
MAX_WRITERS = 100_000
"""Tokens remembered as having written; beyond, the oldest are forgotten first."""


class ReplicaState(enum.StrEnum):
    OK = "ok"
    LAGGING = "lagging"
    UNAVAILABLE = "unavailable"


HEARTBEAT = "SELECT pg_logical_emit_message(false, 'gql_app.replica', '', true)::text"
"""A WAL record, flushed with all WAL before it (PostgreSQL 17+): its end position.

Not ``pg_current_wal_lsn()`` or ``pg_current_wal_insert_lsn()``: WAL that no commit
has flushed (hint-bit page images after a read, say) stays on the primary, so a
replica may never reach those positions, and an idle primary would look lagging.
Once the replica has replayed this record, it has replayed every commit made before
it. No table and no transaction id; any role may run it, read-only too."""
HEARTBEAT_BEFORE_17 = "SELECT pg_logical_emit_message(true, 'gql_app.replica', '')::text"
"""The same before PostgreSQL 17 (no ``flush`` argument): transactional, so its
commit flushes it (at the cost of a transaction id per check)."""
REPLAYED_LSN = "SELECT pg_last_wal_replay_lsn()::text"
"""NULL on a server that is not in recovery (a replica since promoted)."""

T = TypeVar("T")


async def on_driver(engine: AsyncEngine, use: Callable[[Any], Awaitable[T]]) -> T:
    """``use`` the driver of a connection from ``engine``'s pool: no statement events,
    so requests' statement counts, the slow-query log and traces never show the
    monitor."""
    proxied = await engine.raw_connection()
    try:
        return await use(proxied.driver_connection)
    except BaseException:
        await greenlet_spawn(proxied.invalidate)
        raise
    finally:
        await greenlet_spawn(proxied.close)


async def heartbeat(driver: Any) -> str:
    modern = driver.get_server_version().major >= 17
    return str(await driver.fetchval(HEARTBEAT if modern else HEARTBEAT_BEFORE_17))


async def replayed(driver: Any) -> str | None:
    found: str | None = await driver.fetchval(REPLAYED_LSN)
    return found


def lsn_number(lsn: str) -> int:
    """A ``pg_lsn`` as text (``16/B374D848``) as a byte position."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def writer_key(token: str) -> bytes:
    """What is remembered of a token that wrote (not the token itself)."""
    return hashlib.blake2b(token.encode(), digest_size=16).digest()


class Replica:
    """The replica's engine and sessionmaker, and what the last checks found."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        max_lag_s: float,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.max_lag_s = max_lag_s
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.state = ReplicaState.UNAVAILABLE  # until the first check says otherwise
        self.lag_bytes: int | None = None
        self.visible_before = -float("inf")
        self._unreplayed: deque[tuple[float, int]] = deque(maxlen=MAX_SAMPLES)
        self._primary_lsn: int | None = None
        self._last_sample = -float("inf")
        self._writers: dict[bytes, float] = {}

    @property
    def lag_seconds(self) -> float | None:
        """Age of the oldest primary position the replica has not replayed (0: none)."""
        if self.state is ReplicaState.UNAVAILABLE:
            return None
        return self._lag()

    def _lag(self) -> float:
        return time.monotonic() - self._unreplayed[0][0] if self._unreplayed else 0.0

    def serves(self, token: str | None) -> bool:
        """Whether a query operation with this bearer token may read the replica."""
        if self.state is not ReplicaState.OK:
            return False
        if token is None or not self._writers:
            return True
        wrote_at = self._writers.get(writer_key(token))
        return wrote_at is None or wrote_at < self.visible_before

    def wrote(self, token: str | None) -> None:
        """A mutation with this bearer token has just committed on the primary."""
        if token is None:
            return
        key = writer_key(token)
        self._writers.pop(key, None)
        self._writers[key] = time.monotonic()
        if len(self._writers) > MAX_WRITERS:
            del self._writers[next(iter(self._writers))]

    def failed(self) -> None:
        """An operation could not begin on the replica: read the primary until the
        next check finds it back."""
        if self.state is not ReplicaState.UNAVAILABLE:
            log.warning("the read replica failed; queries read the primary")
        self.state = ReplicaState.UNAVAILABLE
        self.lag_bytes = None

    async def watch(self, primary: AsyncEngine) -> asyncio.Task[None]:
        """Check once (queries read the primary until a check finds the replica), then
        every ``interval_s`` in a task the caller cancels."""
        await self.timed_check(primary)
        return asyncio.create_task(self.run(primary), name="replica monitor")

    async def run(self, primary: AsyncEngine) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.timed_check(primary)
            except Exception:
                log.exception("replica check failed")
                self.failed()

    async def timed_check(self, primary: AsyncEngine) -> None:
        """``check``, given up after ``timeout_s`` (a server that accepts connections
        but does not answer) with the replica marked unavailable."""
        try:
            await asyncio.wait_for(self.check(primary), self.timeout_s)
        except TimeoutError:
            log.warning("replica check: no answer within %.1f s", self.timeout_s)
            self.failed()

    async def check(self, primary: AsyncEngine) -> None:
        """One check: a heartbeat on the primary, then the replica's replayed position."""
        sampled_at = time.monotonic()  # before the heartbeat: commits done by now precede it
        try:
            self._sample(sampled_at, lsn_number(await on_driver(primary, heartbeat)))
        except Exception as exc:  # the replica's state is still worth knowing
            log.warning("replica check: the primary did not answer: %r", exc)
        try:
            position = await on_driver(self.engine, replayed)
        except Exception as exc:
            if self.state is not ReplicaState.UNAVAILABLE:
                log.warning("the read replica is unavailable: %r", exc)
            self.failed()
            return
        self._replayed(lsn_number(position) if position is not None else None)

    def _sample(self, at: float, lsn: int) -> None:
        self._primary_lsn = lsn
        if not self._unreplayed or lsn > self._unreplayed[-1][1]:
            self._unreplayed.append((at, lsn))
        self._last_sample = at

    def _replayed(self, replayed: int | None) -> None:
        """Forget the positions the replica has replayed; the lag and state follow.
        ``replayed`` None: not in recovery (a promoted replica), so it is current."""
        unreplayed = self._unreplayed
        while unreplayed and (replayed is None or unreplayed[0][1] <= replayed):
            self.visible_before = unreplayed.popleft()[0]
        if not unreplayed and self._primary_lsn is not None:
            self.visible_before = self._last_sample
        primary = self._primary_lsn
        self.lag_bytes = 0 if replayed is None or primary is None else max(0, primary - replayed)
        lag = self._lag()
        previous = self.state
        self.state = ReplicaState.OK if lag <= self.max_lag_s else ReplicaState.LAGGING
        if self.state is not previous:
            level = logging.INFO if self.state is ReplicaState.OK else logging.WARNING
            log.log(level, "the read replica is %s (lag %.1f s)", self.state.value, lag)
        self._forget_writers()

    def _forget_writers(self) -> None:
        """Tokens whose last commit the replica shows need no special routing."""
        while self._writers:
            key, wrote_at = next(iter(self._writers.items()))
            if wrote_at >= self.visible_before:
                return
            del self._writers[key]
