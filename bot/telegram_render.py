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
from collections.abc import Iterable, Mapping

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.chat.feedback import CORRECT_EMOJI, WRONG_EMOJI, encode_feedback
from bot.chat.texts import FEEDBACK_HINT, NO_MATCH_WITH_GUESSES, stats_lines
from core.formatting import (
    STATUS_TEXT,
    candidate_line,
    character_text,
    episode_text,
    format_percent,
    other_titles,
    time_range,
)
from core.types import Candidate, FeedbackTally, Recognition, Verdict

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


def _hidden(c: Candidate, adult_ok: bool) -> bool:
    return c.series.is_adult and not adult_ok


def _title_html(c: Candidate, adult_ok: bool) -> str:
    title = f"<b>{esc(c.series.title)}</b>"
    return spoiler(title) + ADULT_MARK if _hidden(c, adult_ok) else title


def _candidate_html(rank: int, c: Candidate, adult_ok: bool) -> str:
    line = candidate_line(rank, c)
    prefix = f"{rank}. "
    body = line[len(prefix):] if line.startswith(prefix) else line
    if _hidden(c, adult_ok):
        return f"{prefix}{spoiler(esc(body, MAX_FIELD + 60))}{ADULT_MARK}"
    return f"{prefix}{esc(body, MAX_FIELD + 60)}"


def header_html(rec: Recognition) -> str:
    """The first line: what happened and how sure AniRec is."""
    if rec.status == "no_match":
        text = NO_MATCH_WITH_GUESSES if rec.candidates else STATUS_TEXT["no_match"]
        return f"<b>{esc(text)}</b>"
    return f"<b>{esc(STATUS_TEXT[rec.status])}</b> · {format_percent(rec.confidence)} confidence"


def best_block(rec: Recognition, *, adult_ok: bool) -> list[str]:
    """Title, other-language titles, season/episode and time of the best candidate (only
    when the answer is a match or an unsure guess)."""
    best = rec.best
    if best is None or rec.status == "no_match":
        return []
    lines = [_title_html(best, adult_ok)]
    others = other_titles(best)
    if others:
        shown = esc(" / ".join(others), MAX_FIELD * 2)
        lines.append(spoiler(f"<i>{shown}</i>") if _hidden(best, adult_ok) else f"<i>{shown}</i>")
    lines.append(f"{esc(episode_text(best))} · {esc(time_range(best))}")
    return lines


def render_answer(rec: Recognition, *, adult_ok: bool = True, hint: bool | None = None) -> str:
    """The whole answer as Telegram HTML.

    Args:
        rec: the recognition.
        adult_ok: show adult titles plainly (else behind a spoiler, marked 18+).
        hint: add the one-line feedback hint; default: when the answer has a query id.
    """
    lines = [header_html(rec)]
    lines += best_block(rec, adult_ok=adult_ok)
    best = rec.best
    if rec.characters:
        chars = esc(character_text(rec.characters), MAX_FIELD * 2)
        if best is not None and _hidden(best, adult_ok):
            chars = spoiler(chars)
        lines.append(f"Characters: {chars}")
    top = rec.candidates[:5]
    if len(top) > 1 or (top and rec.status == "no_match"):
        lines.append("")
        lines.append("<b>Top 5</b>" if len(top) > 1 else "<b>Closest</b>")
        lines += [_candidate_html(i + 1, c, adult_ok) for i, c in enumerate(top)]
    if rec.genres and rec.status != "match":
        lines.append("")
        lines.append("Looks like: " + esc(", ".join(g for g, _ in rec.genres[:3])))
    if hint is None:
        hint = rec.query_id is not None
    if hint:
        lines.append("")
        lines.append(f"<i>{esc(FEEDBACK_HINT)}</i>")
    return "\n".join(lines)


def render_short_caption(rec: Recognition, *, adult_ok: bool = True) -> str:
    """A caption that always fits 1024 characters (header + the best block), used on the
    preview when the full answer is too long and goes in a separate message."""
    text = "\n".join([header_html(rec), *best_block(rec, adult_ok=adult_ok)])
    return text if visible_length(text) <= MAX_CAPTION else header_html(rec)


def characters_caption(rec: Recognition, *, adult_ok: bool = True) -> str | None:
    """The caption of the named-faces picture: "Characters: <b>Name</b> (Series) · …", or
    None when no face was recognised (all "unknown"). Fits Telegram's caption limit; behind
    a spoiler when the answer's series is withheld here."""
    seen: dict[tuple[str, str | None], None] = {}
    for h in rec.characters:
        if h.name != "unknown":
            seen.setdefault((h.name, h.series), None)
    if not seen:
        return None
    prefix = "Characters: "
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
    return best is not None and _hidden(best, adult_ok)


# -- the feedback keyboard ------------------------------------------------------------------------

def _label(base: str, count: int) -> str:
    return f"{base} {count}" if count else base


def feedback_keyboard(query_id: str, n_candidates: int,
                      tally: FeedbackTally | None = None) -> InlineKeyboardMarkup:
    """✅ ❌ on the first row, 1..n (n ≤ 5, only existing candidates) on the second.

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
    return InlineKeyboardMarkup(rows)


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


# -- operator and help texts -----------------------------------------------------------------------

def help_text(bot_username: str | None) -> str:
    """/start and /help."""
    at = f"@{esc(bot_username)}" if bot_username else "the bot"
    cmd = f"/anime@{esc(bot_username)}" if bot_username else "/anime"
    return "\n".join([
        "<b>AniRec</b> finds the anime, episode and moment a picture comes from.",
        "",
        "Send me a screenshot, GIF, sticker or short clip (as a photo, video or file).",
        "I answer with the series, episode and timestamp, a preview of the scene, "
        "how sure I am, and the top 5 guesses.",
        "",
        "<b>In groups</b>: put /anime (or mention " + at + ") in the caption, or reply to a "
        "picture with /anime or " + cmd + ". Admins can make me answer every picture with "
        "/autoanswer on.",
        "",
        "<b>Feedback</b>: tap ✅ if I was right, ❌ if not, or the number of the right "
        "candidate. A 👍 or 👎 reaction on my answer counts too. It makes me better.",
    ])


def render_stats(stats: Mapping[str, object]) -> str:
    """/stats: the service's numbers as a <pre> block."""
    body = stats_lines(stats)
    return f"<b>AniRec status</b>\n<pre>{html.escape(body, quote=False)}</pre>"


def plain_lines(lines: Iterable[str]) -> str:
    """Join already-plain lines as escaped HTML."""
    return "\n".join(esc(line, MAX_TEXT) for line in lines)
