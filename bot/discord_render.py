"""Discord rendering: a `Recognition` as an embed plus the preview files to attach.

Pure functions over core's plain-text pieces (`core.formatting`); every piece of text that
comes from the library (titles, names, genres) goes through `discord.utils.escape_markdown`.
Nothing here talks to Discord: the adapter sends what these functions build.

The answer message:
- embed title: the series title (match or unsure), else "Not sure — nothing matched well" or
  "I couldn't find this in the library";
- description: other-language titles, season/episode and time range, the status with the
  confidence ("Not sure — here are my best guesses" when unsure);
- fields: the top 5 as a numbered list (when there is more than one candidate, or nothing
  matched), the characters, predicted genres (only when the status is not a match);
- footer: how to vote and the time taken (no internal ids: the buttons' custom ids carry the
  query id, and are how a reaction on an answer is traced back to its query after a restart;
  older answers with ``id: <query_id>`` in the footer are still read);
- components (`view`): ✅ ❌ and 1–n buttons, the AniList / MyAnimeList link buttons; a
  no-match has only "Show closest scenes" (no votes, no preview);
- files: the preview clip (MP4) when it fits the upload budget, with the still JPEG as the
  embed thumbnail (``attachment://``); the still as the embed image when there is no clip.
  When characters were found, the query picture with every face boxed and named
  (`Recognition.annotated`) goes as ``characters.jpg`` and is the embed thumbnail (it takes
  the place of the still, which is then not sent: the clip already shows the scene). It
  counts against the same upload budget; a missing or unreadable file is left out.

Adult series (`SeriesInfo.is_adult`) outside NSFW channels (and in DMs): the title, other
titles, candidate line and characters are wrapped in ``||spoilers||`` and marked 18+, the
embed title is withheld, no embed image is set, and the preview (and the named-faces picture)
go as ``SPOILER_`` files (Discord blurs them until clicked).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import discord
from discord.utils import escape_markdown

from bot.chat.answer import AnswerText, CandidateText, answer_text
from bot.chat.feedback import CORRECT_EMOJI, RANK_EMOJI, WRONG_EMOJI, parse_feedback
from bot.chat.i18n import text
from bot.chat.texts import stats_lines
from bot.discord_components import answer_components
from core.types import Candidate, Recognition

logger = logging.getLogger(__name__)

#: Bytes of files attached to one answer. Discord's smallest upload limit is 10 MB (it was 8 MB
#: for years); 8 MB keeps every server, boosted or not, and leaves room for the JSON part.
UPLOAD_BUDGET = 8 * 1024 * 1024
#: Library text (titles, names) is cut to this many characters so an answer always fits.
MAX_FIELD = 200
#: Discord's embed limits.
MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_FIELD_VALUE = 1024
MAX_FOOTER = 2048

COLOR_MATCH = 0x2ECC71
COLOR_UNSURE = 0xF1C40F
COLOR_NO_MATCH = 0x95A5A6

ADULT_TITLE = text("en", "dc.adult_title")
ADULT_MARK = " (18+)"
CLIP_NAME = "preview.mp4"
STILL_NAME = "preview.jpg"
ANNOTATED_NAME = "characters.jpg"
SPOILER_PREFIX = "SPOILER_"

_FOOTER_ID = re.compile(r"(?:^|\s)id: (?P<qid>[A-Za-z0-9_-]{1,40})(?=\s|$)")


@dataclass(frozen=True)
class Attachment:
    """A local file to upload with the answer, under the name Discord will show."""

    path: Path
    filename: str

    @property
    def spoiler(self) -> bool:
        return self.filename.startswith(SPOILER_PREFIX)

    def to_file(self) -> discord.File:
        return discord.File(self.path, filename=self.filename)


@dataclass
class RenderedAnswer:
    """What the adapter sends: one embed, the files it refers to, how many rank emoji."""

    embed: discord.Embed
    attachments: list[Attachment] = field(default_factory=list)
    n_candidates: int = 0  # the votes offered: 0 none, 1 ✅ ❌, n ≥ 2 also 1..n
    hidden: bool = False  # an adult answer withheld behind spoilers
    view: discord.ui.View | None = None  # the buttons under the answer
    closest: str | None = None  # a no-match's closest guesses (shown on "Show closest scenes")
    closest_label: str = ""  # its section name, in the answer's language

    def files(self) -> list[discord.File]:
        """Fresh `discord.File`s (each can be sent once).

        A file that cannot be opened any more (deleted from the cache since rendering,
        unreadable) is left out, and the embed no longer points at it."""
        out: list[discord.File] = []
        kept: list[Attachment] = []
        for a in self.attachments:
            try:
                out.append(a.to_file())
            except OSError as exc:
                logger.warning("could not attach %s: %s", a.filename, exc)
                ref = f"attachment://{a.filename}"
                if self.embed.image and self.embed.image.url == ref:
                    self.embed.set_image(url=None)
                if self.embed.thumbnail and self.embed.thumbnail.url == ref:
                    self.embed.set_thumbnail(url=None)
                continue
            kept.append(a)
        self.attachments = kept
        return out

    @property
    def rank_emoji(self) -> tuple[str, ...]:
        """The reactions the bot adds: ✅ ❌, then 1️⃣..n when there is a choice (n ≥ 2)."""
        if self.n_candidates <= 0:
            return ()
        ranks = RANK_EMOJI[: self.n_candidates] if self.n_candidates > 1 else ()
        return (CORRECT_EMOJI, WRONG_EMOJI, *ranks)


# -- small pieces ----------------------------------------------------------------------------------

def cut(text: object, limit: int = MAX_FIELD) -> str:
    """`text` cut to `limit` characters (with an ellipsis)."""
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def esc(text: object, limit: int = MAX_FIELD) -> str:
    """Markdown-escaped `text`, cut to `limit` characters first."""
    return escape_markdown(cut(text, limit), ignore_links=False)


def spoiler(markdown: str) -> str:
    return f"||{markdown}||"


def hidden(c: Candidate, adult_ok: bool) -> bool:
    """Whether this candidate's title must be withheld here."""
    return c.series.is_adult and not adult_ok


def _fit(lines: list[str], limit: int) -> str:
    """Join lines, dropping whole lines from the end (with a marker) to stay under `limit`."""
    out: list[str] = []
    total = 0
    for line in lines:
        extra = len(line) + (1 if out else 0)
        if total + extra > limit - 2:
            out.append("…")
            break
        out.append(line)
        total += extra
    return "\n".join(out)


def candidate_markdown(c: CandidateText, adult_ok: bool) -> str:
    """"1. Title — Episode 3 @ 00:12:34", escaped; adult ones behind a spoiler."""
    prefix = f"{c.rank}. "
    text_ = esc(c.line, MAX_FIELD + 40)
    if c.adult and not adult_ok:
        return f"{prefix}{spoiler(text_)}{ADULT_MARK}"
    return f"{prefix}{text_}"


def status_line(a: AnswerText) -> str:
    """"Found it · Confidence 87%": the one confidence number, labelled."""
    return f"{a.header} · {a.confidence}" if a.confidence else a.header


def footer_text(votes: bool, total_ms: float | None = None, lang: str = "en") -> str:
    parts = []
    if votes:
        parts.append(text(lang, "dc.footer"))
    if total_ms is not None:
        parts.append(f"{total_ms:.0f} ms")
    return cut(" · ".join(parts), MAX_FOOTER)


def query_id_from_footer(text: str | None) -> str | None:
    """The query id in an answer's footer ("id: <query_id> · ..."), or None."""
    if not text:
        return None
    m = _FOOTER_ID.search(text)
    return m.group("qid") if m else None


def query_id_from_message(message: discord.Message) -> str | None:
    """The query id of one of the bot's answers, read back from its buttons' custom ids
    (older answers: from the embed footer)."""
    for row in message.components:
        for item in getattr(row, "children", [row]):
            action = parse_feedback(getattr(item, "custom_id", None))
            if action is not None:
                return action.query_id
    for embed in message.embeds:
        qid = query_id_from_footer(embed.footer.text if embed.footer else None)
        if qid:
            return qid
    return None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def preview_attachments(c: Candidate | None, *, hide: bool,
                        budget: int = UPLOAD_BUDGET) -> tuple[list[Attachment], str | None]:
    """The files to upload for the best candidate, and how the embed uses the still.

    Returns (attachments, use) where `use` is "image" or "thumbnail" (set the embed's image
    or thumbnail to ``attachment://preview.jpg``) or None.
    """
    if c is None:
        return [], None
    prefix = SPOILER_PREFIX if hide else ""
    clip = Path(c.preview) if c.preview else None
    still = Path(c.still) if c.still else None
    clip_size = _size(clip) if clip else None
    still_size = _size(still) if still else None
    out: list[Attachment] = []
    used = 0
    if clip is not None and clip_size is not None and clip_size <= budget:
        out.append(Attachment(clip, prefix + CLIP_NAME))
        used += clip_size
    if still is not None and still_size is not None and used + still_size <= budget:
        if hide:
            if not out:  # a blurred still only when there is no blurred clip
                out.append(Attachment(still, prefix + STILL_NAME))
            return out, None
        out.append(Attachment(still, STILL_NAME))
        return out, "thumbnail" if used else "image"
    return out, None


def annotated_attachment(rec: Recognition, *, hide: bool, budget: int) -> Attachment | None:
    """The query picture with the faces boxed and named, when there is one that fits `budget`
    bytes (a missing or unreadable file is simply left out)."""
    if not rec.annotated or not rec.characters:
        return None
    path = Path(rec.annotated)
    size = _size(path)
    if size is None or size > budget:
        return None
    return Attachment(path, (SPOILER_PREFIX if hide else "") + ANNOTATED_NAME)


# -- the answer ------------------------------------------------------------------------------------

def _describe(a: AnswerText, hide: bool) -> list[str]:
    if a.title is None:
        return [a.labels["show_closest"] + " ↓" if a.closest else text(a.lang, "no_match.hint")]
    description: list[str] = []
    if hide:
        description.append(spoiler(f"**{esc(a.title)}**") + ADULT_MARK)
    if a.other_titles:
        shown = f"*{esc(' / '.join(a.other_titles), MAX_FIELD * 2)}*"
        description.append(spoiler(shown) if hide else shown)
    description.append(f"**{esc(a.where, MAX_FIELD + 80)}**")
    description += [f"⚠️ {esc(line, MAX_FIELD + 80)}" for line in a.also]
    description.append(status_line(a))
    if a.synopsis and not hide:
        description.append(f"> {esc(a.synopsis, 400)}")
    return description


def render_answer(rec: Recognition, *, adult_ok: bool = False, budget: int = UPLOAD_BUDGET,
                  lang: str = "en", title_lang: str | None = None) -> RenderedAnswer:
    """The answer as an embed with its files and buttons.

    Args:
        rec: the recognition.
        adult_ok: show adult titles and previews plainly (NSFW channels); else spoilered.
        budget: bytes of files the answer may upload.
        lang, title_lang: the UI language and the language of series titles.
    """
    a = answer_text(rec, lang=lang, title_lang=title_lang)
    best = rec.best if a.title is not None else None
    hide = a.adult and not adult_ok
    color = {"match": COLOR_MATCH, "unsure": COLOR_UNSURE}.get(a.status, COLOR_NO_MATCH)
    if a.title is None:
        title = a.header
    else:
        title = text(lang, "dc.adult_title") if hide else esc(a.title, MAX_TITLE - 10)
    embed = discord.Embed(title=cut(title, MAX_TITLE), color=color,
                          description=_fit(_describe(a, hide), MAX_DESCRIPTION))
    if a.candidates:
        lines = [candidate_markdown(c, adult_ok) for c in a.candidates]
        embed.add_field(name=a.labels["top5"], value=_fit(lines, MAX_FIELD_VALUE), inline=False)
    if a.characters:  # also when no scene matched: the characters may still be known
        chars = esc(a.characters, MAX_FIELD * 3)
        embed.add_field(name=a.labels["characters"], value=spoiler(chars) if hide else chars,
                        inline=False)
    if a.genres:
        embed.add_field(name=a.labels["looks_like"], value=esc(", ".join(a.genres), MAX_FIELD),
                        inline=False)
    embed.set_footer(text=footer_text(bool(a.votes), rec.timings_ms.get("total"), lang))
    attachments, still_use = preview_attachments(best, hide=hide, budget=budget)
    # The named faces take the thumbnail; a still that was only the clip's thumbnail makes room.
    others = [x for x in attachments if not (still_use == "thumbnail" and x.filename == STILL_NAME)]
    faces = annotated_attachment(
        rec, hide=hide, budget=budget - sum(_size(x.path) or 0 for x in others)) if best else None
    if faces is not None:
        if still_use == "thumbnail":
            attachments, still_use = others, None
        attachments.append(faces)
        if not hide:
            embed.set_thumbnail(url=f"attachment://{ANNOTATED_NAME}")
    if still_use == "image":
        embed.set_image(url=f"attachment://{STILL_NAME}")
    elif still_use == "thumbnail":
        embed.set_thumbnail(url=f"attachment://{STILL_NAME}")
    elif a.cover and not hide and not embed.thumbnail:
        embed.set_thumbnail(url=a.cover)
    closest = [candidate_markdown(c, adult_ok) for c in a.closest]
    return RenderedAnswer(embed=embed, attachments=attachments, n_candidates=a.votes,
                          hidden=hide, view=answer_components(a, rec.query_id),
                          closest=_fit(closest, MAX_FIELD_VALUE) if closest else None,
                          closest_label=a.labels["closest"])


# -- other texts -----------------------------------------------------------------------------------

#: The English texts; `text(lang, key)` (bot/chat/i18n.py) gives them in any language.
HELP_TEXT = text("en", "dc.help", menu=text("en", "dc.cmd.identify"))
MENTION_HINT = text("en", "dc.mention_hint")
SLASH_HINT = text("en", "dc.slash_hint")
NO_MEDIA_IN_TARGET = text("en", "dc.no_media")
OWNER_ONLY = text("en", "error.owner_only")


def help_text(lang: str = "en") -> str:
    """What a direct message without a picture gets."""
    return text(lang, "dc.help", menu=text(lang, "dc.cmd.identify"))


def skipped_text(answered: int, skipped: int, lang: str = "en") -> str:
    """Told when a message had more images than the bot answers at once (a picker follows)."""
    return text(lang, "picker.skipped_one" if skipped == 1 else "picker.skipped",
                answered=answered, skipped=skipped)


def render_stats(stats: Mapping[str, object]) -> str:
    """/anirec stats: the service's numbers as a code block."""
    body = stats_lines(stats).replace("```", "'''")
    return cut(f"**AniRec status**\n```\n{body}\n```", 2000)
