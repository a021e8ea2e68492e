"""A reader/writer gate for an hnswlib index: searches share it, writes take it alone.

hnswlib's `ef` is one value per index, so concurrent searches must agree on it: a search
that needs another ef waits until the searches in flight are done.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class SearchGate:
    """Reader/writer gate: searches share, writes are exclusive (see the module docstring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._reader_ef: int | None = None
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self, ef: int, set_ef: Callable[[int], object]) -> Iterator[None]:
        """Hold the gate for a search with beam width `ef` (`set_ef` applies it)."""
        with self._cond:
            while self._writer or self._writers_waiting or (
                    self._readers and self._reader_ef != ef):
                self._cond.wait()
            if self._readers == 0 and self._reader_ef != ef:
                set_ef(ef)
                self._reader_ef = ef
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """Hold the gate alone (adds, removals, saves)."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
