"""Secrets never reach a log line, at any level.

Libraries log what they like: python-telegram-bot logs `Set Bot API URL: …/bot<token>` at
DEBUG, httpx logs every request URL (which holds the Telegram token) at INFO, and an HTTP
error's text repeats the URL. `redact_in_logs(secret)` installs a log-record factory that
replaces every registered secret, in the message, its arguments and a traceback, with
`<redacted>` before any handler sees the record.
"""

from __future__ import annotations

import logging
import threading

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
_installed = False
REDACTED = "<redacted>"


def _scrub(text: str) -> str:
    for s in _SECRETS:
        if s in text:
            text = text.replace(s, REDACTED)
    return text


def _install() -> None:
    global _installed
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)  # type: ignore[arg-type]
        if not _SECRETS:
            return record
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave it to logging's own error path
            return record
        # frozen now: an argument mutated after the call (PTB fills a file's URL, token and
        # all, into the dict it just logged) cannot bring the secret back later
        record.msg, record.args = _scrub(message), ()
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if any(s in text for s in _SECRETS):
                record.exc_text = _scrub(text)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def redact_in_logs(secret: str | None) -> None:
    """From now on, `secret` (at least 8 characters) is shown as <redacted> in every log record."""
    if not secret or len(secret) < 8:
        return
    with _LOCK:
        _SECRETS.add(secret)
        if not _installed:
            _install()


def scrub(text: str) -> str:
    """`text` with every registered secret redacted (for errors shown to the operator)."""
    return _scrub(text)
