"""The texts a chat user sees when something failed, the same on every platform (never a
path or a stack trace)."""

from __future__ import annotations

from core.errors import AniRecError, Busy, InvalidMedia, MediaTooLarge, RateLimited


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
