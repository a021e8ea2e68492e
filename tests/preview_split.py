"""Stub services split an answer the way `RecognitionService` does: `recognize` gives it
without its preview (clip, still, named faces), `preview(rec)` gives it back with them."""

from __future__ import annotations

from dataclasses import replace

from core.types import Recognition


def without_preview(rec: Recognition) -> Recognition:
    """The answer as `recognize` returns it: no clip, still or named-faces picture yet."""
    cands = tuple(replace(c, preview=None, still=None) for c in rec.candidates)
    return replace(rec, candidates=cands, annotated=None)


def has_preview(rec: Recognition) -> bool:
    return bool(rec.annotated or any(c.preview or c.still for c in rec.candidates))


class SplitPreview:
    """Mixin for stub services: `answer(r)` in `recognize`, `preview(rec)` as the service's."""

    def __init__(self) -> None:
        self.full: dict[str, Recognition] = {}

    def answer(self, rec: Recognition) -> Recognition:
        if not has_preview(rec):
            return rec
        self.full[rec.query_id or ""] = rec
        return without_preview(rec)

    def preview_pending(self, query_id: str | None) -> bool:
        return (query_id or "") in self.full

    async def preview(self, rec: Recognition, timeout: float | None = None) -> Recognition | None:
        return self.full.get(rec.query_id or "")
