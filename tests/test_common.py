"""Shared adapter helpers: feedback payloads round-trip and fit both platforms' limits."""

from __future__ import annotations

import pytest

from bot.chat.feedback import RANK_EMOJI, emoji_feedback, encode_feedback, parse_feedback
from bot.chat.texts import user_error_text
from core.errors import Busy, InvalidMedia
from core.types import Verdict


@pytest.mark.parametrize("verdict,rank", [(Verdict.CORRECT, None), (Verdict.WRONG, None)]
                         + [(Verdict.PICK, r) for r in range(1, 6)])
def test_round_trip(verdict: Verdict, rank: int | None) -> None:
    p = encode_feedback("AbC-12_xyz9Q", verdict, rank)
    assert len(p.encode()) <= 64
    a = parse_feedback(p)
    assert a is not None and (a.query_id, a.verdict, a.rank) == ("AbC-12_xyz9Q", verdict, rank)


@pytest.mark.parametrize("bad", [None, "", "fb:", "fb:abc", "fb:abc:6", "fb:a b:ok", "xx:abc:ok",
                                 "fb:" + "a" * 80 + ":ok", "fb:abc:ok:extra"])
def test_parse_rejects(bad: str | None) -> None:
    assert parse_feedback(bad) is None


def test_encode_rejects() -> None:
    with pytest.raises(ValueError):
        encode_feedback("x" * 70, Verdict.CORRECT)
    with pytest.raises(ValueError):
        encode_feedback("abc", Verdict.PICK, 9)


def test_emoji() -> None:
    assert emoji_feedback("✅") == (Verdict.CORRECT, None)
    assert emoji_feedback("❌") == (Verdict.WRONG, None)
    assert [emoji_feedback(e) for e in RANK_EMOJI] == [(Verdict.PICK, i) for i in range(1, 6)]
    assert emoji_feedback("🎉") is None


def test_error_texts_are_safe() -> None:
    assert "busy" in user_error_text(Busy(3))
    assert user_error_text(InvalidMedia()) .startswith("I could not")
    assert "/" not in user_error_text(RuntimeError("/etc/passwd exploded"))
