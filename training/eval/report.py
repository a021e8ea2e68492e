"""The evaluation's outputs: a plain-text table for the terminal, `report.md` with its PNG
plots, and the result JSON. The report and the table are written from the result JSON's
layout (`EvalResult.to_json()`), so a saved result can be rendered again."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import MissingExtra
from training.eval.judging import TOLERANCES
from training.eval.metrics import COVERAGES, METRICS
from training.eval.queries import CLIP, EVAL_QUERIES
from training.eval.result import EvalResult
from training.eval.run import SYSTEM_LABELS, SYSTEMS

# The result JSON as parsed: nested JSON values (numbers, strings, lists, objects, null).
Doc = Mapping[str, Any]

TIME_TOLERANCE = TOLERANCES.time
STILL_SLACK = TOLERANCES.still_slack
CLIP_SPAN = EVAL_QUERIES.clip_span
COLOURS = {"ours": "#d62728", "colorlayout": "#1f77b4", "phash": "#7f7f7f",
           "untrained_cnn": "#2ca02c"}


def _doc(result: EvalResult | Doc) -> Doc:
    return result.to_json() if isinstance(result, EvalResult) else result


def _systems(result: Doc) -> list[str]:
    return [s for s in SYSTEMS if s in result["systems"]]

def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _x(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def format_table(result: EvalResult | Doc) -> str:
    """A compact plain-text table: episode top-1 per category for every system."""
    return _format_table(_doc(result))


def _format_table(result: Doc) -> str:
    systems = _systems(result)
    short = {"ours": "AniRec", "colorlayout": "ColorLay", "phash": "pHash", "untrained_cnn": "CNN-0"}
    head = f"{'category':22}{'n':>4}" + "".join(f"{short[s]:>10}" for s in systems)
    if "colorlayout" in systems:
        head += f"{'ours/CL':>9}"
    lines = ["episode top-1 per perturbation", head, "-" * len(head)]
    ratios = result.get("ratios_vs_colorlayout", {})
    for c in result["categories"] + ["overall"]:
        row = result["systems"]["ours"]["overall" if c == "overall" else "per_category"]
        row = row if c == "overall" else row[c]
        line = f"{c:22}{row['n']:>4}"
        for s in systems:
            m = result["systems"][s]["overall"] if c == "overall" else result["systems"][s]["per_category"][c]
            line += f"{_pct(m['episode_top1']):>10}"
        if "colorlayout" in systems:
            line += f"{_x(ratios.get(c, {}).get('episode_top1')):>9}"
        lines.append(line)
    o = result["systems"]["ours"]
    ab, lat, cal = o["abstention"], o["latency_ms"], result["calibration"]
    lines.append("")
    lines.append(f"ours overall: series@1 {_pct(o['overall']['series_top1'])} · episode@5 "
                 f"{_pct(o['overall']['episode_top5'])} · time ±2 s {_pct(o['overall']['time_2s'])} "
                 f"· MRR {o['overall']['mrr'] or 0:.3f}")
    lines.append(f"abstention: precision {_pct(ab['precision'])}, recall on out-of-library "
                 f"{_pct(ab['recall'])} ({result['queries']['out_of_library']} queries) · "
                 f"latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms")
    ece = f"ECE {cal['ece']:.3f}"
    if cal.get("calibrated"):
        ece = f"ECE {cal['ece_before']:.3f} → {cal['ece_after']:.3f} (calibration saved to {cal['path']})"
    lines.append(f"{ece} · {result['splits']['setting']}")
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _accuracy_plot(result: Doc, out_dir: Path) -> Path:
    """Episode and series top-1 per category, every system."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    systems = _systems(result)
    colours = COLOURS
    cats = result["categories"] + ["overall"]
    fig = Figure(figsize=(13, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(cats))
    h = 0.8 / len(systems)
    for ax, metric, title in ((axes[0], "episode_top1", "episode top-1"),
                              (axes[1], "series_top1", "series top-1")):
        for k, s in enumerate(systems):
            vals = [(result["systems"][s]["overall"] if c == "overall" else
                     result["systems"][s]["per_category"][c])[metric] or 0.0 for c in cats]
            ax.barh(y + (k - (len(systems) - 1) / 2) * h, vals, height=h, color=colours[s],
                    label=SYSTEM_LABELS[s])
        ax.set_xlim(0, 1)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, cats)
    axes[0].invert_yaxis()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(systems), fontsize=9)
    fig.suptitle(f"Accuracy per perturbation (N={result['queries']['n']}, "
                 f"{result['model']['version']})")
    p = out_dir / "accuracy_per_perturbation.png"
    fig.savefig(p, dpi=110)
    return p


def _coverage_plot(result: Doc, out_dir: Path) -> Path:
    """Coverage vs accuracy, every system."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    systems = _systems(result)
    colours = COLOURS
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for s in systems:
        curve = result["systems"][s]["coverage_accuracy"]
        ax.plot([c["coverage"] for c in curve], [c["accuracy"] for c in curve], marker="o",
                color=colours[s], label=SYSTEM_LABELS[s])
    ax.set_xlabel("coverage (share of in-library queries answered, most confident first)")
    ax.set_ylabel("episode top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Coverage vs accuracy")
    p = out_dir / "coverage_accuracy.png"
    fig.savefig(p, dpi=110)
    return p


def _calibration_plot(result: Doc, out_dir: Path) -> Path:
    """The reliability diagram (before and after, when calibrated)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cal = result["calibration"]
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
    series = [("reliability", "in use" if not cal.get("calibrated") else "after", "#d62728")]
    if cal.get("calibrated"):
        series.append(("reliability_before", "before", "#7f7f7f"))
    for key, label, colour in series:
        pts = [b for b in cal[key] if b["n"]]
        ax.plot([b["confidence"] for b in pts], [b["accuracy"] for b in pts], marker="o",
                color=colour, label=label)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy (episode top-1)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Calibration (reliability)")
    p = out_dir / "calibration.png"
    fig.savefig(p, dpi=110)
    return p


def require_plotting() -> None:
    """Raise `MissingExtra` unless matplotlib (the `train` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra("The evaluation report's plots", "matplotlib", "train") from None


def _plots(result: Doc, out_dir: Path) -> list[Path]:
    require_plotting()
    import matplotlib

    matplotlib.use("Agg")
    return [_accuracy_plot(result, out_dir), _coverage_plot(result, out_dir),
            _calibration_plot(result, out_dir)]


def _header(result: Doc) -> list[str]:
    """Title, queries, library, model, setting, command and machine."""
    md: list[str] = []
    q = result["queries"]
    lib = result["library"]
    md.append(f"# AniRec evaluation — {result['date'][:10]}\n")
    md.append(f"- **Queries**: {q['n']} (seed {result['config']['seed']}): {q['in_library']} "
              f"in-library ({q['per_category'].get(CLIP, 0)} of them GIF clips), "
              f"{q['out_of_library']} out-of-library. Random timestamps, never an indexed frame.")
    params = lib.get("params") or {}
    md.append(f"- **Library**: {lib['series']} series, {lib['episodes']} episodes, "
              f"{lib['video_seconds']} s of video, {lib['indexed_frames']} indexed frames "
              f"(synthetic sample library, seed {lib.get('seed')}, "
              f"{params.get('width')}x{params.get('height')} @ {params.get('fps')} fps).")
    regions = result["index"].get("region_vectors") or 0
    md.append(f"- **Model**: `{result['model']['version']}` · **index** `{result['index']['version']}`"
              + (f" ({result['index']['vectors']} frame vectors + {regions} region vectors)"
                 if regions else ""))
    md.append(f"- **Setting**: {result['splits']['setting']}")
    if result.get("command"):
        md.append(f"- **Command**: `{result['command']}`")
    m = result["machine"]
    md.append(f"- **Machine**: {m['cpu']} ({m['cpu_count']} cores), torch {m['torch']} with "
              f"{m['torch_threads']} thread(s), {m['platform']}; run took {result['wall_seconds']} s.\n")
    return md


def _episodes_section(result: Doc) -> list[str]:
    """Episode top-1 per perturbation, every system."""
    systems, cats, o = _systems(result), result["categories"], result["systems"]["ours"]
    md: list[str] = []
    md.append("## Episode top-1 per perturbation\n")
    header = ["category", "n"] + [SYSTEM_LABELS[s] for s in systems]
    if "colorlayout" in systems:
        header.append("AniRec / ColorLayout")
    rows = []
    ratios = result.get("ratios_vs_colorlayout", {})
    for c in cats + ["overall"]:
        n = o["overall"]["n"] if c == "overall" else o["per_category"][c]["n"]
        row = [f"**{c}**" if c == "overall" else c, str(n)]
        for s in systems:
            mm = result["systems"][s]["overall"] if c == "overall" else result["systems"][s]["per_category"][c]
            row.append(_pct(mm["episode_top1"]))
        if "colorlayout" in systems:
            row.append(_x(ratios.get(c, {}).get("episode_top1")))
        rows.append(row)
    md.append(_md_table(header, rows))
    md.append("\n![accuracy per perturbation](accuracy_per_perturbation.png)\n")
    return md


def _all_metrics_section(result: Doc) -> list[str]:
    """Every metric overall, then per perturbation, per system."""
    systems, cats = _systems(result), result["categories"]
    md: list[str] = []
    md.append("## All metrics, in-library queries\n")
    rows = []
    for s in systems:
        ov = result["systems"][s]["overall"]
        lat = result["systems"][s]["latency_ms"]
        rows.append([SYSTEM_LABELS[s]] + [_pct(ov[k]) for k in METRICS[:-1]]
                    + [f"{ov['mrr']:.3f}" if ov["mrr"] is not None else "–", f"{lat['p50']}"])
    md.append(_md_table(["system", "series@1", "series@5", "episode@1", "episode@5", "time ±2 s",
                         "time ±2 s strict", "MRR", "search p50 ms"], rows))
    md.append("\nBaseline latencies are the flat search only (exact, numpy); AniRec's is the "
              "whole query (decoding the file + recognition).\n")

    for s in systems:
        md.append(f"### {SYSTEM_LABELS[s]} per perturbation\n")
        rows = []
        for c in cats:
            pc = result["systems"][s]["per_category"][c]
            row = [c, str(pc["n"])] + [_pct(pc[k]) for k in METRICS[:-1]] + \
                  [f"{pc['mrr']:.3f}" if pc["mrr"] is not None else "–"]
            if s == "ours":
                row += [_pct(pc.get("abstain_rate")), _pct(pc.get("matched_accuracy"))]
            rows.append(row)
        header = ["category", "n", "series@1", "series@5", "episode@1", "episode@5", "time ±2 s",
                  "strict", "MRR"]
        if s == "ours":
            header += ["abstained", "accuracy when matched"]
        md.append(_md_table(header, rows) + "\n")
    return md


def _abstention_section(result: Doc) -> list[str]:
    """Our abstention (and ColorLayout's at trace.moe's threshold)."""
    o = result["systems"]["ours"]
    md: list[str] = []
    ab = o["abstention"]
    md.append("## Abstention (AniRec)\n")
    md.append("An abstention is an answer whose status is not `match` (`unsure` or `no_match`). "
              "Out-of-library queries should abstain; in-library queries should match and be "
              "right.\n")
    rows = [["AniRec (calibration in use)", str(ab["abstained"]), _pct(ab["precision"]),
             _pct(ab["recall"]), _pct(ab["recall_wrong_in_library"]),
             _pct(ab["in_library_abstain_rate"]), _pct(ab["answered_accuracy"])]]
    if "abstention_before_calibration" in o:
        b = o["abstention_before_calibration"]
        rows.append(["AniRec (before calibration)", str(b["abstained"]), _pct(b["precision"]),
                     _pct(b["recall"]), _pct(b["recall_wrong_in_library"]),
                     _pct(b["in_library_abstain_rate"]), _pct(b["answered_accuracy"])])
    if "colorlayout" in result["systems"]:
        b = result["systems"]["colorlayout"]["abstention_at_0.90"]
        rows.append(["ColorLayout, similarity < 0.90", str(b["abstained"]), _pct(b["precision"]),
                     _pct(b["recall"]), _pct(b["recall_wrong_in_library"]),
                     _pct(b["in_library_abstain_rate"]), _pct(b["answered_accuracy"])])
    md.append(_md_table(["", "abstained", "precision", "recall (out-of-library)",
                         "recall (wrong in-library)", "in-library abstain rate",
                         "accuracy of answered"], rows))
    md.append(f"\nprecision = P(out-of-library or top-1 wrong | abstained); recall = "
              f"P(abstained | out-of-library). Status counts: {o['status_counts']}.\n")
    return md


def _calibration_section(result: Doc) -> list[str]:
    """The calibration in use or fitted, and its error."""
    md: list[str] = []
    cal = result["calibration"]
    md.append("## Calibration\n")
    if cal.get("calibrated"):
        st = cal["set"]
        md.append(f"Fitted on a separate set of {st['n']} queries (seed {st['seed']}; "
                  f"{st['right']} right, {st['wrong']} wrong) and saved to `{cal['path']}`. "
                  f"Expected calibration error (10 bins) on the evaluation queries: "
                  f"**{cal['ece_before']:.3f} before → {cal['ece_after']:.3f} after**.\n")
        a = cal["after"]
        md.append(f"Fitted: bias {a['bias']:.2f}, score {a['w_score']:.2f}, margin "
                  f"{a['w_margin']:.2f}, frames {a['w_frames']:.2f}, colour check "
                  f"{a.get('w_check', 0.0):.2f}, detail check {a.get('w_detail', 0.0):.2f} "
                  f"(a weight that came out negative is refitted at 0).\n")
    else:
        md.append(f"Calibration in use: `{cal['before'].get('fitted_on')}`; expected calibration "
                  f"error (10 bins): **{cal['ece']:.3f}**. Run with `--calibrate` to fit one.\n")
    md.append("![calibration](calibration.png)\n")
    return md


def _coverage_section(result: Doc) -> list[str]:
    """The coverage-vs-accuracy table."""
    systems = _systems(result)
    md: list[str] = []
    md.append("## Coverage vs accuracy\n")
    rows = []
    for i, c in enumerate(COVERAGES):
        row = [f"{c}%"]
        for s in systems:
            curve = result["systems"][s]["coverage_accuracy"]
            row.append(_pct(curve[i]["accuracy"]) if i < len(curve) else "–")
        rows.append(row)
    md.append(_md_table(["coverage"] + [SYSTEM_LABELS[s] for s in systems], rows))
    md.append("\nIn-library queries sorted by the system's own top-1 score (AniRec: calibrated "
              "confidence; baselines: similarity), accuracy = episode top-1.\n")
    md.append("![coverage vs accuracy](coverage_accuracy.png)\n")
    return md


def _latency_section(result: Doc) -> list[str]:
    """Our latency per query."""
    o = result["systems"]["ours"]
    md: list[str] = []
    lat = o["latency_ms"]
    md.append("## Latency (AniRec, per query, model loaded once)\n")
    md.append(f"p50 {lat['p50']} ms · p95 {lat['p95']} ms · p99 {lat['p99']} ms · mean "
              f"{lat['mean']} ms (file decoding alone: p50 {o['load_ms']['p50']} ms).\n")
    return md


def _splits_section(result: Doc) -> list[str]:
    """Held-out vs training episodes, when the model lists them."""
    systems = _systems(result)
    md: list[str] = []
    sp = result["splits"]
    md.append("## Held-out episodes\n")
    if "held_out" in sp:
        md.append(f"{sp['setting']}: {sp['episodes']['held_out']} held-out and "
                  f"{sp['episodes']['train']} training episodes.\n")
        rows = []
        for part in ("held_out", "train"):
            for s in systems:
                ov = sp[part][s]
                rows.append([part, SYSTEM_LABELS[s], str(ov["n"]), _pct(ov["series_top1"]),
                             _pct(ov["episode_top1"]), _pct(ov["time_2s"])])
        md.append(_md_table(["split", "system", "n", "series@1", "episode@1", "time ±2 s"], rows) + "\n")
    else:
        md.append(f"{sp['setting']}: every query comes from an indexed episode the model may "
                  f"have seen; there is no held-out split to report.\n")
    return md


def _how_section(result: Doc) -> list[str]:
    """How the queries are made and judged."""
    md: list[str] = []
    md.append("## How the numbers are made\n")
    md.append(
        "- Queries are decoded from the library videos at uniformly random times whose video "
        "frame is never one of the indexed frames; each gets one perturbation of the suite "
        "(cycled so every perturbation, alone and combined, gets the same number). Clips are "
        f"GIFs of 3–4 frames spanning {CLIP_SPAN:.0f} s (resized, sometimes perturbed). "
        "Out-of-library stills come from series that are in no library, perturbed the same way.\n"
        "- Right episode: the top answer is the episode, or another place showing identical "
        "footage (the series' opening/ending in any episode; recap ↔ source episode); an answer "
        "flagged as opening/ending with the right series is right for a query inside it.\n"
        f"- Time ±2 s: the top answer's time within {TIME_TOLERANCE:.0f} s of the truth at that "
        f"place, or inside a still shot (static camera / title card) that contains the truth "
        f"(±{STILL_SLACK} s); *strict* counts only the ±2 s rule.\n"
        "- MRR over the top 5 by episode. OOL queries are excluded from every accuracy figure.\n"
        "- trace.moe ColorLayout: LIRE's MPEG-7 ColorLayout (21 Y + 6 Cb + 6 Cr quantised "
        "coefficients) of every indexed frame's stored thumbnail, exact L2 neighbours of the "
        "query's first frame, hits merged per episode within ±5 s, similarity (255 − L2)/255, "
        "top-5 without a threshold. pHash: 64-bit DCT hash, Hamming distance, same merging. "
        "Untrained CNN: MobileNetV3-Small with seed-0 weights and re-estimated BatchNorm "
        "statistics, cosine similarity, same merging.\n")
    return md


def write_report(result: EvalResult | Doc, out_dir: Path) -> list[Path]:
    """Write `report.md` and its PNG plots into `out_dir`; return the written paths."""
    doc = _doc(result)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = _plots(doc, out_dir)
    md: list[str] = []
    for section in (_header, _episodes_section, _all_metrics_section, _abstention_section,
                    _calibration_section, _coverage_section, _latency_section, _splits_section,
                    _how_section):
        md += section(doc)
    (out_dir / "report.md").write_text("\n".join(md), encoding="utf-8")
    written.insert(0, out_dir / "report.md")
    return written


def write_json(result: EvalResult | Doc, path: Path) -> None:
    """Write the result atomically (indented, with one line per query)."""
    path = Path(path)
    doc = _doc(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = dict(doc)
    rows = body.pop("per_query", None)
    text = json.dumps(body, indent=1, ensure_ascii=False)
    if rows is not None:
        lines = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows)
        text = text[:-2] + ',\n "per_query": [\n' + lines + "\n ]\n}"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
