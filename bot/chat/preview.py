"""The preview that follows an answer, the same way on every platform.

`RecognitionService.recognize` returns the answer without its clip; each platform sends that
answer at once, then asks `follow_up(service, rec)` for the preview and adds it to what it
sent (Discord edits the answer to attach the clip, Telegram replies to it with the clip, the
web page fetches it). None means there is nothing to add — previews off, a no-match, a cut
that failed (the service logged it for the operator) — and the answer simply stands.
"""

from __future__ import annotations

import logging
from typing import Any

from core.types import Recognition

logger = logging.getLogger(__name__)

#: How long a platform waits for a preview after its answer went out (seconds).
FOLLOW_UP_WAIT_S = 30.0


async def follow_up(service: Any, rec: Recognition, timeout: float = FOLLOW_UP_WAIT_S
                    ) -> Recognition | None:
    """`rec` with its preview once made, or None when there is nothing to add. Never raises
    (the answer is already out: a preview problem is logged, never shown)."""
    if not rec.query_id or rec.status == "no_match" and not rec.characters:
        return None
    try:
        full: Recognition | None = await service.preview(rec, timeout=timeout)
    except Exception:
        logger.exception("the preview of query %s could not be fetched", rec.query_id)
        return None
    return full
