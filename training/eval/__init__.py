"""Evaluation harness: perturbed queries at random times of the indexed library, our recognizer
and three baselines on the same queries, metrics per perturbation, calibration, and a report.

The numbers we steer by (DESIGN.md, "Evaluation"). One run (`evaluate`, in `run.py`):

1. builds N seeded queries (`queries.py`) from the library's own videos at random timestamps
   that are never a stored (indexed) frame: single frames under every perturbation of
   `data.perturb.SUITE` (each alone and the combinations, cycled so each gets ≈ N/|SUITE|
   queries), several-frame GIF clips (category "clip"), and ~10% out-of-library stills that
   should get "not sure";
2. answers each with (a) our `Recognizer`, (b) trace.moe's method (MPEG-7 ColorLayout of every
   indexed frame, exact L2 neighbours of the query's first frame, hits merged per episode within
   ±5 s, similarity (255 - L2)/255), (c) a 64-bit pHash (Hamming), (d) an untrained
   MobileNetV3-Small (cosine) (`baselines.py`). The baselines share one `FlatSearch`;
3. judges every answer (`judging.py`) against the sample library's `ground_truth.json`
   (`truth.py`). Identical footage counts as the same place: a shot of the series'
   opening/ending is right in every episode of the series, and recap footage is right in its
   source episode (and the other way round). An answer flagged as opening/ending with the right
   series is right for a query inside the opening/ending;
4. reports (`metrics.py`, `calibration.py`, `report.py`) series/episode top-1/top-5, timestamp
   within ±2 s, MRR, abstention precision/recall, a coverage-vs-accuracy curve, latency
   percentiles, expected calibration error, and, when the scene model lists its training
   episodes, held-out vs training episodes separately. The result is an `EvalResult`;
   `EvalResult.to_json()` is the result JSON.
"""

from training.eval.baselines import FlatSearch, build_baselines, tracemoe_color_layout
from training.eval.calibration import expected_calibration_error, fit_calibration, reliability
from training.eval.config import EvalConfig
from training.eval.judging import Guess, Judge, Judgement, guesses_of
from training.eval.metrics import METRICS, summarize
from training.eval.queries import (
    CLIP,
    OOL,
    Query,
    bench_queries,
    build_queries,
    categories,
    demo_queries,
    write_query_files,
)
from training.eval.report import format_table, require_plotting, write_json, write_report
from training.eval.result import SCHEMA, EvalResult
from training.eval.run import SYSTEM_LABELS, SYSTEMS, evaluate, split_of
from training.eval.truth import EvalError, Place, Truth, load_truth, places_of, stored_frame_numbers

__all__ = [
    "CLIP", "METRICS", "OOL", "SCHEMA", "SYSTEMS", "SYSTEM_LABELS", "EvalConfig", "EvalError",
    "EvalResult", "FlatSearch", "Guess", "Judge", "Judgement", "Place", "Query", "Truth",
    "bench_queries", "build_baselines", "build_queries", "categories", "demo_queries",
    "evaluate", "expected_calibration_error", "fit_calibration", "format_table", "guesses_of",
    "load_truth", "places_of", "reliability", "require_plotting", "split_of", "stored_frame_numbers",
    "summarize", "tracemoe_color_layout", "write_json", "write_query_files", "write_report",
]
