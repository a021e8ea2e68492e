"""Feedback mapping shared by the chat front ends: button payloads ("fb:<query_id>:<code>"),
reaction emoji → verdict, and the short "thanks" a vote gets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.chat.i18n import text
from core.types import Verdict

# Telegram: InlineKeyboardButton callback_data is at most 64 bytes; Discord custom_id 100 chars.
TELEGRAM_MAX_CALLBACK = 64
DISCORD_MAX_CUSTOM_ID = 100
_PAYLOAD = re.compile(r"^fb:(?P<qid>[A-Za-z0-9_-]{1,40}):(?P<code>ok|no|[1-5])$")

CORRECT_EMOJI = "✅"
WRONG_EMOJI = "❌"
RANK_EMOJI = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣")
FEEDBACK_EMOJI = (CORRECT_EMOJI, WRONG_EMOJI) + RANK_EMOJI


@dataclass(frozen=True)
class FeedbackAction:
    query_id: str
    verdict: Verdict
    rank: int | None = None


def encode_feedback(query_id: str, verdict: Verdict, rank: int | None = None) -> str:
    """"fb:<query_id>:<ok|no|1-5>"; fits both platforms' limits (checked)."""
    code = {Verdict.CORRECT: "ok", Verdict.WRONG: "no"}.get(verdict)
    if verdict is Verdict.PICK:
        if rank is None or not 1 <= rank <= 5:
            raise ValueError("a pick needs a rank 1..5")
        code = str(rank)
    payload = f"fb:{query_id}:{code}"
    if len(payload.encode()) > TELEGRAM_MAX_CALLBACK or len(payload) > DISCORD_MAX_CUSTOM_ID:
        raise ValueError("feedback payload too long")
    if not _PAYLOAD.match(payload):
        raise ValueError(f"bad query id {query_id!r}")
    return payload


def parse_feedback(payload: str | None) -> FeedbackAction | None:
    """The action in a button payload, or None if it is not ours or malformed."""
    if not payload:
        return None
    m = _PAYLOAD.match(payload)
    if m is None:
        return None
    code = m.group("code")
    if code == "ok":
        return FeedbackAction(m.group("qid"), Verdict.CORRECT)
    if code == "no":
        return FeedbackAction(m.group("qid"), Verdict.WRONG)
    return FeedbackAction(m.group("qid"), Verdict.PICK, int(code))


def emoji_feedback(emoji: str) -> tuple[Verdict, int | None] | None:
    """✅ → correct, ❌ → wrong, 1️⃣–5️⃣ → pick n; anything else → None."""
    e = emoji.strip()
    if e == CORRECT_EMOJI:
        return Verdict.CORRECT, None
    if e == WRONG_EMOJI:
        return Verdict.WRONG, None
    for i, r in enumerate(RANK_EMOJI):
        if e == r or e == r.replace("\ufe0f", ""):
            return Verdict.PICK, i + 1
    # Telegram reactions are a fixed set without keycaps: 👍 / 👎 mean right / wrong.
    if e == "👍":
        return Verdict.CORRECT, None
    if e == "👎":
        return Verdict.WRONG, None
    return None


def feedback_toast(verdict: Verdict, rank: int | None = None, withdrawn: bool = False,
                   lang: str | None = None) -> str:
    """The short "thanks" a button press gets (Telegram's answerCallbackQuery text, ≤ 200
    chars, and the web chat's toast), in `lang`."""
    if withdrawn:
        return text(lang, "vote.withdrawn")
    if verdict is Verdict.CORRECT:
        return text(lang, "vote.correct")
    if verdict is Verdict.WRONG:
        return text(lang, "vote.wrong")
    return text(lang, "vote.pick", rank=rank)
