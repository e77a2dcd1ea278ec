"""One writer per family: the advisory lock every embedding job and lifecycle step holds for its whole run.

    text embed / graph embed / versions retire|deprecate|publish / compat fit   exclusive, per family
    features materialize                                                         shared, per embedding family
    second holder of a conflicting lock                                          fails fast (FamilyBusy)

A job holds its families from its first read to its last write (staging, publish, feast apply, materialize, the
registry flip, dropping a table), so an embed can never write into a table a retire is dropping, and a
materialize never overwrites a newer online row with an older snapshot. The locks are session locks on one
connection kept open for the run: a killed process releases them with its connection. Within one thread the
lock is re-entrant (a job calls library functions that lock the same family again); two threads are two jobs.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Iterable, Iterator

import psycopg
from psycopg import sql

from star.config import DbTarget
from star.errors import StarError

LOCK_SPACE = "star.embedding_writer"  # hashtext() of this names STAR's advisory-lock space


class FamilyBusy(StarError):
    """Another job holds a family this job needs."""


def lock_family(conn: psycopg.Connection, family: str, *, shared: bool = False) -> None:
    """Take the family's lock for the rest of `conn`'s session (released when it closes or its process dies);
    FamilyBusy at once when another session holds a conflicting one."""
    fn = sql.Identifier("pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock")
    (got,) = conn.execute(sql.SQL("SELECT {}(hashtext(%s), hashtext(%s))").format(fn), (LOCK_SPACE, family)).fetchone()
    if not got:
        what = "writing or materializing" if not shared else "writing"
        raise FamilyBusy(f"another job is {what} {family} right now; wait for it to finish, then run again (it "
                         "continues where that one stopped)")


_local = threading.local()  # .held: Counter (database, family, shared) -> nested holders in this thread


def _held() -> Counter:
    if not hasattr(_local, "held"):
        _local.held = Counter()
    return _local.held


def _needed(db: tuple, families: Iterable[str], shared: bool) -> list[str]:
    """Families not already held by this thread in a mode at least as strong."""
    held = _held()
    return sorted({f for f in families if not held[(db, f, False)] and not (shared and held[(db, f, True)])})


@contextlib.contextmanager
def family_lock(target: DbTarget, families: Iterable[str], *, shared: bool = False) -> Iterator[None]:
    """Hold the families' locks (exclusive, or shared) for the duration; re-entrant within the thread."""
    from star.db import connect

    db, held = (target.host, target.port, target.dbname), _held()
    todo = _needed(db, families, shared)
    conn = None
    try:
        if todo:
            conn = connect(target, autocommit=True)
            for family in todo:  # sorted: two jobs never wait on each other in opposite orders
                lock_family(conn, family, shared=shared)
        for family in todo:
            held[(db, family, shared)] += 1
        try:
            yield
        finally:
            for family in todo:
                held[(db, family, shared)] -= 1
    finally:
        if conn is not None:
            # released here, synchronously: a closed connection's backend lets go of its locks only when it has
            # exited, which may be after this thread's next job has asked for them
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock_all()")
            conn.close()
