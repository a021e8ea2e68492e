"""Texts the chat front ends share: what a user sees when something failed (never a path or
a stack trace), the answer's shared phrases, and the operator's stats as aligned lines."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from bot.chat.i18n import text
from core.errors import (
    AniRecError,
    Busy,
    ConfigError,
    IndexUnavailable,
    InvalidMedia,
    MediaTooLarge,
    NotFound,
    RateLimited,
    UnsupportedMedia,
)

E = TypeVar("E", bound=AniRecError)

#: The catalogue key of each error class's plain sentence (the most specific class first).
_CLASS_KEYS: tuple[tuple[type[AniRecError], str], ...] = (
    (IndexUnavailable, "error.index"), (ConfigError, "error.config"),
    (MediaTooLarge, "error.too_large"), (UnsupportedMedia, "error.unsupported"),
    (InvalidMedia, "error.invalid"), (NotFound, "error.not_found"))


def said(cls: type[E], key: str, **values: object) -> E:
    """An error whose user text is the catalogue's `key` (bot/chat/i18n.py): its message is
    the English sentence; `user_error_text(exc, lang)` says it in the person's language."""
    exc = cls(text("en", key, **values))
    exc.i18n = (key, values)  # type: ignore[attr-defined]
    return exc


#: Something that looks like a file path (POSIX or Windows) inside a message.
_PATHLIKE = re.compile(r"(?:^|[\s(\"'`])(?:~?/[\w.-]|[A-Za-z]:\\)")


def _class_text(exc: AniRecError, lang: str | None) -> str:
    for cls, key in _CLASS_KEYS:
        if isinstance(exc, cls):
            return text(lang, key)
    own = getattr(type(exc), "i18n_key", None)  # e.g. DownloadFailed's
    return text(lang, own) if isinstance(own, str) else text(lang, "error.generic")


def user_error_text(exc: BaseException, lang: str | None = None) -> str:
    """What to tell a chat user when something failed, in their language: a plain sentence,
    never a path, an internal detail or a stack trace (the operator's log keeps the detail).

    Errors raised with `said` give their catalogue sentence; Busy and RateLimited say how
    long to wait; the operator-facing errors (a missing or unreadable index, a configuration
    problem) always give their class's plain sentence, and so does any other message that
    names a path. A class's own specific English message (say, a GIF with too many frames)
    is shown as is in English, and as its class's sentence in the other languages.
    """
    key_values = getattr(exc, "i18n", None)
    if isinstance(key_values, tuple):
        return text(lang, key_values[0], **key_values[1])
    if isinstance(exc, Busy):
        return text(lang, "error.busy", s=int(round(exc.retry_after)))
    if isinstance(exc, RateLimited):
        return text(lang, "error.rate", s=int(round(exc.retry_after)))
    if not isinstance(exc, AniRecError):
        return text(lang, "error.generic")
    if isinstance(exc, (IndexUnavailable, ConfigError)) or (lang or "en") != "en":
        return _class_text(exc, lang)
    msg = str(exc) if isinstance(exc, InvalidMedia) else exc.user_message
    return _class_text(exc, lang) if _PATHLIKE.search(msg) else msg


def too_large(size: int, limit: int) -> MediaTooLarge:
    """The refusal for a file over the byte limit (declared or counted while downloading)."""
    return said(MediaTooLarge, "error.too_large_size", size=file_size(size), limit=file_size(limit))


def file_size(n: float) -> str:
    """842 → "1 KB", 52_000 → "52 KB", 2_400_000 → "2.4 MB" (sizes under 0.1 MB in KB)."""
    if n < 100_000:
        return f"{max(1, round(n / 1000))} KB"
    return f"{n / 1e6:.1f} MB" if n < 10e6 else f"{n / 1e6:.0f} MB"


def too_long(seconds: float, max_seconds: float) -> MediaTooLarge:
    """The refusal for a clip over the length limit."""
    return said(MediaTooLarge, "error.too_long", s=f"{seconds:.0f}", max=f"{max_seconds:.0f}")


def _stat_value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def stats_lines(stats: Mapping[str, object]) -> str:
    """The service's numbers as "name  value" lines, the names padded to one width."""
    width = max((len(str(k)) for k in stats), default=0)
    return "\n".join(f"{str(k).ljust(width)}  {_stat_value(v)}" for k, v in stats.items())
