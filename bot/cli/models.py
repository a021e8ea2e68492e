"""`anirec models list|rollback`: every trained version (`model_versions`) with its metrics,
and putting the previous one back (a running `anirec run` swaps it in by itself)."""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from bot.app import App
from core.db.models import ModelVersion
from core.errors import NotFound

KINDS = ("adapter", "scene", "series", "faces", "characters")


def _summary(metrics: dict[str, object]) -> str:
    fb, gate = metrics.get("feedback"), metrics.get("gate")
    parts = []
    if isinstance(fb, dict):
        parts.append(f"held-out votes {fb.get('current')} -> {fb.get('candidate')}")
    suite = metrics.get("suite")
    if isinstance(suite, dict):
        c, n = suite.get("current") or {}, suite.get("candidate") or {}
        parts.append(f"suite top-1 {c.get('episode_top1', 0):.3f} -> {n.get('episode_top1', 0):.3f}")
    if isinstance(gate, dict):
        parts.append(str(gate.get("reason")))
    if not parts:
        parts = [f"{k}={v}" for k, v in list(metrics.items())[:4] if not isinstance(v, (dict, list))]
    return "; ".join(parts)


def _list(app: App, args: argparse.Namespace) -> int:
    with app.sessions() as s:
        stmt = select(ModelVersion).order_by(ModelVersion.kind, ModelVersion.created_at, ModelVersion.id)
        if args.kind:
            stmt = stmt.where(ModelVersion.kind == args.kind)
        rows = s.scalars(stmt).all()
        data = [{"kind": r.kind, "version": r.version, "promoted": r.promoted,
                 "created_at": r.created_at.isoformat(timespec="seconds"), "metrics": r.metrics}
                for r in rows]
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    if not data:
        print("no trained versions yet: the built-in defaults are serving")
    for d in data:
        mark = "*" if d["promoted"] else " "
        print(f"{mark} {d['kind']:<10} {d['version']:<40} {d['created_at']}  "
              f"{_summary(dict(d['metrics'] or {}))}")  # type: ignore[call-overload]
    return 0


def _rollback(app: App, args: argparse.Namespace) -> int:
    from training.promote import rollback, rollback_target

    with app.sessions() as s:
        rows = s.scalars(select(ModelVersion).where(ModelVersion.kind == args.kind)).all()
    if args.to is not None and args.to != "default" and args.to not in {r.version for r in rows}:
        raise NotFound(f"No {args.kind} version {args.to!r}; see `anirec models list`.")
    if not any(r.promoted for r in rows) and args.to is None:
        print(f"nothing to roll back: no {args.kind} version is promoted (the default is serving)")
        return 0
    to = (None if args.to == "default" else args.to) if args.to is not None \
        else rollback_target(app.sessions, args.kind)
    rollback(app.sessions, args.kind, to=to)
    print(f"{args.kind}: now serving {to or 'the built-in default'}; a running `anirec run` "
          "swaps it in by itself (or send /reload)")
    return 0


def cmd_models(app: App, args: argparse.Namespace) -> int:
    return int(args.action(app, args))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("models", help="trained versions and their metrics; roll back")
    msub = sp.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = msub.add_parser("list", help="every version with its metrics (* = serving)")
    p.add_argument("--kind", choices=KINDS, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(action=_list)
    p = msub.add_parser("rollback", help="serve the version promoted before the current one")
    p.add_argument("kind", nargs="?", choices=KINDS, default="adapter")
    p.add_argument("--to", default=None, metavar="VERSION",
                   help="a version from `anirec models list`, or 'default' for none")
    p.set_defaults(action=_rollback)
    sp.set_defaults(func=cmd_models)
