"""Which batches a live worker is sending: PostgreSQL session-level advisory locks.

A worker takes the advisory lock of a batch (keyed by its id) on a connection of its
own *before* it claims the batch, and keeps it until it is done with the batch. The
server releases a session's advisory locks the moment the session ends, so when the
worker's process dies (SIGKILL, OOM, a crash) its socket closes and the lock goes with
it. The recovery pass tells a dead worker's batch from a live one's by trying that lock
(`probe_abandoned`): a batch in `sending` whose lock it can take has nobody working on it.
That takes a few milliseconds, so every worker runs it every few seconds, and a dead
worker's batch goes back to the queue within seconds instead of a lease period.

The lock connection also asks the server to probe the client with TCP keepalives, so a
worker on a machine that vanished (power, network) loses its lock within ~15 s too.

Because the lock is taken before the claim and held until the work ends, no second
worker can claim a batch while its holder lives, and the pass never requeues a batch a
live worker holds: duplicates stay bounded by the request in flight at a death, as with
the lease. On SQLite (the embedded mode, one process) there are no advisory locks: the
heartbeat lease (`CAMPAIGN_LEASE_SECONDS`) decides, as before.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from ..db import commit_quickly
from ..models import Batch, BatchStatus

# The first key of every batch lock (two-key advisory locks: (namespace, batch)), so that
# they cannot collide with any other use of advisory locks on the same database.
LOCK_NAMESPACE = 0x414C  # "AL"
# How long a job waits for a batch lock someone holds while the batch is still queued
# (a recovery pass requeueing it, or a duplicate job between its lock and its claim):
# both hold it for milliseconds.
LOCK_WAIT_SECONDS = 1.0
# Server-side TCP keepalives of a lock connection: a client that vanished without
# closing its socket is found dead after idle + interval × count seconds.
KEEPALIVE = {"tcp_keepalives_idle": 5, "tcp_keepalives_interval": 2, "tcp_keepalives_count": 3}


def lock_key(batch_id: int) -> int:
    """The second key of a batch's lock (an int4)."""
    return batch_id % 2**31


def uses_locks(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


class BatchLost(Exception):
    """The worker no longer holds its batch (its lock connection died, or the batch was
    requeued and claimed again): it stops without touching the batch."""


class BatchHold:
    """The advisory lock of one batch, held on a dedicated autocommit connection.

    `acquire` before claiming; `renew` (the heartbeat) before each request but the first,
    which also proves the lock connection is still alive; `release` when done, whatever
    happened. On SQLite every method is a no-op that says yes.
    """

    def __init__(self, session: Session, batch_id: int) -> None:
        self.batch_id = batch_id
        self.engine: Engine | None = session.get_bind() if uses_locks(session) else None  # type: ignore[assignment]
        self.conn: Connection | None = None

    def acquire(self) -> bool:
        """Take the lock; False if someone else holds it (then the claim would fail too)."""
        if self.engine is None:
            return True
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            if not conn.info.get("batch_lock_keepalive"):
                for name, value in KEEPALIVE.items():
                    conn.execute(text(f"SET {name} = {int(value)}"))
                conn.info["batch_lock_keepalive"] = True
            deadline = time.monotonic() + LOCK_WAIT_SECONDS
            while True:
                got, status = conn.execute(
                    text("SELECT pg_try_advisory_lock(:ns, :key),"
                         " (SELECT status FROM batches WHERE id = :batch)"),
                    {"ns": LOCK_NAMESPACE, "key": lock_key(self.batch_id),
                     "batch": self.batch_id},
                ).one()
                if got:
                    self.conn = conn
                    return True
                if status != BatchStatus.queued.value or time.monotonic() > deadline:
                    conn.close()
                    return False
                time.sleep(0.02)
        except BaseException:
            conn.invalidate()
            conn.close()
            raise

    def renew(self, session: Session, attempt: int, now: datetime) -> None:
        """The heartbeat: stamp `claimed_at`, only while this claim is still the batch's
        (same attempt, still sending). Raises BatchLost otherwise, or if the lock
        connection died (the lock with it).

        The lock connection is only asked whether it lives (no write, so no WAL flush to
        wait for); the stamp goes through the batch's own session with `commit_quickly`,
        like the batch's other bookkeeping: a stamp lost to a database crash only makes
        the batch look older."""
        if self.conn is not None:
            try:
                self.conn.execute(text("SELECT 1"))
            except Exception as exc:
                raise BatchLost(f"batch {self.batch_id}: lock connection lost ({exc})") from exc
        stamped = session.execute(
            update(Batch)
            .where(Batch.id == self.batch_id, Batch.status == BatchStatus.sending,
                   Batch.attempts == attempt)
            .values(claimed_at=now).execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        commit_quickly(session)
        if stamped != 1:
            raise BatchLost(f"batch {self.batch_id} was given to another worker")

    def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:ns, :key)"),
                         {"ns": LOCK_NAMESPACE, "key": lock_key(self.batch_id)})
        except Exception:
            conn.invalidate()  # closed for good: the server drops the lock with it
        finally:
            conn.close()


@contextlib.contextmanager
def probe_abandoned(session: Session) -> Iterator[list[int]]:
    """The batches in `sending` that no live worker holds, locked for the caller (who
    requeues them and commits inside the block) and released on exit.

    Holding their locks while requeueing keeps a worker from locking and claiming one
    in between. PostgreSQL only."""
    engine: Engine = session.get_bind()  # type: ignore[assignment]
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    locked: list[int] = []
    try:
        # MATERIALIZED: the lock is tried on exactly the rows in `sending`, once each.
        locked = list(conn.execute(
            text("WITH s AS MATERIALIZED (SELECT id FROM batches WHERE status = 'sending')"
                 " SELECT id FROM s WHERE pg_try_advisory_lock(:ns, (id % 2147483648)::int)"),
            {"ns": LOCK_NAMESPACE},
        ).scalars())
        yield locked
    finally:
        try:
            if locked:
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
        except Exception:
            conn.invalidate()
        finally:
            conn.close()
