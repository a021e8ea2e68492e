"""Plain-text pieces of an answer (no markup; each platform's renderer adds its own)."""

from __future__ import annotations

from core.types import Candidate, CharacterHit, Recognition

STATUS_TEXT = {
    "match": "Found it",
    "unsure": "Not sure — here are my best guesses",
    "no_match": "I couldn't find this in the library",
}


def format_timestamp(seconds: float) -> str:
    """12.3 → "00:00:12"; negative values clamp to zero."""
    s = max(0, int(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_percent(x: float) -> str:
    return f"{max(0.0, min(1.0, x)) * 100:.0f}%"


def episode_text(c: Candidate) -> str:
    """"S2 · Episode 03", "Episode 12.5", "OVA 1", "Opening", ..."""
    if c.is_opening_or_ending:
        return "Opening/ending"
    label = c.episode_label or (f"{c.episode:g}" if c.episode is not None else "")
    if not label:
        return "Movie"
    is_number = label.replace(".", "", 1).isdigit()
    text = f"Episode {label}" if is_number else label
    return f"S{c.season} · {text}" if c.season and c.season > 1 else text


def time_range(c: Candidate) -> str:
    if c.time_to - c.time_from >= 1.0:
        return f"{format_timestamp(c.time_from)}–{format_timestamp(c.time_to)}"
    return format_timestamp(c.time)


def other_titles(c: Candidate, limit: int = 2) -> list[str]:
    seen = {c.series.title}
    out = []
    for _, t in sorted(c.series.titles.items()):
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out[:limit]


def candidate_line(rank: int, c: Candidate) -> str:
    """"1. Title — Episode 03 @ 00:12:34 (87%)"."""
    where = "opening/ending" if c.is_opening_or_ending else f"{episode_text(c)} @ {format_timestamp(c.time)}"
    return f"{rank}. {c.series.title} — {where} ({format_percent(c.score)})"


def character_text(chars: tuple[CharacterHit, ...] | list[CharacterHit]) -> str:
    names = [h.name for h in chars if h.name != "unknown"]
    unknown = sum(1 for h in chars if h.name == "unknown")
    parts = list(dict.fromkeys(names))
    if unknown:
        parts.append(f"{unknown} unknown")
    return ", ".join(parts)


def summary_lines(rec: Recognition) -> list[str]:
    """A readable multi-line summary (CLI output; the web chat and bots build richer ones)."""
    lines = [f"{STATUS_TEXT[rec.status]} (confidence {format_percent(rec.confidence)})"]
    best = rec.best
    if best is not None:
        lines.append(f"{best.series.title}" + (f"  ({' / '.join(other_titles(best))})"
                                                if other_titles(best) else ""))
        lines.append(f"{episode_text(best)}, {time_range(best)}")
        if best.preview:
            lines.append(f"preview: {best.preview}")
    if len(rec.candidates) > 1 or rec.status != "match":
        lines.append("Candidates:")
        lines += ["  " + candidate_line(i + 1, c) for i, c in enumerate(rec.candidates[:5])]
    if rec.characters:
        lines.append("Characters: " + character_text(rec.characters))
    if rec.genres and rec.status != "match":
        lines.append("Looks like: " + ", ".join(g for g, _ in rec.genres[:3]))
    total = rec.timings_ms.get("total")
    if total is not None:
        lines.append(f"({total:.0f} ms)")
    return lines
