"""When does the crop stage run, and when does it change the answer? (issue #21 item 1)

On the evaluation's own queries (`anirec eval --queries N --seed S`: the same seeded queries),
each query is taken through the pipeline up to the crop stage once, then answered three ways
from the same whole-frame hits: with the crop stage as it was before the gate's early exit
(`full`), without it (`skip`), and with the stage as the recogniser runs it now (`gated`).
Per query: whether the stage ran, what the evidence before it was (best whole-frame score,
margin to the runner-up, the colour check of the best whole-frame hit at full width), and
whether the answer (top episode, its time, the status; the top 5 episodes) differs.

    python -m bench.bench_gate HOME [--queries 1200] [--seed 0] [--out FILE.json]

Writes one JSON with the machine, date and load average, the per-query rows and a summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def _answer_key(rec: Any) -> dict[str, Any]:
    top = rec.candidates[0] if rec.candidates else None
    return {"ep": top.episode_id if top else None,
            "t": round(top.time, 2) if top else None,
            "status": rec.status, "conf": round(float(rec.confidence), 4),
            "top5": [c.episode_id for c in rec.candidates[:5]],
            "evidence": [round(float(x), 4) for x in rec.evidence]}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same top answer: episode, time, status (the lower candidates may differ)."""
    return all(a[k] == b[k] for k in ("ep", "t", "status"))


def run(home: Path, n: int, seed: int, partial: Path | None = None) -> dict[str, Any]:
    from bot.app import App
    from core.config import Settings
    from core.recognition import build_recognizer, regions
    from core.recognition.candidates import group, search, verify
    from core.recognition.pipeline import Query
    from core.recognition.resolution import working_views
    from core.sysinfo import machine_info
    from training.eval.queries import build_queries
    from training.eval.truth import load_truth, stored_frame_numbers

    app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    app.configure_torch(default=1)
    st = app.settings
    rec = build_recognizer(app.sessions, index_dir=st.index_dir, models_dir=st.models_dir,
                           search_k=st.search_k, match_threshold=st.match_threshold,
                           unsure_threshold=st.unsure_threshold, num_threads=1,
                           subcrops=st.subcrops)
    truth = load_truth(app.sessions, rec.catalog, None)
    queries = build_queries(truth, stored_frame_numbers(rec.catalog, truth), n=n, seed=seed)
    from core.media import load_media

    p = rec.params
    rp = p.regions
    full_p = replace(rp, early=False)  # the stage as it was
    # exits whenever it can
    always_p = replace(rp, early_fit=-1.0, early_check=-1.0, early_margin=-1.0, early_score=-1.0)
    reg = getattr(rec.index, "regions", None)
    rows = []
    for qi, query in enumerate(queries):
        media = load_media(query.data)
        views = working_views(media.frames)
        vecs, owner, tinies = rec.embed_views(media, views)
        found = search(rec.index, vecs, min(rec.search_k, len(rec.index)))
        hits = group(rec.catalog, media, found, owner, p.group)
        hits = verify(hits, rec.catalog, rec.index, vecs, owner, tinies, media, p.verify)
        s1 = hits[0].score if hits else 0.0
        second = next((h.score for h in hits[1:] if h.ep != hits[0].ep
                       or abs(h.anchor_t - hits[0].anchor_t) > rp.same), 0.0)
        row: dict[str, Any] = {"id": query.qid, "category": query.category,
                               "perturbation": query.perturbation, "s1": round(s1, 4),
                               "margin": round(s1 - second, 4),
                               "views": [v.kind for fv in views for v in fv],
                               "ran": bool(hits) and s1 < rp.gate and reg is not None}
        answers = {}
        # the gated stage first: where it searched, it is the full stage (the same steps)
        for name, params in (("gated", rp), ("full", full_p), ("always", always_p), ("skip", None)):
            if name == "full" and row.get("searched_gated"):
                answers["full"], row["ms_full"], row["searched_full"] = answers["gated"], row["ms_gated"], True
                continue
            q = Query(media, views, vecs, list(owner), list(tinies), {}, time.perf_counter(), raw=vecs)
            t0 = time.perf_counter()
            h = hits
            if params is not None:
                got = regions.crops(hits, reg, rec.embedder, rec.catalog, media, views, vecs, owner,
                                    rec.search_k, rec.subcrops, rec.thumbnails, q.templates, params,
                                    p.group, p.check, q.timings)
                h = got if got is not None else hits
                row[f"searched_{name}"] = "crop_search" in q.timings
            row[f"ms_{name}"] = round((time.perf_counter() - t0) * 1000, 1)
            answers[name] = _answer_key(rec._answer(q, h))
        if row["ran"] and not hits[0].region:
            got = regions.whole_frame(hits[0], views, rec.catalog, rec.thumbnails, {}, rp, p.check)
            if got is not None:
                top, fit = got
                row["fit"] = round(fit, 4)
                row["check"] = round(top.checked.colour, 4) if top.checked and top.checked.colour is not None else None
        row.update(answers)
        row["skip_changes"] = not _same(answers["full"], answers["skip"])
        row["gated_changes"] = not _same(answers["full"], answers["gated"])
        row["always_changes"] = not _same(answers["full"], answers["always"])
        rows.append(row)
        if (qi + 1) % 100 == 0:
            print(f"{qi + 1}/{len(queries)}", flush=True)
            if partial is not None:
                partial.write_text(json.dumps(rows) + "\n")
    ran = [r for r in rows if r["ran"]]
    by_cat: dict[str, dict[str, int]] = {}
    for r in rows:
        c = by_cat.setdefault(r["category"], {"n": 0, "ran": 0, "changed_by_stage": 0,
                                              "searched_gated": 0, "gated_changes": 0})
        c["n"] += 1
        c["ran"] += r["ran"]
        c["changed_by_stage"] += r["skip_changes"]
        c["searched_gated"] += r.get("searched_gated", False)
        c["gated_changes"] += r["gated_changes"]
    return {
        "benchmark": "bench_gate", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "load_average": os.getloadavg(), "home": str(home),
        "queries": len(rows), "seed": seed, "gate": rp.gate,
        "summary": {"ran_crop_stage": len(ran),
                    "answer_changed_by_stage": sum(r["skip_changes"] for r in rows),
                    "searched_gated": sum(r.get("searched_gated", False) for r in rows),
                    "gated_differs_from_full": sum(r["gated_changes"] for r in rows),
                    "ms_full_p50": float(np.median([r["ms_full"] for r in ran])) if ran else 0.0,
                    "ms_gated_p50": float(np.median([r["ms_gated"] for r in ran])) if ran else 0.0,
                    "per_category": by_cat},
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("home")
    ap.add_argument("--queries", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = run(Path(args.home), args.queries, args.seed,
              Path(args.out).with_suffix(".partial.json") if args.out else None)
    print(json.dumps(out["summary"], indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
