"""Texts the chat front ends share: what a user sees when something failed (never a path or
a stack trace), the answer's shared phrases, and the operator's stats as aligned lines."""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import AniRecError, Busy, InvalidMedia, MediaTooLarge, RateLimited

#: The header of a "no match" answer that still lists the closest guesses (Telegram, web).
NO_MATCH_WITH_GUESSES = "Not sure — nothing matched well; the closest I have"
#: The line under an answer that asks for feedback (Telegram, web).
FEEDBACK_HINT = "Right? Tap ✅ or ❌ — or the number of the right answer."


def user_error_text(exc: BaseException) -> str:
    """What to tell a chat user when something failed (never a path or a stack trace)."""
    if isinstance(exc, (Busy, RateLimited, InvalidMedia)):
        return str(exc)
    if isinstance(exc, AniRecError):
        return exc.user_message
    return "Sorry, something went wrong while looking that up. Please try again later."


def too_large(size: int, limit: int) -> MediaTooLarge:
    """The refusal for a file over the byte limit (declared or counted while downloading)."""
    return MediaTooLarge(f"That file is too large ({size / 1e6:.1f} MB); I can read files up to "
                         f"{limit / 1e6:.0f} MB.")


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
