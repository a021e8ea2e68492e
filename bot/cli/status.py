"""`anirec status`: what is indexed (series, episodes, frames, index, models, cast)."""

from __future__ import annotations

import argparse
import json

from bot.app import App


def cmd_status(app: App, args: argparse.Namespace) -> int:
    from bot.chat.texts import file_size
    from core.status import library_status

    st = library_status(app.sessions, app.settings.index_dir, app.settings.framestore_dir)
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return 0
    print(f"Home: {app.settings.home.resolve()}")
    print(f"Series: {st['series']}   Episodes: {st['episodes']} ({st['episodes_failed']} failed, "
          f"{st['episodes_pending']} pending)   Frames: {st['frames']}   "
          f"Video: {st['video_hours']:.2f} h")
    idx = st["index"]
    if idx and not idx["count"]:
        print("Index: no episodes indexed (the bot is not ready; run `anirec index LIBRARY` on a "
              "folder of video files)")
    elif idx:
        regions = f" + {idx['region_vectors']} region vectors" if idx.get("region_vectors") else ""
        print(f"Index: {idx['count']} vectors{regions}, {file_size(idx['bytes'])}, version {idx['version']}, "
              f"embedder {idx['embedder']}")
    else:
        print("Index: none yet (run `anirec index LIBRARY`)")
    print(f"Frame store: {file_size(st['framestore_bytes'])}")
    for kind, ver in st["models"].items():
        print(f"Model {kind}: {ver}")
    c = st["cast"]
    print(f"Cast: {c['characters']} characters, {c['references']} reference faces; "
          f"{c['faces_found']} faces found in the library, {c['faces_named']} named")
    for err in st["episode_errors"]:
        print(f"Problem: {err['path']}: {err['error']}")
    for s in st["series_list"]:
        print(f"  {s['title']}: {s['episodes']} episodes, {s['frames']} frames")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("status", help="what is indexed: series, episodes, frames, index, models")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)
