"""The typed result of `anirec eval`: metrics per system and category, abstention, calibration,
splits and one record per query. `EvalResult.to_json()` is the result JSON
(bench/results/eval_*.json) that the report is written from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from training.eval.calibration import CalibrationReport
from training.eval.config import EvalConfig
from training.eval.metrics import (
    AbstentionStats,
    CategoryMetrics,
    CoveragePoint,
    JSONObject,
    Percentiles,
    Summary,
)

SCHEMA = "anirec-eval/1"


@dataclass(frozen=True)
class OursExtras:
    """What only our recognizer has: statuses, abstention and the file decoding time."""

    abstention: AbstentionStats
    status_counts: Mapping[str, int]  # match / unsure / no_match
    load_ms: Percentiles  # decoding the query file alone
    abstention_before_calibration: AbstentionStats | None = None  # with `--calibrate`


@dataclass(frozen=True)
class SystemMetrics:
    """One system's metrics over the in-library queries."""

    label: str
    overall: Summary
    per_category: Mapping[str, CategoryMetrics]
    coverage_accuracy: tuple[CoveragePoint, ...]
    latency_ms: Percentiles
    # ColorLayout: abstaining below trace.moe's similarity threshold (key, stats)
    threshold_abstention: tuple[str, AbstentionStats] | None = None
    ours: OursExtras | None = None

    def to_json(self) -> JSONObject:
        out: JSONObject = {
            "label": self.label,
            "overall": self.overall.to_json(),
            "per_category": {c: m.to_json() for c, m in self.per_category.items()},
            "coverage_accuracy": [
                {"coverage": p.coverage, "accuracy": p.accuracy, "min_score": p.min_score}
                for p in self.coverage_accuracy],
            "latency_ms": self.latency_ms.to_json(),
        }
        if self.threshold_abstention is not None:
            key, stats = self.threshold_abstention
            out[key] = stats.to_json()
        if self.ours is not None:
            o = self.ours
            out["abstention"] = o.abstention.to_json()
            out["status_counts"] = dict(o.status_counts)
            out["load_ms"] = o.load_ms.to_json()
            if o.abstention_before_calibration is not None:
                out["abstention_before_calibration"] = o.abstention_before_calibration.to_json()
        return out


@dataclass(frozen=True)
class Splits:
    """Held-out honesty: the metrics on held-out and training episodes, when the scene model
    lists its training episodes."""

    setting: str
    episodes: Mapping[str, int] | None = None  # train / held_out episode counts
    parts: Mapping[str, Mapping[str, Summary]] | None = None  # held_out / train → system → summary

    def to_json(self) -> JSONObject:
        out: JSONObject = {"setting": self.setting}
        if self.episodes is not None:
            out["episodes"] = dict(self.episodes)
        for part, by_system in (self.parts or {}).items():
            out[part] = {name: s.to_json() for name, s in by_system.items()}
        return out


@dataclass(frozen=True)
class SystemAnswer:
    """One system's top answer to one query, judged."""

    rank: int
    series: bool
    episode: bool
    time: bool
    score: float | None
    answer_t: float | None
    status: str | None = None  # ours only
    evidence: tuple[float | None, ...] | None = None  # ours: score, margin, agreement, checks

    def to_json(self) -> JSONObject:
        out: JSONObject = {"rank": self.rank, "series": self.series, "episode": self.episode,
                           "time": self.time, "score": self.score, "answer_t": self.answer_t}
        if self.status is not None:
            out["status"] = self.status
        if self.evidence is not None:
            out["evidence"] = list(self.evidence)
        return out


@dataclass(frozen=True)
class QueryRecord:
    """One query and every system's judged answer."""

    id: str
    category: str
    perturbation: str
    episode: str | None
    t: float | None
    segment: str
    answers: Mapping[str, SystemAnswer]

    def to_json(self) -> JSONObject:
        out: JSONObject = {"id": self.id, "category": self.category,
                           "perturbation": self.perturbation, "episode": self.episode,
                           "t": self.t, "segment": self.segment}
        out.update({name: a.to_json() for name, a in self.answers.items()})
        return out


@dataclass(frozen=True)
class LibraryInfo:
    roots: tuple[str, ...]
    params: Mapping[str, object]  # the sample library generator's parameters
    seed: int | None
    series: int
    episodes: int
    video_seconds: float | None
    indexed_frames: int


@dataclass(frozen=True)
class ModelInfo:
    version: str
    embedder: Mapping[str, object]  # the embedder's spec
    trained_on_split: bool
    metrics: Mapping[str, int | float | str | bool]  # the model's own scalar metrics


@dataclass(frozen=True)
class IndexInfo:
    version: str
    vectors: int
    region_vectors: int


@dataclass(frozen=True)
class RunSettings:
    """The run's configuration as it ran (sub-crops resolved) and the judging windows."""

    config: EvalConfig
    subcrops: bool
    time_tolerance_s: float
    merge_window_s: float

    def to_json(self) -> JSONObject:
        c = self.config
        return {"queries": c.queries, "seed": c.seed, "calibrate": c.calibrate,
                "baselines": c.baselines, "search_k": c.search_k,
                "match_threshold": c.match_threshold, "unsure_threshold": c.unsure_threshold,
                "subcrops": self.subcrops, "time_tolerance_s": self.time_tolerance_s,
                "merge_window_s": self.merge_window_s}


@dataclass(frozen=True)
class QueryCounts:
    n: int
    in_library: int
    out_of_library: int
    per_category: Mapping[str, int]


@dataclass(frozen=True)
class EvalResult:
    """Everything one `anirec eval` run measured."""

    date: str  # ISO, UTC
    machine: Mapping[str, object]
    library: LibraryInfo
    model: ModelInfo
    index: IndexInfo
    config: RunSettings
    queries: QueryCounts
    categories: tuple[str, ...]
    systems: Mapping[str, SystemMetrics]  # "ours" first, then the baselines that ran
    ratios_vs_colorlayout: Mapping[str, Mapping[str, float | None]]  # category → metric → ours/CL
    calibration: CalibrationReport
    splits: Splits
    wall_seconds: float | None
    per_query: tuple[QueryRecord, ...]
    command: str | None = None  # the command line that ran it
    schema: str = SCHEMA

    def with_command(self, command: str) -> EvalResult:
        return replace(self, command=command)

    def to_json(self) -> JSONObject:
        """The result JSON (the layout bench/results/eval_*.json and the report read)."""
        lib, model, q = self.library, self.model, self.queries
        out: JSONObject = {
            "schema": self.schema,
            "date": self.date,
            "machine": dict(self.machine),
            "library": {"roots": list(lib.roots), "params": dict(lib.params), "seed": lib.seed,
                        "series": lib.series, "episodes": lib.episodes,
                        "video_seconds": lib.video_seconds, "indexed_frames": lib.indexed_frames},
            "model": {"version": model.version, "embedder": dict(model.embedder),
                      "trained_on_split": model.trained_on_split, "metrics": dict(model.metrics)},
            "index": {"version": self.index.version, "vectors": self.index.vectors,
                      "region_vectors": self.index.region_vectors},
            "config": self.config.to_json(),
            "queries": {"n": q.n, "in_library": q.in_library, "out_of_library": q.out_of_library,
                        "per_category": dict(q.per_category)},
            "categories": list(self.categories),
            "systems": {name: s.to_json() for name, s in self.systems.items()},
            "ratios_vs_colorlayout": {c: dict(r) for c, r in self.ratios_vs_colorlayout.items()},
            "calibration": self.calibration.to_json(),
            "splits": self.splits.to_json(),
            "wall_seconds": self.wall_seconds,
            "per_query": [r.to_json() for r in self.per_query],
        }
        if self.command is not None:
            out["command"] = self.command
        return out
