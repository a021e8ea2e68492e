"""Discord components under an answer: ✅ ❌ and 1–n vote buttons, AniList / MyAnimeList
link buttons, and a no-match's "Show closest scenes" button.

The buttons carry their meaning in their custom ids (`fb:<query_id>:<ok|no|1-5>` from
`bot.chat.feedback`, `cl:<query_id>`), so they keep working after a restart: the cog's
`on_interaction` listener (`bot.discord_prefs.PrefsCog`) reads them; the views themselves
have no callbacks.
"""

from __future__ import annotations

import discord

from bot.chat.answer import AnswerText
from bot.chat.feedback import CORRECT_EMOJI, WRONG_EMOJI, encode_feedback
from bot.chat.i18n import text
from core.types import FeedbackTally, Verdict

CLOSEST_PREFIX = "cl:"
PICK_PREFIX = "pk:"


def _count(base: str, n: int) -> str:
    return f"{base} {n}" if n else base


def vote_view(query_id: str, n: int, tally: FeedbackTally | None = None,
              links: tuple[tuple[str, str], ...] = ()) -> discord.ui.View:
    """✅ ❌ on the first row, 1..n (n ≥ 2) on the second, the link buttons on the third."""
    t = tally or FeedbackTally()
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label=_count("", t.correct).strip() or None, emoji=CORRECT_EMOJI,
                                    style=discord.ButtonStyle.success, row=0,
                                    custom_id=encode_feedback(query_id, Verdict.CORRECT)))
    view.add_item(discord.ui.Button(label=_count("", t.wrong).strip() or None, emoji=WRONG_EMOJI,
                                    style=discord.ButtonStyle.danger, row=0,
                                    custom_id=encode_feedback(query_id, Verdict.WRONG)))
    if n > 1:
        for r in range(1, min(5, n) + 1):
            label = f"{r} ·{t.picks[r - 1]}" if t.picks[r - 1] else str(r)
            view.add_item(discord.ui.Button(label=label, style=discord.ButtonStyle.secondary,
                                            row=1, custom_id=encode_feedback(query_id, Verdict.PICK, r)))
    for label, url in links:
        view.add_item(discord.ui.Button(label=label, url=url, style=discord.ButtonStyle.link, row=2))
    return view


def answer_components(a: AnswerText, query_id: str | None) -> discord.ui.View | None:
    """The buttons under an answer (None when there is nothing to press)."""
    links = tuple((x.label, x.url) for x in a.links)
    if a.title is None:
        if not (a.closest and query_id):
            return None
        view = discord.ui.View(timeout=None)
        view.add_item(discord.ui.Button(label=a.labels["show_closest"][:80],
                                        style=discord.ButtonStyle.secondary,
                                        custom_id=f"{CLOSEST_PREFIX}{query_id}"))
        return view
    if query_id and a.votes:
        return vote_view(query_id, a.votes, links=links)
    if links:
        view = discord.ui.View(timeout=None)
        for label, url in links:
            view.add_item(discord.ui.Button(label=label, url=url, style=discord.ButtonStyle.link))
        return view
    return None


def links_of(message: discord.Message | None) -> tuple[tuple[str, str], ...]:
    """The link buttons of an answer, read back (to keep them when the tally changes)."""
    if message is None:
        return ()
    out = []
    for row in message.components:
        for item in getattr(row, "children", []):
            url = getattr(item, "url", None)
            if url:
                out.append((str(getattr(item, "label", "") or url), str(url)))
    return tuple(out)


def ranks_of(message: discord.Message | None) -> int:
    """How many 1..n vote buttons an answer has."""
    if message is None:
        return 0
    n = 0
    for row in message.components:
        for item in getattr(row, "children", []):
            cid = getattr(item, "custom_id", None) or ""
            if cid.startswith("fb:") and cid[-1:].isdigit():
                n += 1
    return n


def picker_view(token: str, names: list[str], lang: str = "en") -> discord.ui.View:
    """A select menu of the pictures not answered yet ("pk:<token>", values = their index)."""
    view = discord.ui.View(timeout=None)
    options = [discord.SelectOption(label=(name or text(lang, "picker.item", n=i + 2))[:100],
                                    value=str(i))
               for i, name in enumerate(names[:25])]
    view.add_item(discord.ui.Select(custom_id=f"{PICK_PREFIX}{token}", options=options,
                                    placeholder=text(lang, "picker.placeholder")[:150]))
    return view
