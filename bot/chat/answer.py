"""One answer, worded once for every platform: what a person reads, in their language.

`answer_text(rec, lang=..., title_lang=...)` turns a `Recognition` into an `AnswerText`
(plain strings, no markup); the Discord, Telegram and web renderers only add their markup,
so the three say the same thing:
- one confidence number, labelled ("Confidence 87%": how likely the top answer is right);
  candidate lines carry no second percentage;
- close rivals (`core.formatting.rivals`) are said out loud: the same episode a few seconds
  apart gives both times ("00:00:14 or 00:00:25"), another place within `RIVAL_MARGIN`
  gives "Probably this" and a "Could also be: …" line;
- "no match" looks like no match: no best block, no preview, no votes, and the closest
  guesses only behind a "Show closest scenes" button (`closest`);
- AniList / MyAnimeList links from `series.json`'s ids, the cover and synopsis when given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.chat.i18n import text
from core.formatting import episode_label, format_percent, format_timestamp, rivals
from core.types import Candidate, CharacterHit, Recognition, SeriesInfo

ANILIST_URL = "https://anilist.co/anime/{id}"
MAL_URL = "https://myanimelist.net/anime/{id}"


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class CandidateText:
    rank: int
    title: str
    where: str  # "Episode 03 @ 00:00:12" / "Opening of X"
    adult: bool

    @property
    def line(self) -> str:
        return f"{self.title} — {self.where}"


@dataclass(frozen=True)
class AnswerText:
    """What every platform shows for one recognition (plain text)."""

    status: str
    lang: str
    header: str
    confidence: str  # "Confidence 87%" (empty for a no-match)
    confidence_help: str
    title: str | None = None  # the best candidate (None for a no-match)
    other_titles: tuple[str, ...] = ()
    where: str = ""  # "Episode 03 · 00:00:12–00:00:15", hedged with both times
    also: tuple[str, ...] = ()  # "Could also be: …" lines for close rivals elsewhere
    adult: bool = False
    candidates: tuple[CandidateText, ...] = ()  # shown under the answer (match / unsure)
    closest: tuple[CandidateText, ...] = ()  # no-match: only behind "Show closest scenes"
    characters: str = ""
    genres: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()
    cover: str | None = None
    synopsis: str | None = None
    hint: str | None = None  # the feedback hint, only when votes are offered
    votes: int = 0  # 0: no ✅/❌ at all; 1: ✅ ❌; n ≥ 2: ✅ ❌ and 1..n
    labels: dict[str, str] = field(default_factory=dict)  # section names in this language

    @property
    def preview(self) -> bool:
        """Whether a preview clip or still goes with the answer."""
        return self.status != "no_match"


def title_in(series: SeriesInfo, lang: str | None) -> str:
    """The series title in `lang` from series.json's `titles` (else the library's title)."""
    if lang:
        for code, t in series.titles.items():
            if code.lower() == lang.lower() and t:
                return t
    return series.title


def other_titles(series: SeriesInfo, shown: str, limit: int = 2) -> tuple[str, ...]:
    seen = {shown}
    out: list[str] = []
    for t in [series.title, *(t for _, t in sorted(series.titles.items()))]:
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return tuple(out[:limit])


def episode_text(c: Candidate, lang: str, title: str) -> str:
    """"S2 · Episode 03", "Episode 12.5", "OVA 1", "Movie", "Opening of <title>"."""
    if c.is_opening_or_ending:
        return text(lang, c.oped_kind or "oped", title=title)
    label = episode_label(c)
    if not label:
        return text(lang, "movie")
    is_number = label.replace(".", "", 1).isdigit()
    shown = text(lang, "episode", n=label) if is_number else label
    return f"{text(lang, 'season', n=c.season)} · {shown}" if c.season and c.season > 1 else shown


def time_text(c: Candidate) -> str:
    if c.time_to - c.time_from >= 1.0:
        return f"{format_timestamp(c.time_from)}–{format_timestamp(c.time_to)}"
    return format_timestamp(c.time)


def _where(c: Candidate, lang: str, title: str) -> str:
    ep = episode_text(c, lang, title)
    return ep if c.is_opening_or_ending else text(lang, "at", where=ep, time=format_timestamp(c.time))


def _candidates(rec: Recognition, lang: str, title_lang: str | None) -> tuple[CandidateText, ...]:
    out = []
    for i, c in enumerate(rec.candidates[:5]):
        title = title_in(c.series, title_lang)
        out.append(CandidateText(i + 1, title, _where(c, lang, title), c.series.is_adult))
    return tuple(out)


def _links(s: SeriesInfo) -> tuple[Link, ...]:
    out = []
    if s.anilist_id:
        out.append(Link("AniList", ANILIST_URL.format(id=s.anilist_id)))
    if s.mal_id:
        out.append(Link("MyAnimeList", MAL_URL.format(id=s.mal_id)))
    return tuple(out)


def character_text(chars: tuple[CharacterHit, ...], lang: str) -> str:
    names = list(dict.fromkeys(h.name for h in chars if h.name != "unknown"))
    unknown = sum(1 for h in chars if h.name == "unknown")
    if unknown:
        names.append(text(lang, "unknown", n=unknown))
    return ", ".join(names)


def answer_text(rec: Recognition, *, lang: str = "en", title_lang: str | None = None
                ) -> AnswerText:
    """The answer in `lang` (UI) with titles in `title_lang` (default: `lang`)."""
    title_lang = title_lang or lang
    labels = {k: text(lang, k) for k in ("top5", "closest", "show_closest", "characters",
                                         "looks_like", "synopsis")}
    cands = _candidates(rec, lang, title_lang)
    genres = tuple(g for g, _ in rec.genres[:3]) if rec.status != "match" else ()
    best = rec.best
    if best is None or rec.status == "no_match":
        header = text(lang, "status.no_match_guesses" if cands else "status.no_match")
        named = any(h.name != "unknown" for h in rec.characters)  # no scene: only names are worth saying
        return AnswerText(status="no_match", lang=lang, header=header, confidence="",
                          confidence_help=text(lang, "confidence.help"), closest=cands,
                          characters=character_text(rec.characters, lang) if named else "", genres=genres,
                          labels=labels)
    same, other = rivals(rec)
    title = title_in(best.series, title_lang)
    where = f"{episode_text(best, lang, title)} · {time_text(best)}"
    if same:
        times = sorted({format_timestamp(c.time) for c in [best, *same]})
        where = f"{episode_text(best, lang, title)} · " + text(
            lang, "or_at", a=", ".join(times[:-1]), b=times[-1])
    if rec.status == "match":
        key = "status.match_rival" if other else "status.match_two_times" if same else "status.match"
    else:
        key = "status.unsure"
    also = tuple(text(lang, "also", line=cands[rec.candidates.index(c)].line) for c in other[:2])
    votes = 0
    if rec.query_id:
        votes = len(cands) if len(cands) > 1 else 1
    shown_cands = cands if len(cands) > 1 else ()
    return AnswerText(
        status=rec.status, lang=lang, header=text(lang, key),
        confidence=text(lang, "confidence", pct=format_percent(rec.confidence)),
        confidence_help=text(lang, "confidence.help"), title=title,
        other_titles=other_titles(best.series, title), where=where, also=also,
        adult=best.series.is_adult, candidates=shown_cands,
        characters=character_text(rec.characters, lang), genres=genres,
        links=_links(best.series), cover=best.series.cover, synopsis=best.series.synopsis,
        hint=text(lang, "feedback.hint") if votes else None, votes=votes, labels=labels)
