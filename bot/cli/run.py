"""`anirec run`: the bots (and the local web chat) in one process, on one event loop.

- DISCORD_TOKEN set → the Discord bot; TELEGRAM_TOKEN set → the Telegram bot.
- No token at all → the local web chat on 127.0.0.1 (the embedded default); `--web` adds it
  beside the bots.
One RecognitionService is shared by all of them. A platform that fails to start (a revoked
token, no network) is logged and the others keep running; Ctrl-C / SIGTERM stop everything
cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from bot.app import App
from bot.chat.adapter import Launch
from bot.platforms import PLATFORMS

logger = logging.getLogger("anirec.run")


async def _guard(name: str, coro: Awaitable[None], failures: list[str]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # one platform down must not take the others with it
        logger.error("%s stopped: %s", name, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
        failures.append(name)


async def serve(app: App, *, web: bool | None = None, stop: asyncio.Event | None = None,
                ready: Callable[[dict[str, object]], None] | None = None,
                sync_commands: bool = False) -> int:
    """Run every configured front end until `stop` is set (or a signal arrives)."""
    st = app.settings
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    def on_signal(sig: signal.Signals) -> None:
        logger.info("%s received: stopping", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    service = app.service()
    await service.start()
    if not service.ready:
        logger.warning("no index yet: answers will say so until `anirec index LIBRARY` has run "
                       "and an owner sends reload")
    launch = Launch(settings=st, service=service, sessions=app.sessions, sync_commands=sync_commands)
    runners: list[tuple[str, Awaitable[None]]] = []
    info: dict[str, object] = {}
    for adapter in PLATFORMS.build(launch, fallback=web):
        runners.append((adapter.name, adapter.run(stop)))
        if adapter.url is not None:
            info[adapter.name] = adapter.url
            print(f"AniRec {adapter.name} chat: {adapter.url}  (Ctrl-C to stop)", flush=True)
    info["platforms"] = [n for n, _ in runners]
    if ready is not None:
        ready(info)
    failures: list[str] = []
    try:
        async with asyncio.TaskGroup() as tg_:
            for name, coro in runners:
                tg_.create_task(_guard(name, coro, failures))
            tg_.create_task(_stop_when_all_failed(stop, failures, len(runners)))
    finally:
        await service.close()
        logger.info("stopped")
    return 1 if failures and len(failures) == len(runners) else 0


async def _stop_when_all_failed(stop: asyncio.Event, failures: list[str], n: int) -> None:
    while not stop.is_set():
        if n and len(failures) >= n:
            stop.set()
            return
        await asyncio.sleep(0.5)


def cmd_run(app: App, args: argparse.Namespace) -> int:
    app.configure_torch(default=1)  # serving shares the cores: one torch thread
    rc = asyncio.run(serve(app, web=True if args.web else None, sync_commands=args.sync_commands))
    # Everything is closed and flushed by now. The interpreter's own teardown (garbage-
    # collecting torch and the other big modules) takes seconds, and a SIGTERM from a service
    # manager should end the process at once: leave without it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("run", help="run the Discord/Telegram bots (or the local web chat)")
    sp.add_argument("--web", action="store_true", help="also serve the local web chat")
    sp.add_argument("--sync-commands", action="store_true",
                    help="re-register Discord slash commands (done automatically on first run)")
    sp.set_defaults(func=cmd_run)
