"""`anirec identify FILES...`: recognition from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.app import App
from core.errors import AniRecError
from core.formatting import summary_lines
from core.types import Source

if TYPE_CHECKING:
    from core.service import RecognitionService

CLI_SOURCE = Source(platform="cli", chat_id="local", user_id="operator", allow_adult=True)
CLI_RATE = 1_000_000  # requests a minute: the operator at the command line is not rate limited


def cli_service(app: App) -> RecognitionService:
    """The service the commands use: the bots' one, without the chat rate limits."""
    return app.service(user_rate=CLI_RATE, chat_rate=CLI_RATE)


def cmd_identify(app: App, args: argparse.Namespace) -> int:
    missing = [n for n in args.files if not Path(n).is_file()]
    if missing:  # checked before the models load (that takes seconds)
        for n in missing:
            what = "is a folder" if Path(n).is_dir() else "does not exist"
            print(f"anirec: {n} {what}; give picture, GIF or clip files.", file=sys.stderr)
        return 2
    app.configure_torch(default=1)
    return asyncio.run(_identify(app, args))


async def _identify(app: App, args: argparse.Namespace) -> int:
    service = cli_service(app)
    await service.start()
    rc = 0
    try:
        for name in args.files:
            path = Path(name)
            try:
                data = path.read_bytes()
            except OSError as exc:
                out = {"file": name, "error": f"cannot read: {exc.strerror}"}
                rc = 1
                print(json.dumps(out) if args.json else f"{name}: cannot read ({exc.strerror})")
                continue
            try:
                rec = await service.recognize(data, source=CLI_SOURCE, with_preview=not args.no_preview)
                rec = await service.preview(rec) or rec  # the clip's path in the output
            except AniRecError as exc:
                rc = 1
                print(json.dumps({"file": name, "error": str(exc)}) if args.json
                      else f"{name}: {exc}")
                continue
            if args.json:
                print(json.dumps(rec.to_json(file=name), ensure_ascii=False))
            else:
                print(f"== {name}")
                for line in summary_lines(rec):
                    print("   " + line)
            sys.stdout.flush()
    finally:
        await service.close()
    return rc


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("identify", help="identify images, GIFs or clips")
    sp.add_argument("files", nargs="+", help="image/GIF/clip files")
    sp.add_argument("--json", action="store_true", help="one JSON object per input, per line")
    sp.add_argument("--no-preview", action="store_true", help="skip cutting the preview clip")
    sp.set_defaults(func=cmd_identify)
