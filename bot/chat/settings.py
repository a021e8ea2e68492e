"""Per-user and per-chat display settings: UI language, title language, private answers.

Stored in the `chat_settings` table (migration 0002) under hashed ids, like queries: the
scope is "user:<hash>" or "chat:<hash>" with the feedback store's salted hash, so no raw
platform id is kept. A user's choice wins over their chat's; unset values fall back to the
chat's, then to the platform's guess (the browser's language, Discord's locale).
Without a database (a stub service in tests) the settings live in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from bot.chat.i18n import LANGS
from core.db.models import ChatSetting


@dataclass(frozen=True)
class Prefs:
    lang: str | None = None
    title_lang: str | None = None
    ephemeral: bool | None = None
    preview: bool | None = None  # False: answers without the preview clip / still

    @property
    def with_preview(self) -> bool:
        return self.preview is not False


class ChatSettings:
    """Read and write `Prefs` for a user or a chat (the calls run off the event loop)."""

    def __init__(self, sessions: sessionmaker[Session] | None,
                 hash_id: Callable[[str, str], str]) -> None:
        self.sessions = sessions
        self._hash = hash_id
        self._memory: dict[str, Prefs] = {}

    @classmethod
    def of(cls, service: object) -> ChatSettings:
        """The settings next to a service's feedback store (in memory when it has none)."""
        store = getattr(service, "store", None)
        sessions = getattr(store, "sessions", None)
        hash_id = getattr(store, "hash_id", None)
        if sessions is None or hash_id is None:
            return cls(None, lambda p, r: f"{p}:{r}")
        return cls(sessions, hash_id)

    def scope(self, kind: str, platform: str, raw_id: str) -> str:
        return f"{kind}:{self._hash(platform, raw_id)}"

    # -- sync ------------------------------------------------------------------------------------
    def _read(self, scope: str) -> Prefs:
        if self.sessions is None:
            return self._memory.get(scope, Prefs())
        with self.sessions() as s:
            row = s.get(ChatSetting, scope)
            return Prefs(row.lang, row.title_lang, row.ephemeral, row.preview) if row else Prefs()

    def _write(self, scope: str, **values: object) -> Prefs:
        for key in ("lang", "title_lang"):
            v = values.get(key)
            if v is not None and (not isinstance(v, str) or len(v) > 8):
                raise ValueError(f"bad {key} {v!r}")
        if values.get("lang") is not None and values["lang"] not in LANGS:
            raise ValueError(f"unknown language {values['lang']!r}")
        if self.sessions is None:
            old = self._memory.get(scope, Prefs())
            new = dataclasses.replace(old, **values)  # type: ignore[arg-type]
            self._memory[scope] = new
            return new
        with self.sessions() as s, s.begin():
            row = s.get(ChatSetting, scope)
            if row is None:
                row = ChatSetting(scope=scope)
                s.add(row)
            for k, v in values.items():
                setattr(row, k, v)
            return Prefs(row.lang, row.title_lang, row.ephemeral, row.preview)

    # -- async -----------------------------------------------------------------------------------
    async def get(self, platform: str, *, user_id: str | None = None,
                  chat_id: str | None = None) -> Prefs:
        """The user's prefs over the chat's (each field separately)."""
        user = await asyncio.to_thread(self._read, self.scope("user", platform, user_id)) \
            if user_id else Prefs()
        chat = await asyncio.to_thread(self._read, self.scope("chat", platform, chat_id)) \
            if chat_id else Prefs()
        return Prefs(lang=user.lang or chat.lang, title_lang=user.title_lang or chat.title_lang,
                     ephemeral=user.ephemeral if user.ephemeral is not None else chat.ephemeral,
                     preview=user.preview if user.preview is not None else chat.preview)

    async def set(self, kind: str, platform: str, raw_id: str, **values: object) -> Prefs:
        """Store `values` (lang, title_lang, ephemeral, preview) for a "user" or a "chat"."""
        if kind not in ("user", "chat"):
            raise ValueError(kind)
        return await asyncio.to_thread(self._write, self.scope(kind, platform, raw_id), **values)
