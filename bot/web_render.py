"""What the web chat and operator pages show: the chat bubble's JSON (`answer_view`, the bots'
wording, no paths: files go out under opaque tokens from `MediaTokens`), and the operator
page's values, ready for the `admin.html` template."""

from __future__ import annotations

import collections
import datetime as dt
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.chat.answer import CandidateText, answer_text
from bot.chat.i18n import text
from core.formatting import format_percent, format_timestamp
from core.types import FeedbackTally, Recognition

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

#: A stored row (catalog JSON: `QueryStore.recent`, `library_status`): values of any JSON type.
Row = Mapping[str, Any]


class MediaTokens:
    """Opaque random tokens for files the browser may fetch (previews, stills, samples).

    The same file keeps its token; the oldest are forgotten past `max_items`, so memory stays
    bounded on a long-running chat. Paths only come from the service or the operator's folders,
    never from a request.
    """

    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = max_items
        self._by_token: collections.OrderedDict[str, Path] = collections.OrderedDict()
        self._by_path: dict[Path, str] = {}

    def token_for(self, path: str | Path) -> str:
        p = Path(path)
        tok = self._by_path.get(p)
        if tok is not None:
            self._by_token.move_to_end(tok)
            return tok
        tok = secrets.token_urlsafe(18)
        self._by_token[tok] = p
        self._by_path[p] = tok
        while len(self._by_token) > self.max_items:
            _old, old_path = self._by_token.popitem(last=False)
            self._by_path.pop(old_path, None)
        return tok

    def resolve(self, token: str) -> Path | None:
        if not _TOKEN.match(token or ""):
            return None
        return self._by_token.get(token)

    def __len__(self) -> int:
        return len(self._by_token)


def _candidate(c: CandidateText) -> dict[str, object]:
    return {"rank": c.rank, "title": c.title, "adult": c.adult, "text": c.line}


def answer_view(rec: Recognition, media: MediaTokens, *, lang: str = "en",
                title_lang: str | None = None, preview_url: str | None = None) -> dict[str, object]:
    """The JSON the chat page renders: the bots' wording (`bot.chat.answer`), no paths.

    Args:
        rec: the recognition (its preview/still/annotated paths are turned into
            /media/<token> URLs).
        media: the token registry the /media route serves from.
        preview_url: where the page fetches the preview that is still being cut
            (`GET /api/preview/<query_id>`), or None when none follows.
        lang, title_lang: the UI language and the language of series titles.

    Returns:
        A dict ready for `json.dumps`.
    """
    a = answer_text(rec, lang=lang, title_lang=title_lang)
    best_c = rec.best if a.title is not None else None
    best = None
    preview = still = None
    if best_c is not None:
        best = {"title": a.title, "other_titles": list(a.other_titles), "where": a.where,
                "also": list(a.also), "adult": a.adult, "synopsis": a.synopsis,
                "cover": a.cover,
                "links": [{"label": x.label, "url": x.url} for x in a.links]}
        if best_c.preview:
            preview = f"/media/{media.token_for(best_c.preview)}"
        if best_c.still:
            still = f"/media/{media.token_for(best_c.still)}"
    annotated = annotated_alt = None
    if rec.annotated and rec.characters and a.characters:
        annotated = f"/media/{media.token_for(rec.annotated)}"
        annotated_alt = text(a.lang, "web.faces_alt", names=a.characters) if a.characters else None
    total = rec.timings_ms.get("total")
    return {
        "query_id": rec.query_id,
        "lang": a.lang,
        "status": a.status,
        "header": a.header,
        "confidence": round(rec.confidence, 4),
        "confidence_text": a.confidence,
        "confidence_help": a.confidence_help,
        "best": best,
        "candidates": [_candidate(c) for c in a.candidates],
        "closest": [_candidate(c) for c in a.closest],
        "labels": a.labels,
        "characters": [h.name for h in rec.characters] if a.characters else [],
        "characters_text": a.characters,
        "genres": list(a.genres),
        "no_match_hint": text(lang, "no_match.hint") if a.title is None and not a.closest else None,
        "preview": preview,
        "still": still,
        "preview_url": preview_url,
        "annotated": annotated,
        "annotated_alt": annotated_alt,
        "votes": a.votes,
        "feedback_ranks": a.votes if a.votes > 1 else 0,
        "tally": FeedbackTally().as_dict(),
        "hint": a.hint,
        "ms": round(total) if total is not None else None,
    }


# -- the operator page ------------------------------------------------------------------------------

def _when(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _bytes(n: float | None) -> str:
    x = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if x < 1000 or unit == "GB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{x:.1f} GB"


def stored_candidate_text(c: Row) -> str:
    """A stored top-5 entry (queries.top5) as "Title — Episode 3 @ 00:00:12 (87%)"."""
    series = c.get("series") or {}
    title = str(series.get("title") or "?")
    if c.get("is_opening_or_ending"):
        where = f"Opening or ending of {title}"
    else:
        ep = c.get("episode")
        label = f"Episode {ep:g}" if isinstance(ep, (int, float)) else "Movie"
        season = c.get("season")
        if isinstance(season, int) and season > 1:
            label = f"S{season} · {label}"
        where = f"{label} @ {format_timestamp(float(c.get('time') or 0.0))}"
    return f"{title} — {where} ({format_percent(float(c.get('score') or 0.0))})"


def _tally_text(t: Row | None) -> str:
    if not t:
        return "—"
    parts = []
    if t.get("correct"):
        parts.append(f"✅ {t['correct']}")
    if t.get("wrong"):
        parts.append(f"❌ {t['wrong']}")
    for i, n in enumerate(t.get("picks") or ()):
        if n:
            parts.append(f"#{i + 1}: {n}")
    return " · ".join(parts) or "—"


def _facts_library(status: Row) -> list[tuple[str, object]]:
    idx = status.get("index") or {}
    models = ", ".join(f"{k}: {v}" for k, v in (status.get("models") or {}).items()) or "—"
    return [
        ("Series", status.get("series", 0)),
        ("Episodes indexed", status.get("episodes", 0)),
        ("Episodes failed / pending",
         f"{status.get('episodes_failed', 0)} / {status.get('episodes_pending', 0)}"),
        ("Frames", status.get("frames", 0)),
        ("Video hours", f"{float(status.get('video_hours') or 0):.2f}"),
        ("Index", (f"{idx.get('count', 0)} vectors, version {idx.get('version', '—')}, "
                   f"{_bytes(idx.get('bytes'))}" if idx.get("count") else "no episodes indexed")
         if idx else "not built yet"),
        ("Embedder", idx.get("embedder", "—") if idx else "—"),
        ("Frame store", _bytes(status.get("framestore_bytes"))),
        ("Models", models),
    ]


def _facts_service(stats: Row) -> list[tuple[str, object]]:
    return [
        ("Ready", ("yes" if stats.get("frames") else "no (no episodes indexed)")
                  if stats.get("ready") else "no (index not loaded)"),
        ("Model / index",
         f"{stats.get('model_version') or '—'} / {stats.get('index_version') or '—'}"),
        ("Queries (24 h)", f"{stats.get('queries', 0)} ({stats.get('queries_24h', 0)})"),
        ("Active feedback", stats.get("feedback", 0)),
        ("Marked wrong", stats.get("marked_wrong", 0)),
        ("Mean latency", f"{float(stats.get('mean_latency_ms') or 0):.0f} ms"),
        ("Served since start", stats.get("served_since_start", 0)),
        ("Queue", stats.get("queue", 0)),
    ]


def _query_view(q: Row) -> dict[str, object]:
    return {"id": q["id"], "when": _when(q.get("created_at")), "platform": q.get("platform"),
            "status": q.get("status"),
            "confidence": format_percent(float(q.get("confidence") or 0)),
            "tally": _tally_text(q.get("tally"))}


def admin_view(status: Row, stats: Row, recent: Sequence[Row], wrong: Sequence[Row],
               operator_picks: Mapping[str, int], sheets: list[str] | None) -> dict[str, object]:
    """The values of the operator page (`admin.html`; the template escapes every one)."""
    wrong_cards = []
    for q in wrong:
        picked = operator_picks.get(q["id"])
        frames = q.get("frames") or []
        cands = [{"rank": i + 1, "text": stored_candidate_text(c), "picked": picked == i + 1,
                  "frame": i < len(frames)}
                 for i, c in enumerate(q.get("top5") or [])]
        wrong_cards.append({**_query_view(q), "candidates": cands,
                            "image": bool(q.get("image_path"))})
    recent_rows = []
    for q in recent:
        top = (q.get("top5") or [None])[0]
        recent_rows.append({**_query_view(q),
                            "answer": stored_candidate_text(top) if top else "—",
                            "latency": f"{float(q.get('latency_ms') or 0):.0f} ms"})
    return {"service": _facts_service(stats), "library": _facts_library(status),
            "series": list(status.get("series_list") or []), "wrong": wrong_cards,
            "recent": recent_rows, "sheets": sheets}
