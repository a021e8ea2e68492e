"""`anirec feedback stats|export|forget|add|purge`: what people said about the answers.

- `stats`: votes by kind and platform, how often voters disagree, the answers most voted wrong.
- `export FILE`: every stored answer and its votes as JSON lines (hashed ids only).
- `forget --platform P --user ID`: delete that person's votes and the answers they asked for
  (the raw id is hashed the same way the bots hash it).
- `add QUERY_ID --right | --wrong | --pick N | --truth SERIES EPISODE SECONDS`: label an
  answer as the operator (a corrected label for `anirec retrain`).
- `purge`: delete stored query pictures older than ANIREC_QUERY_RETENTION_DAYS.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.app import App
from core.errors import NotFound
from core.types import Verdict


def _stats(app: App, args: argparse.Namespace) -> int:
    from core.feedback_ops import vote_stats

    st = vote_stats(app.feedback_store(), top=args.top)
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"answers stored: {st['queries']} ({st['queries_with_vectors']} with vectors for "
          f"retraining, {st['images_kept']} with the picture kept)")
    print(f"active votes: {st['votes']} on {st['voted_queries']} answers")
    print("  by kind:     " + (", ".join(f"{k} {n}" for k, n in st["by_kind"].items()) or "none"))
    print("  by platform: " + (", ".join(f"{k} {n}" for k, n in st["by_platform"].items()) or "none"))
    print(f"  disagreement: {st['disagreed']} of {st['multi_voted']} answers with several voters "
          f"({100 * st['disagreement']:.0f}%)")
    if st["most_wrong"]:
        print("most voted wrong:")
        for row in st["most_wrong"]:
            print(f"  {row['query_id']}  {row['wrong_votes']} vote(s)")
    return 0


def _export(app: App, args: argparse.Namespace) -> int:
    from core.feedback_ops import export_jsonl

    n = export_jsonl(app.feedback_store(), Path(args.file), with_vectors=not args.no_vectors)
    print(f"exported {n} answer(s) with their votes to {args.file}")
    return 0


def _forget(app: App, args: argparse.Namespace) -> int:
    from core.feedback_ops import forget

    queries, votes = forget(app.feedback_store(), args.platform, args.user)
    print(f"forgot {args.platform} user: {queries} answer(s) they asked for and {votes} vote(s) "
          "of theirs deleted")
    return 0


def _add(app: App, args: argparse.Namespace) -> int:
    from core.feedback_ops import CLI_OPERATOR, find_episode, record_truth

    store = app.feedback_store()
    try:
        q = store.get_query(args.query_id)
    except NotFound:
        raise NotFound(f"No stored answer has the id {args.query_id!r} (see `anirec feedback "
                       "stats` or the operator page); nothing was recorded.") from None
    if args.truth is not None:
        series, episode, seconds = args.truth
        try:
            t = float(seconds)
        except ValueError:
            print(f"anirec: SECONDS must be a number, got {seconds!r}", file=sys.stderr)
            return 2
        eid = find_episode(store, series, episode)
        record_truth(store, args.query_id, CLI_OPERATOR, episode_id=eid, t=t)
        print(f"recorded for {args.query_id}: the footage is {series} episode {episode} at {t:g} s")
        return 0
    n = len(q["top5"])
    if args.pick is not None:
        if not 1 <= args.pick <= n:
            print(f"anirec: answer {args.query_id} has {n} candidate(s); --pick must be 1..{n} "
                  "(or give --truth SERIES EPISODE SECONDS)", file=sys.stderr)
            return 2
        tally = store.record(args.query_id, CLI_OPERATOR, Verdict.PICK, args.pick)
    else:
        tally = store.record(args.query_id, CLI_OPERATOR,
                             Verdict.CORRECT if args.right else Verdict.WRONG)
    print(f"recorded for {args.query_id}: {tally.as_dict()}")
    return 0


def _purge(app: App, args: argparse.Namespace) -> int:
    days = args.days or app.settings.query_retention_days
    n = app.feedback_store().purge_images(days)
    print(f"deleted {n} stored query picture(s) older than {days} day(s); the answers and votes stay")
    return 0


def cmd_feedback(app: App, args: argparse.Namespace) -> int:
    """An unknown answer id, series or episode and an unwritable export path are AniRec
    errors: `main` prints them in one line (exit 2) and nothing was changed."""
    return int(args.action(app, args))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("feedback", help="votes on the answers: stats, export, forget, add, purge")
    fsub = sp.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    p = fsub.add_parser("stats", help="votes by kind and platform, disagreement, most voted wrong")
    p.add_argument("--top", type=int, default=10, help="how many most-wrong answers to list")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(action=_stats)
    p = fsub.add_parser("export", help="every stored answer and its votes as JSON lines")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--no-vectors", action="store_true", help="leave the query vectors out")
    p.set_defaults(action=_export)
    p = fsub.add_parser("forget", help="delete one person's votes and the answers they asked for")
    p.add_argument("--platform", required=True, choices=["discord", "telegram", "web", "cli"])
    p.add_argument("--user", required=True, metavar="ID", help="their raw platform user id")
    p.set_defaults(action=_forget)
    p = fsub.add_parser("add", help="label an answer as the operator")
    p.add_argument("query_id", metavar="QUERY_ID")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--right", action="store_true", help="the top answer is right")
    g.add_argument("--wrong", action="store_true", help="the top answer is wrong")
    g.add_argument("--pick", type=int, metavar="N", help="candidate N (1-5) is right")
    g.add_argument("--truth", nargs=3, metavar=("SERIES", "EPISODE", "SECONDS"),
                   help="the footage is this series' episode at this second")
    p.set_defaults(action=_add)
    p = fsub.add_parser("purge", help="delete stored query pictures past the retention period")
    p.add_argument("--days", type=int, default=None,
                   help="older than this many days (default ANIREC_QUERY_RETENTION_DAYS)")
    p.set_defaults(action=_purge)
    sp.set_defaults(func=cmd_feedback)
