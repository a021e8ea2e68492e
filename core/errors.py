"""Domain exceptions. Every message is written so a chat user or an operator can read it."""

from __future__ import annotations


class AniRecError(Exception):
    """Base of every error AniRec raises on purpose."""

    #: Text safe to show a chat user (no paths, no stack traces).
    user_message: str = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.user_message)
        if message:
            self.user_message = message


class ConfigError(AniRecError):
    """A setting is missing or has a bad value; the message names the variable."""


class InvalidMedia(AniRecError):
    """The picture/clip cannot be used: wrong type, corrupt, too large, too long."""

    user_message = "I could not read that file as an image, GIF or short clip."


class UnsupportedMedia(InvalidMedia):
    """The file is of a type AniRec does not handle."""

    user_message = "That file type is not supported. Send a picture, GIF, sticker or short clip."


class MediaTooLarge(InvalidMedia):
    """The file exceeds a byte, pixel, frame or duration limit."""

    user_message = "That file is too large."


class IndexUnavailable(AniRecError):
    """No index has been built yet, or it cannot be read."""

    user_message = "The library index is not ready yet. Ask the operator to run `anirec index`."

    def __init__(self, message: str | None = None) -> None:
        # the detailed message (paths, checksums) is for the operator's log and CLI; a chat
        # user keeps the generic sentence
        super().__init__(message)
        self.user_message = type(self).user_message


class IndexMismatch(IndexUnavailable):
    """The index on disk was built by a different embedder or with other parameters."""


class Busy(AniRecError):
    """Too much work queued; try again later."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1.0, float(retry_after))
        super().__init__(
            f"I'm busy right now, please try again in {int(round(self.retry_after))} s."
        )


class RateLimited(AniRecError):
    """A user or chat sent too many requests."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1.0, float(retry_after))
        super().__init__(
            f"You're sending pictures too fast; try again in {int(round(self.retry_after))} s."
        )


class NotFound(AniRecError):
    """A referenced object (query, series, cluster, ...) does not exist."""


class MissingExtra(AniRecError):
    """A feature needs an optional dependency that is not installed (an extra of the package)."""

    def __init__(self, feature: str, module: str, extra: str) -> None:
        self.module, self.extra = module, extra
        super().__init__(f"{feature} needs {module}, which is not installed; "
                         f"install it with: pip install 'anirec[{extra}]'")


class NothingToTrain(AniRecError):
    """Training has no input yet: no indexed episodes, or no face labels."""

    user_message = "There is nothing to train on yet."
