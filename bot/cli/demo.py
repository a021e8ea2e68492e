"""`anirec demo`: sample library → index → (train) → identify perturbed screenshots, then
optionally the local web chat over them."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bot.app import App
from bot.cli.identify import CLI_SOURCE, cli_service
from core.formatting import format_timestamp

if TYPE_CHECKING:
    from training.eval.queries import Query


# ----------------------------------------------------------------------------------------------
def make_demo_queries(library: Path, out_dir: Path, *, n: int, seed: int = 7) -> list[tuple[Path, Query]]:
    """Perturbed screenshots (and a few GIFs) at random times of the sample library, with truth,
    written to `out_dir`."""
    from training.eval.queries import demo_queries, write_query_files

    return write_query_files(demo_queries(library, n=n, seed=seed), out_dir)


def cmd_demo(app: App, args: argparse.Namespace) -> int:
    from bot.cli.progress import TqdmProgress
    from data.synth import generate_library

    app.configure_torch()
    st = app.settings
    library = Path(args.library) if args.library else st.home / "sample-library"
    t_all = time.perf_counter()
    print(f"[1/4] Sample library in {library}")
    if not (library / "ground_truth.json").exists():
        generate_library(library, series=args.series, episodes=args.episodes, seconds=args.seconds,
                         seed=0, progress=lambda label, d, n: print(f"      wrote {d}/{n}: {label}"))
    print("[2/4] Indexing (incremental: unchanged episodes are skipped)")
    rep = app.indexer(progress=TqdmProgress()).run(library)
    print(f"      {len(rep.added)} added, {rep.unchanged} unchanged, {rep.index_count} frames; "
          + (f"{rep.speed:.1f}x real time" if rep.video_seconds else "nothing new to index"))
    print("[3/4] Models: " + _train_step(app, args.train_steps))
    if args.characters:
        print("      Characters: " + _characters_step(app, library))
    print(f"[4/4] Identifying {args.queries} perturbed screenshots and clips")
    queries = make_demo_queries(library, st.home / "demo-queries", n=args.queries)
    results = asyncio.run(_run_demo(app, queries))
    print(f"\nDone in {time.perf_counter() - t_all:.0f} s. Try your own: anirec identify "
          f"{st.home / 'demo-queries'}/q00-*.jpg, or `anirec run` for the local web chat.")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    serve_after = args.serve if args.serve is not None else interactive
    if serve_after:  # a person at a terminal: go on to the local web chat with these screenshots
        from bot.cli.run import serve

        app.configure_torch(default=1)
        return asyncio.run(serve(app, web=True))
    return 0 if results else 1


def _train_step(app: App, steps: int) -> str:
    """The demo's training step: train a small scene model once (skipped when one exists)."""
    from bot.cli.progress import TrainBars
    from core.models.registry import promoted
    from training.promote import train_scene

    mv = promoted(app.sessions, "scene")
    if mv is not None:
        return f"using trained scene model {mv.version}"
    if steps <= 0:
        return "training skipped (--train-steps 0); using the default embedder"
    res = train_scene(app.sessions, app.framestore(), app.settings.models_dir,
                      lambda model: app.indexer(embedder=model), steps=steps, holdout_every=0,
                      resume=True, arch="hybrid-mobilenet_v3_small", weights=None,
                      progress=TrainBars())
    state = "promoted" if res.promoted else "kept the default (not better)"
    return (f"trained {res.version} in {res.train_seconds:.0f} s: check top-1 "
            f"{res.gate.new_top1:.2f} vs default {res.gate.current_top1:.2f} → {state}")


def _characters_step(app: App, library: Path) -> str:
    """Train the face detector and character embedder once, then give every character of the
    sample library its one reference image (`anirec characters add`), so answers name them."""
    from PIL import Image

    from bot.cli.progress import TrainBars
    from core.models.colours import naming_embedder
    from core.models.registry import load_character_embedder, load_face_detector, promoted
    from data import cast
    from training.facedata import read_labels, references
    from training.promote import labels_path, train_characters, train_faces

    notes = []
    models = app.settings.models_dir
    lf = labels_path(app.sessions, str(library / "ground_truth.json"))
    if promoted(app.sessions, "faces") is None:
        f = train_faces(app.sessions, models, labels_file=lf, steps=None, holdout_every=3,
                        resume=True, progress=TrainBars())
        notes.append(f"face detector P {f.precision:.2f} / R {f.recall:.2f}")
    if promoted(app.sessions, "characters") is None:
        c = train_characters(app.sessions, models, labels_file=lf, steps=400, holdout_every=3,
                             resume=True, supervision="names", progress=TrainBars())
        notes.append(f"character embedder in {c.train_seconds:.0f} s")
    detector = load_face_detector(app.sessions, models)
    base = load_character_embedder(app.sessions, models)
    embedder = naming_embedder(base) if base is not None else None  # stored for the bot's naming descriptor
    known = {(r["series"], r["name"]) for r in cast.list_cast(app.sessions)}
    added = 0
    for series, members in references(library, read_labels(lf)).items():
        for name, path in members.items():
            if (series, name) in known:
                continue
            with Image.open(path) as im:
                cast.add_references(app.sessions, app.settings.home.resolve(), series, name,
                                    [(path.name, im.convert("RGB"))], detector=detector, embedder=embedder)
            added += 1
    notes.append(f"{added} characters added from one reference image each"
                 if added else "cast already in the catalog")
    return "; ".join(notes)


async def _run_demo(app: App, queries: list[tuple[Path, Query]]) -> dict[str, float]:
    from training.eval.judging import Judge, Judgement, guesses_of

    service = cli_service(app)
    await service.start()
    rows, lat = [], []
    hits = {"series": 0, "episode": 0, "time": 0}
    try:
        judge = Judge(service._recognizer.catalog) if service._recognizer else None
        print(f"{'query':34} {'truth':30} {'answer':36} {'conf':>5} ok")
        for file, q in queries:
            rec = await service.recognize(file.read_bytes(), source=CLI_SOURCE, with_preview=False)
            j = judge(q, guesses_of(rec)) if judge else Judgement()
            ok = {"series": j.series_top1, "episode": j.episode_top1, "time": j.time_2s_strict}
            for k in hits:
                hits[k] += ok[k]
            lat.append(rec.timings_ms.get("total", 0.0))
            top = rec.best
            truth = f"{(q.series or '')[:16]} ep{q.episode_number} {format_timestamp(q.t or 0.0)}"
            ans = (f"{top.series.title[:16]} {top.episode_label} {format_timestamp(top.time)}"
                   + (" OP" if top.is_opening_or_ending else "")) if top else "-"
            mark = "✔" if ok["episode"] and ok["time"] else ("~" if ok["series"] else "✘")
            rows.append(mark)
            print(f"{file.name[:34]:34} {truth:30} {ans:36} {rec.confidence:5.2f} {mark}")
            if rec.characters:
                print(" " * 35 + "characters: " + ", ".join(h.name for h in rec.characters))
    finally:
        await service.close()
    n = max(1, len(queries))
    summary = {k: v / n for k, v in hits.items()}
    p = np.percentile(lat, [50, 95]) if lat else [0, 0]
    print(f"\nseries top-1 {summary['series']:.0%} · episode top-1 {summary['episode']:.0%} · "
          f"time ±2 s {summary['time']:.0%} · latency p50 {p[0]:.0f} ms, p95 {p[1]:.0f} ms")
    return summary


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("demo", help="sample library → index → identify perturbed screenshots")
    sp.add_argument("--library", default=None, help="use this library instead of the sample one")
    sp.add_argument("--series", type=int, default=4)
    sp.add_argument("--episodes", type=int, default=3)
    sp.add_argument("--seconds", type=float, default=30.0)
    sp.add_argument("--queries", type=int, default=24)
    sp.add_argument("--train-steps", type=int, default=0,
                    help="also train a scene model for N steps (default 0: the trained model does "
                         "not yet beat the default embedder on CPU-sized runs)")
    sp.add_argument("--characters", action="store_true",
                    help="also train the face detector and character embedder (~10 min here) and "
                         "name the sample cast from one reference image each")
    sp.add_argument("--serve", action=argparse.BooleanOptionalAction, default=None,
                    help="afterwards, serve the local web chat with the demo's screenshots "
                         "(default: yes at an interactive terminal, no otherwise)")
    sp.set_defaults(func=cmd_demo)
