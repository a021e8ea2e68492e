"""The `anirec` command: the parser, one module per command, and `main`.

`main` reads the settings, builds the `App` (bot/app.py), brings the catalog schema up to
date (so operators never run SQL) and runs the command, turning AniRec's own errors into a
one-line message and an exit code.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable, Sequence

from bot.app import App
from bot.cli import (
    characters,
    demo,
    faces,
    feedback,
    identify,
    index,
    models,
    retrain,
    run,
    sample_library,
    status,
    train,
)
from bot.cli import eval as eval_cmd
from bot.logsafe import redact_in_logs
from core.config import load_settings
from core.errors import AniRecError, NothingToTrain

logger = logging.getLogger("anirec")

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# The commands, in the order `anirec --help` lists them.
COMMANDS: tuple[Register, ...] = (
    sample_library.register, index.register, status.register, identify.register,
    demo.register, train.register, eval_cmd.register, run.register, characters.register,
    faces.register, feedback.register, retrain.register, models.register,
)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("httpx", "alembic", "discord.gateway", "discord.client", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # discord.py warns twice at start that voice needs PyNaCl / davey: AniRec has no voice.
    logging.getLogger("discord.client").addFilter(_NoVoiceWarning())


class _NoVoiceWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anirec", description="AniRec: recognise anime scenes, "
                                "series and characters from your own library.")
    p.add_argument("--log-level", default=None, type=str.upper, choices=LOG_LEVELS,
                   help="override ANIREC_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except AniRecError as exc:
        print(f"anirec: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or settings.log_level)
    for secret in (settings.discord_token, settings.telegram_token, settings.web_admin_token):
        if secret is not None:
            redact_in_logs(secret.get_secret_value())  # never in a log line, at any level
    if not settings.home.is_absolute() and not settings.home.exists():
        print(f"anirec: creating AniRec's home folder {settings.home.resolve()} (relative to the "
              "current folder; set ANIREC_HOME to keep it elsewhere)", file=sys.stderr)
    app = App.from_settings(settings)
    try:
        app.open()  # every command brings the catalog schema up to date first
        return int(args.func(app, args) or 0)
    except KeyboardInterrupt:
        print("anirec: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130
    except NothingToTrain as exc:
        print(f"anirec: {exc}", file=sys.stderr)
        return 1
    except (AniRecError, FileNotFoundError) as exc:
        print(f"anirec: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a file-size limit, a read-only home: the cause, no traceback
        full = exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        print(f"anirec: cannot write{' (the disk is full or a file-size limit was hit)' if full else ''}: "
              f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}. "
              "Nothing half-written was kept; free space and run the same command again.", file=sys.stderr)
        return 2
