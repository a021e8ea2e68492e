"""The adapter contract: a chat platform is an object with a `name` that `run`s until a stop
event is set, built from one `Launch` (settings, the shared service, the catalog). A
`Registry` holds the platforms `anirec run` knows, in start order, and picks the ones the
settings turn on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.service import RecognitionService


class PlatformAdapter(Protocol):
    """One chat front end over the shared `RecognitionService`."""

    #: Short platform name ("discord", "telegram", "web"), used in logs and `Source.platform`.
    name: str
    #: Where people reach it when it is a page (the web chat), else None.
    url: str | None

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, answer until `stop` is set, then disconnect cleanly. Raises when the
        platform cannot start (a revoked token, no network) or fails while running."""
        ...


@dataclass(frozen=True)
class Launch:
    """What every adapter is built from."""

    settings: Settings
    service: RecognitionService
    sessions: sessionmaker[Session]
    #: Discord: re-register the slash commands even when they were synced before.
    sync_commands: bool = False


@dataclass(frozen=True)
class Platform:
    """One registration: how to tell whether a platform is configured, and how to build it."""

    name: str
    #: Whether the settings turn the platform on (a token is set, ...).
    configured: Callable[[Settings], bool]
    #: Builds the adapter (imports the platform's library only when it is used).
    build: Callable[[Launch], PlatformAdapter]
    #: A fallback runs when asked for, or when no other platform is configured.
    fallback: bool = False


class Registry:
    """The platforms `anirec run` can start, in start order."""

    def __init__(self) -> None:
        self._platforms: dict[str, Platform] = {}

    def register(self, platform: Platform) -> Platform:
        if platform.name in self._platforms:
            raise ValueError(f"platform {platform.name!r} is registered twice")
        self._platforms[platform.name] = platform
        return platform

    def __iter__(self) -> Iterator[Platform]:
        return iter(self._platforms.values())

    def chosen(self, settings: Settings, *, fallback: bool | None = None) -> list[Platform]:
        """The configured platforms, plus the fallbacks when `fallback` is True, or when it is
        None and nothing else is configured."""
        out = [p for p in self if not p.fallback and p.configured(settings)]
        if fallback or (fallback is None and not out):
            out += [p for p in self if p.fallback]
        return out

    def build(self, launch: Launch, *, fallback: bool | None = None) -> list[PlatformAdapter]:
        """The adapters the settings turn on, built and ready to `run`."""
        return [p.build(launch) for p in self.chosen(launch.settings, fallback=fallback)]
