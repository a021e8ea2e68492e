"""Catalog writes that survive contention: a write that finds the database locked or
briefly unreachable is retried with backoff until it lands or a deadline passes.

SQLite's own busy timeout waits for one lock; a lock held longer (a backup, a long
`anirec index` transaction, a stalled network filesystem) then fails the write, and a vote
or an answer would be lost. On PostgreSQL the same goes for a serialization failure, a
deadlock the server broke, or a restarting server (by SQLSTATE). `retry_writes` wraps a
store's write methods: each attempt runs the whole method again (its session was rolled
back), so nothing is written twice.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: How long one write keeps trying before it gives up (seconds).
DEFAULT_DEADLINE_S = 120.0
_TRANSIENT = ("database is locked", "database table is locked", "busy", "disk i/o error",
              "unable to open database", "could not connect", "connection refused",
              "server closed the connection", "deadlock", "lock wait timeout")
#: PostgreSQL's SQLSTATEs worth another attempt: serialization failure, deadlock, lock not
#: available, the server shutting down or starting; class 08 (connection exceptions) too.
_PG_TRANSIENT = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}


class RetryStats:
    """Counters of retried and given-up writes (for status and tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0
        self.gave_up = 0

    def add(self, *, retries: int = 0, gave_up: int = 0) -> None:
        with self._lock:
            self.retries += retries
            self.gave_up += gave_up


STATS = RetryStats()


def is_transient(exc: BaseException) -> bool:
    """A lock or a lost connection (worth retrying), not a constraint or a bug."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)  # psycopg 3 / 2
    if isinstance(exc, DBAPIError) and isinstance(state, str):
        return state in _PG_TRANSIENT or state.startswith("08")
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig if getattr(exc, "orig", None) is not None else exc).lower()
    return any(t in text for t in _TRANSIENT)


def run_with_retry(fn: Callable[[], T], *, deadline_s: float = DEFAULT_DEADLINE_S,
                   what: str = "catalog write", sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fn` until it returns; transient database errors are retried with exponential
    backoff (50 ms doubling to 2 s, with jitter) until `deadline_s` has passed, then raised."""
    start = time.monotonic()
    delay, attempt = 0.05, 0
    while True:
        try:
            out = fn()
        except (OperationalError, DBAPIError) as exc:
            if not is_transient(exc) or time.monotonic() - start + delay > deadline_s:
                if is_transient(exc):
                    STATS.add(gave_up=1)
                    logger.error("%s gave up after %d retries: %s", what, attempt, exc.orig or exc)
                raise
            attempt += 1
            STATS.add(retries=1)
            if attempt == 1 or attempt % 10 == 0:
                logger.warning("%s: the catalog is busy (%s); retrying", what, exc.orig or exc)
            sleep(delay * (0.75 + random.random() / 2))
            delay = min(delay * 2, 2.0)
            continue
        if attempt:
            logger.info("%s landed after %d retries", what, attempt)
        return out


def retry_writes(method: Callable[P, T]) -> Callable[P, T]:
    """Decorator: the method (one whole transaction) retried as `run_with_retry` does."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_with_retry(lambda: method(*args, **kwargs), what=method.__qualname__)

    return wrapper
