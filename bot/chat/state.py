"""State every chat front end keeps: which message answered which query (so a later reaction
or button press becomes feedback on the right query), one lock per person (so one person's
votes keep their order), who the operators are, and the chats where every picture is
answered."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class JournalCodec(Generic[K, V]):
    """How one remembered answer is written to (and read back from) a JSON-lines journal."""

    #: (key, value) → a JSON-able list.
    encode: Callable[[K, V], list[object]]
    #: the list back to (key, value); raises ValueError/TypeError on a malformed line.
    decode: Callable[[list[object]], tuple[K, V]]


class AnswerMemory(Generic[K, V]):
    """A bounded LRU map from a sent answer (its message) to what it answered.

    With `journal` and `codec`, every entry is also appended to a JSON-lines file that is read
    back on start (and compacted when it doubles), so feedback on answers sent before a
    restart still counts.
    """

    def __init__(self, size: int, journal: Path | None = None,
                 codec: JournalCodec[K, V] | None = None) -> None:
        if journal is not None and codec is None:
            raise ValueError("a journal needs a codec")
        self.size = size
        self.journal = journal
        self._codec = codec
        self._d: collections.OrderedDict[K, V] = collections.OrderedDict()
        self._lines = 0
        self._read_to = 0  # bytes of the journal read so far
        self._follow()

    def _follow(self) -> None:
        """Read what was appended to the journal since the last read: what this process
        wrote, and what other bot processes sharing the home folder (webhook workers) wrote,
        so a reaction on another worker's answer still finds its query."""
        if self.journal is None or self._codec is None:
            return
        try:
            with open(self.journal, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                if size < self._read_to:  # compacted by another process: read it all again
                    self._read_to = 0
                fh.seek(self._read_to)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._read_to += end
        for line in data[:end].decode("utf-8", "replace").splitlines():
            try:
                key, value = self._codec.decode(json.loads(line))
            except (ValueError, TypeError):
                continue  # a torn last line after a crash: skip it
            if key not in self._d:  # (this process's own lines are already remembered)
                self._remember(key, value)
                self._lines += 1

    def _remember(self, key: K, value: V) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def put(self, key: K, value: V) -> None:
        self._remember(key, value)
        if self.journal is None or self._codec is None:
            return
        try:
            self._append(key, value, self.journal, self._codec)
        except OSError as exc:
            logger.warning("could not save the answer journal: %s", exc)

    def _append(self, key: K, value: V, path: Path, codec: JournalCodec[K, V]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._lines >= 2 * self.size:  # compact: rewrite only what is remembered
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(codec.encode(k, v)) + "\n"
                                   for k, v in self._d.items()), encoding="utf-8")
            tmp.replace(path)
            self._lines = len(self._d)
        else:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(codec.encode(key, value)) + "\n")
            self._lines += 1

    def get(self, key: K) -> V | None:
        if key not in self._d:
            self._follow()
        value = self._d.get(key)
        if value is not None:
            self._d.move_to_end(key)
        return value

    def pop(self, key: K) -> None:
        self._d.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)


class UserLocks:
    """One asyncio.Lock per person, so add-then-remove votes keep their order even though
    events are handled concurrently (asyncio.Lock is FIFO). Idle locks are dropped once
    more than `max_idle` people are tracked."""

    def __init__(self, max_idle: int = 10_000) -> None:
        self.max_idle = max_idle
        self._locks: dict[Hashable, asyncio.Lock] = {}

    def __call__(self, user_id: Hashable) -> asyncio.Lock:
        if len(self._locks) > self.max_idle:
            for k in [k for k, v in self._locks.items() if not v.locked()]:
                del self._locks[k]
        return self._locks.setdefault(user_id, asyncio.Lock())

    def __len__(self) -> int:
        return len(self._locks)


class Owners:
    """The platform user ids allowed to run the operator commands (stats, reload)."""

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self.ids = frozenset(int(x) for x in ids)

    def allows(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.ids

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.ids


def chat_token(key: bytes, chat_id: int | str) -> str:
    """A chat id as the keyed hash files and logs hold instead of the raw id (24 hex chars)."""
    return hmac.new(key, f"chat:{chat_id}".encode(), hashlib.sha256).hexdigest()[:24]


class AutoAnswerChats:
    """Group chats where every picture is answered; saved to `path` (JSON) when given. With
    `key`, the file holds keyed hashes of the chat ids, never the ids (raw ids left by an
    older version are hashed and the file rewritten on load)."""

    def __init__(self, path: Path | None = None, key: bytes | None = None) -> None:
        self.path = path
        self.key = key
        self._ids: set[int | str] = set()
        self._seen: int | None = None  # the file's mtime when last read
        if self._read():
            self._save()

    def _read(self) -> bool:
        """(Re)read the file; True when it held raw ids of an older version."""
        path, key = self.path, self.key
        self._ids = set()
        legacy = False
        if path is not None and path.exists():
            self._seen = path.stat().st_mtime_ns
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                for x in data.get("autoanswer_chats", []):
                    if key is not None and isinstance(x, int):
                        legacy = True
                    self._ids.add(self._key(int(x)) if isinstance(x, int) else str(x))
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                logger.warning("cannot read %s (%s); auto-answer starts off everywhere", path, exc)
        return legacy

    def _key(self, chat_id: int) -> int | str:
        return chat_token(self.key, chat_id) if self.key is not None else chat_id

    def _refresh(self) -> None:
        try:  # another bot process sharing the home (webhook workers) may have changed it
            if self.path is not None and self.path.stat().st_mtime_ns != self._seen:
                self._read()
        except OSError:
            pass

    def enabled(self, chat_id: int) -> bool:
        self._refresh()
        return self._key(chat_id) in self._ids

    def set(self, chat_id: int, on: bool) -> None:
        self._refresh()
        (self._ids.add if on else self._ids.discard)(self._key(chat_id))
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f"{self.path.suffix}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"autoanswer_chats": sorted(self._ids, key=str)}), encoding="utf-8")
        os.replace(tmp, self.path)
        self._seen = self.path.stat().st_mtime_ns
