"""Telegram rendering: a `Recognition` as HTML text plus the feedback keyboard.

Pure functions over core's plain-text pieces (`core.formatting`); every piece of text that
comes from the library (titles, names, genres) goes through `html.escape`. Only the tags
Telegram's HTML parse mode knows are used: <b>, <i>, <code>, <pre>, <tg-spoiler>.

Adult series (`SeriesInfo.is_adult`): where adult titles are not allowed (groups), the
title, the candidate line and the characters of an adult series are wrapped in
<tg-spoiler> and marked "18+", and the adapter sends the preview with `has_spoiler=True`.
In private chats they are shown plainly (the person asked for it themselves).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.chat.answer import AnswerText, CandidateText, Link, answer_text
from bot.chat.feedback import CORRECT_EMOJI, WRONG_EMOJI, encode_feedback
from bot.chat.i18n import text
from bot.chat.texts import stats_lines
from core.types import FeedbackTally, Recognition, Verdict

#: Telegram's limits on what a user sees (after the HTML is parsed).
MAX_TEXT = 4096
MAX_CAPTION = 1024
#: Library text (titles, names) is cut to this many characters so an answer always fits.
MAX_FIELD = 200

ADULT_MARK = " (18+)"

_TAG = re.compile(r"<[^>]+>")


def esc(text: object, limit: int = MAX_FIELD) -> str:
    """HTML-escaped `text`, cut to `limit` characters (with an ellipsis)."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s, quote=False)


def spoiler(escaped_html: str) -> str:
    return f"<tg-spoiler>{escaped_html}</tg-spoiler>"


def visible_length(html_text: str) -> int:
    """The length Telegram counts for a text or caption: tags removed, entities decoded,
    in UTF-16 code units (so an emoji outside the BMP counts 2)."""
    shown = html.unescape(_TAG.sub("", html_text))
    return len(shown.encode("utf-16-le")) // 2


def _title_html(a: AnswerText, adult_ok: bool) -> str:
    title = f"<b>{esc(a.title)}</b>"
    return spoiler(title) + ADULT_MARK if a.adult and not adult_ok else title


def _candidate_html(c: CandidateText, adult_ok: bool) -> str:
    prefix = f"{c.rank}. "
    if c.adult and not adult_ok:
        return f"{prefix}{spoiler(esc(c.line, MAX_FIELD + 60))}{ADULT_MARK}"
    return f"{prefix}{esc(c.line, MAX_FIELD + 60)}"


def header_html(a: AnswerText) -> str:
    """The first line: what happened and, for an answer, the one confidence number."""
    if not a.confidence:
        return f"<b>{esc(a.header)}</b>"
    return f"<b>{esc(a.header)}</b> · {esc(a.confidence)}"


def best_block(a: AnswerText, *, adult_ok: bool) -> list[str]:
    """Title, other-language titles, season/episode and time (both times when two moments
    fit) of the best candidate, and the close rivals elsewhere; empty for a no-match."""
    if a.title is None:
        return []
    hide = a.adult and not adult_ok
    lines = [_title_html(a, adult_ok)]
    if a.other_titles:
        shown = esc(" / ".join(a.other_titles), MAX_FIELD * 2)
        lines.append(spoiler(f"<i>{shown}</i>") if hide else f"<i>{shown}</i>")
    lines.append(esc(a.where))
    lines += [f"⚠️ {esc(line, MAX_FIELD + 80)}" for line in a.also]
    return lines


def closest_html(a: AnswerText, *, adult_ok: bool = True) -> str:
    """The closest guesses of a no-match (shown after "Show closest scenes" is pressed)."""
    lines = [f"<b>{esc(a.labels['closest'])}</b>"]
    lines += [_candidate_html(c, adult_ok) for c in a.closest]
    return "\n".join(lines)


def render_answer(rec: Recognition | AnswerText, *, adult_ok: bool = True,
                  hint: bool | None = None, lang: str = "en",
                  title_lang: str | None = None) -> str:
    """The whole answer as Telegram HTML.

    Args:
        rec: the recognition (or its `AnswerText`).
        adult_ok: show adult titles plainly (else behind a spoiler, marked 18+).
        hint: add the one-line feedback hint; default: when votes are offered.
        lang, title_lang: the UI language and the language of series titles.
    """
    a = rec if isinstance(rec, AnswerText) else answer_text(rec, lang=lang, title_lang=title_lang)
    lines = [header_html(a)]
    lines += best_block(a, adult_ok=adult_ok)
    hide = a.adult and not adult_ok
    if a.characters:  # also when no scene matched: the characters may still be known
        chars = esc(a.characters, MAX_FIELD * 2)
        lines.append(f"{esc(a.labels['characters'])}: {spoiler(chars) if hide else chars}")
    if a.synopsis and not hide:
        lines.append(f"<i>{esc(a.synopsis, 300)}</i>")
    if a.candidates:
        lines.append("")
        lines.append(f"<b>{esc(a.labels['top5'])}</b>")
        lines += [_candidate_html(c, adult_ok) for c in a.candidates]
    if a.title is None and not a.closest:
        lines.append(esc(text(a.lang, "no_match.hint")))
    if a.genres:
        lines.append("")
        lines.append(f"{esc(a.labels['looks_like'])}: " + esc(", ".join(a.genres)))
    if hint is None:
        hint = a.hint is not None
    if hint and a.hint:
        lines.append("")
        lines.append(f"<i>{esc(a.hint)}</i>")
    return "\n".join(lines)


def render_short_caption(rec: Recognition | AnswerText, *, adult_ok: bool = True,
                         lang: str = "en", title_lang: str | None = None) -> str:
    """A caption that always fits 1024 characters (header + the best block), used on the
    preview when the full answer is too long and goes in a separate message."""
    a = rec if isinstance(rec, AnswerText) else answer_text(rec, lang=lang, title_lang=title_lang)
    text_ = "\n".join([header_html(a), *best_block(a, adult_ok=adult_ok)])
    return text_ if visible_length(text_) <= MAX_CAPTION else header_html(a)


def characters_caption(rec: Recognition, *, adult_ok: bool = True, lang: str = "en"
                       ) -> str | None:
    """The caption of the named-faces picture: "Characters: <b>Name</b> (Series) · …", or
    None when no face was recognised (all "unknown"). Fits Telegram's caption limit; behind
    a spoiler when the answer's series is withheld here."""
    seen: dict[tuple[str, str | None], None] = {}
    for h in rec.characters:
        if h.name != "unknown":
            seen.setdefault((h.name, h.series), None)
    if not seen:
        return None
    prefix = f"{esc(text(lang, 'characters'))}: "
    parts: list[str] = []
    for name, series in seen:
        part = f"<b>{esc(name)}</b>" + (f" ({esc(series)})" if series else "")
        if visible_length(prefix + " · ".join([*parts, part, "…"])) > MAX_CAPTION:
            parts.append("…")
            break
        parts.append(part)
    body = " · ".join(parts)
    if answer_needs_spoiler(rec, adult_ok=adult_ok):
        body = spoiler(body)
    return prefix + body


def answer_needs_spoiler(rec: Recognition, *, adult_ok: bool) -> bool:
    """Whether the preview media should be sent with `has_spoiler=True`."""
    best = rec.best
    return best is not None and best.series.is_adult and not adult_ok


# -- the feedback keyboard ------------------------------------------------------------------------

def _label(base: str, count: int) -> str:
    return f"{base} {count}" if count else base


def feedback_keyboard(query_id: str, n_candidates: int, tally: FeedbackTally | None = None,
                      links: Sequence[Link] = ()) -> InlineKeyboardMarkup:
    """✅ ❌ on the first row, 1..n (n ≤ 5, only existing candidates) on the second, then the
    AniList / MyAnimeList link buttons.

    With a tally the labels show the votes: "✅ 2", "❌ 1", "2 ·1".
    """
    t = tally or FeedbackTally()
    rows = [[
        InlineKeyboardButton(_label(CORRECT_EMOJI, t.correct),
                             callback_data=encode_feedback(query_id, Verdict.CORRECT)),
        InlineKeyboardButton(_label(WRONG_EMOJI, t.wrong),
                             callback_data=encode_feedback(query_id, Verdict.WRONG)),
    ]]
    n = max(0, min(5, n_candidates))
    if n > 1:  # a single candidate is what ✅ already says
        rows.append([
            InlineKeyboardButton(f"{r} ·{t.picks[r - 1]}" if t.picks[r - 1] else str(r),
                                 callback_data=encode_feedback(query_id, Verdict.PICK, r))
            for r in range(1, n + 1)
        ])
    if links:
        rows.append([InlineKeyboardButton(link.label, url=link.url) for link in links])
    return InlineKeyboardMarkup(rows)


#: The payload of a no-match's "Show closest scenes" button.
CLOSEST_PREFIX = "cl:"


def closest_keyboard(query_id: str, label: str) -> InlineKeyboardMarkup:
    """A no-match's only button: "Show closest scenes" (no votes: nothing was offered)."""
    return InlineKeyboardMarkup([[InlineKeyboardButton(
        label, callback_data=f"{CLOSEST_PREFIX}{query_id}"[:64])]])


def answer_keyboard(a: AnswerText, query_id: str | None) -> InlineKeyboardMarkup | None:
    """The keyboard under an answer: votes and links, the closest-scenes button for a
    no-match with guesses, or just the links when nothing was recorded."""
    if a.title is None:
        return closest_keyboard(query_id, a.labels["show_closest"]) if a.closest and query_id \
            else None
    if query_id and a.votes:
        return feedback_keyboard(query_id, a.votes, links=a.links)
    if a.links:
        return InlineKeyboardMarkup([[InlineKeyboardButton(x.label, url=x.url) for x in a.links]])
    return None


def rank_buttons(markup: InlineKeyboardMarkup | None) -> int:
    """How many rank buttons (1..5) a feedback keyboard has (read back from a message)."""
    if markup is None:
        return 0
    n = 0
    for row in markup.inline_keyboard:
        for b in row:
            data = b.callback_data if isinstance(b.callback_data, str) else ""
            if data.startswith("fb:") and data[-1:].isdigit():
                n += 1
    return n


def link_buttons(markup: InlineKeyboardMarkup | None) -> list[Link]:
    """The link buttons (AniList, MyAnimeList) of a keyboard, read back from a message."""
    if markup is None:
        return []
    return [Link(b.text, b.url) for row in markup.inline_keyboard for b in row if b.url]


# -- operator and help texts -----------------------------------------------------------------------

def help_text(bot_username: str | None, lang: str = "en") -> str:
    """/start and /help, in `lang`."""
    at = f"@{esc(bot_username)}" if bot_username else esc(text(lang, "tg.the_bot"))
    cmd = f"/anime@{esc(bot_username)}" if bot_username else "/anime"
    return text(lang, "tg.help", at=at, cmd=cmd)


def render_stats(stats: Mapping[str, object]) -> str:
    """/stats: the service's numbers as a <pre> block."""
    body = stats_lines(stats)
    return f"<b>AniRec status</b>\n<pre>{html.escape(body, quote=False)}</pre>"


def plain_lines(lines: Iterable[str]) -> str:
    """Join already-plain lines as escaped HTML."""
    return "\n".join(esc(line, MAX_TEXT) for line in lines)
