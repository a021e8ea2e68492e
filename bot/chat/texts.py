"""Texts the chat front ends share: what a user sees when something failed (never a path or
a stack trace), the answer's shared phrases, and the operator's stats as aligned lines."""

from __future__ import annotations

import re
from collections.abc import Mapping

from core.errors import (
    AniRecError,
    Busy,
    ConfigError,
    IndexUnavailable,
    InvalidMedia,
    MediaTooLarge,
    RateLimited,
)

#: The header of a "no match" answer that still lists the closest guesses (Telegram, web).
NO_MATCH_WITH_GUESSES = "Not sure — nothing matched well; the closest I have"
#: The line under an answer that asks for feedback (Telegram, web).
FEEDBACK_HINT = "Right? Tap ✅ or ❌ — or the number of the right answer."


#: Something that looks like a file path (POSIX or Windows) inside a message.
_PATHLIKE = re.compile(r"(?:^|[\s(\"'`])(?:~?/[\w.-]|[A-Za-z]:\\)")


def user_error_text(exc: BaseException) -> str:
    """What to tell a chat user when something failed: a plain sentence, never a path, an
    internal detail or a stack trace (the operator's log keeps the detail).

    The operator-facing errors (a missing or unreadable index, a configuration problem)
    always give their class's plain sentence; any other message that names a path does too.
    """
    if isinstance(exc, (IndexUnavailable, ConfigError)):
        return type(exc).user_message
    if isinstance(exc, (Busy, RateLimited, InvalidMedia)):
        msg = str(exc)
    elif isinstance(exc, AniRecError):
        msg = exc.user_message
    else:
        return "Sorry, something went wrong while looking that up. Please try again later."
    return type(exc).user_message if _PATHLIKE.search(msg) else msg


def too_large(size: int, limit: int) -> MediaTooLarge:
    """The refusal for a file over the byte limit (declared or counted while downloading)."""
    return MediaTooLarge(f"That file is too large ({file_size(size)}); I can read files up to "
                         f"{file_size(limit)}.")


def file_size(n: float) -> str:
    """842 → "1 KB", 52_000 → "52 KB", 2_400_000 → "2.4 MB" (sizes under 0.1 MB in KB)."""
    if n < 100_000:
        return f"{max(1, round(n / 1000))} KB"
    return f"{n / 1e6:.1f} MB" if n < 10e6 else f"{n / 1e6:.0f} MB"


def too_long(seconds: float, max_seconds: float) -> MediaTooLarge:
    """The refusal for a clip over the length limit."""
    return MediaTooLarge(f"That clip is too long ({seconds:.0f} s); I read clips up to "
                         f"{max_seconds:.0f} s.")


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
