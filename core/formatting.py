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


#: A candidate whose score is within this of the best one's is a close rival.
RIVAL_MARGIN = 0.05
#: Rivals in the same episode closer than this (seconds) are the same moment, not a rival.
SAME_MOMENT_S = 3.0
#: ... and farther than this are another scene of the episode, not "two moments".
SAME_EPISODE_S = 90.0


def episode_label(c: Candidate) -> str:
    """"3", "12.5", "OVA 1", "" (a movie): numbers without zero padding, the same everywhere."""
    label = c.episode_label or (f"{c.episode:g}" if c.episode is not None else "")
    if label.replace(".", "", 1).isdigit():
        return f"{float(label):g}"
    return label


def episode_text(c: Candidate) -> str:
    """"S2 · Episode 3", "Episode 12.5", "OVA 1", "Opening of <series>", ..."""
    if c.is_opening_or_ending:
        kind = {"opening": "Opening", "ending": "Ending"}.get(c.oped_kind or "", "Opening or ending")
        return f"{kind} of {c.series.title}"
    label = episode_label(c)
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
    """"1. Title — Episode 3 @ 00:12:34" (no second percentage: the answer has one
    confidence, see `summary_lines`)."""
    where = episode_text(c) if c.is_opening_or_ending else f"{episode_text(c)} @ {format_timestamp(c.time)}"
    return f"{rank}. {c.series.title} — {where}"


def rivals(rec: Recognition) -> tuple[list[Candidate], list[Candidate]]:
    """The close rivals of the best candidate (scores within `RIVAL_MARGIN`): those in the
    same episode at another moment (up to `SAME_EPISODE_S` away), and those elsewhere."""
    best = rec.best
    if best is None or rec.status == "no_match":
        return [], []
    same: list[Candidate] = []
    other: list[Candidate] = []
    for c in rec.candidates[1:5]:
        if best.score - c.score > RIVAL_MARGIN:
            continue
        gap = abs(c.time - best.time)
        if c.episode_id == best.episode_id and gap <= SAME_MOMENT_S:
            continue
        if c.episode_id == best.episode_id and gap <= SAME_EPISODE_S:
            same.append(c)
        elif not (c.is_opening_or_ending and best.is_opening_or_ending
                  and c.series.id == best.series.id):
            other.append(c)
    return same, other


def character_text(chars: tuple[CharacterHit, ...] | list[CharacterHit]) -> str:
    names = [h.name for h in chars if h.name != "unknown"]
    unknown = sum(1 for h in chars if h.name == "unknown")
    parts = list(dict.fromkeys(names))
    if unknown:
        parts.append(f"{unknown} unknown")
    return ", ".join(parts)


def summary_lines(rec: Recognition) -> list[str]:
    """A readable multi-line summary (CLI output; the web chat and bots build richer ones)."""
    if rec.status == "no_match":
        lines = [STATUS_TEXT["no_match"]]
    else:
        lines = [f"{STATUS_TEXT[rec.status]} · confidence {format_percent(rec.confidence)} "
                 "(how likely the top answer is right)"]
    best = rec.best if rec.status != "no_match" else None
    if best is not None:
        same, other = rivals(rec)
        lines.append(f"{best.series.title}" + (f"  ({' / '.join(other_titles(best))})"
                                                if other_titles(best) else ""))
        when = time_range(best)
        if same:
            when = " or ".join(sorted({format_timestamp(c.time) for c in [best, *same]}))
        lines.append(f"{episode_text(best)}, {when}")
        lines += [f"could also be: {candidate_line(rec.candidates.index(c) + 1, c)[3:]}"
                  for c in other[:2]]
        if best.preview:
            lines.append(f"preview: {best.preview}")
    if len(rec.candidates) > 1 or rec.status != "match":
        lines.append("Candidates:" if rec.status != "no_match" else "Closest (none fits well):")
        lines += ["  " + candidate_line(i + 1, c) for i, c in enumerate(rec.candidates[:5])]
    if rec.characters:
        lines.append("Characters: " + character_text(rec.characters))
    if rec.genres and rec.status != "match":
        lines.append("Looks like: " + ", ".join(g for g, _ in rec.genres[:3]))
    total = rec.timings_ms.get("total")
    if total is not None:
        lines.append(f"({total:.0f} ms)")
    return lines
