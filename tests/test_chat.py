"""The shared chat package: what a file is, answer memory, per-user locks, owners, and the
platform registry `anirec run` starts from."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.chat.adapter import Launch, Platform, PlatformAdapter, Registry
from bot.chat.media import MediaKind, fetchable_type, media_kind
from bot.chat.state import AnswerMemory, Owners, UserLocks
from bot.platforms import PLATFORMS
from core.config import Settings


def test_media_kinds() -> None:
    assert media_kind("image/png", "x.bin") is MediaKind.IMAGE
    assert media_kind("image/gif; charset=binary", "x") is MediaKind.GIF
    assert media_kind("video/quicktime", "x") is MediaKind.CLIP
    assert media_kind("application/octet-stream", "Shot.JPG") is MediaKind.IMAGE
    assert media_kind("", "clip.webm") is MediaKind.CLIP
    assert media_kind("application/pdf", "a.png") is None
    assert media_kind("image/svg+xml", "a.svg") is None
    assert media_kind("image/svg+xml", "a.svg", svg=True) is MediaKind.IMAGE
    assert fetchable_type("image/svg+xml") and fetchable_type("") and not fetchable_type("text/html")


def test_answer_memory_is_a_bounded_lru() -> None:
    m: AnswerMemory[int, str] = AnswerMemory(2)
    m.put(1, "a")
    m.put(2, "b")
    assert m.get(1) == "a"  # 1 is now the most recent
    m.put(3, "c")
    assert 2 not in m and m.get(1) == "a" and m.get(3) == "c" and len(m) == 2
    m.pop(1)
    assert m.get(1) is None


def test_journal_needs_a_codec(tmp_path: Path) -> None:
    try:
        AnswerMemory(2, tmp_path / "j.jsonl")
    except ValueError:
        return
    raise AssertionError("a journal without a codec was accepted")


async def test_user_locks_and_owners() -> None:
    locks = UserLocks(max_idle=1)
    a = locks(1)
    assert locks(1) is a and locks(2) is not a
    async with a:
        locks(3)  # over max_idle: idle locks go, a held one stays
        assert locks(1) is a
    owners = Owners(["7"])
    assert owners.allows(7) and not owners.allows(8) and not owners.allows(None) and 7 in owners


class _Dummy:
    url: str | None = None

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()


def test_registry_picks_the_configured_platforms_then_the_fallback() -> None:
    reg = Registry()
    reg.register(Platform("a", lambda st: st.discord_token is not None, lambda _: _Dummy("a")))
    reg.register(Platform("w", lambda st: True, lambda _: _Dummy("w"), fallback=True))
    none = Settings(_env_file=None)  # type: ignore[call-arg]
    token = Settings(_env_file=None, discord_token="x")  # type: ignore[call-arg]
    assert [p.name for p in reg.chosen(none)] == ["w"]
    assert [p.name for p in reg.chosen(token)] == ["a"]
    assert [p.name for p in reg.chosen(token, fallback=True)] == ["a", "w"]
    assert [p.name for p in reg.chosen(none, fallback=False)] == []
    adapters: list[PlatformAdapter] = reg.build(
        Launch(settings=token, service=None, sessions=None), fallback=True)  # type: ignore[arg-type]
    assert [a.name for a in adapters] == ["a", "w"]
    try:
        reg.register(Platform("a", lambda st: True, lambda _: _Dummy("a")))
    except ValueError:
        pass
    else:
        raise AssertionError("a platform registered twice")
    assert [p.name for p in PLATFORMS] == ["discord", "telegram", "web"]
