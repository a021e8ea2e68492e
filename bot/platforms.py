"""The chat platforms `anirec run` can start: one registration each (adding a platform means
an adapter module, its renderer, and one `PLATFORMS.register` line here)."""

from __future__ import annotations

import os

from bot.chat.adapter import Launch, Platform, PlatformAdapter, Registry
from core.config import Settings


def _discord_on(settings: Settings) -> bool:
    return settings.discord_token is not None


def _telegram_on(settings: Settings) -> bool:
    return settings.telegram_token is not None


def _web_on(settings: Settings) -> bool:
    return True


def _discord(launch: Launch) -> PlatformAdapter:
    from bot.discord_adapter import DiscordAdapter

    return DiscordAdapter.from_launch(launch)


def _telegram(launch: Launch) -> PlatformAdapter:
    os.environ.setdefault("PTB_TIMEDELTA", "true")  # read when telegram is first imported
    from bot.telegram_adapter import TelegramAdapter

    return TelegramAdapter.from_launch(launch)


def _web(launch: Launch) -> PlatformAdapter:
    from bot.web import WebAdapter

    return WebAdapter.from_launch(launch)


PLATFORMS = Registry()
PLATFORMS.register(Platform("discord", _discord_on, _discord))
PLATFORMS.register(Platform("telegram", _telegram_on, _telegram))
PLATFORMS.register(Platform("web", _web_on, _web, fallback=True))
