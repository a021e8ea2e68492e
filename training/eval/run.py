"""One `anirec eval` run: the calibration set (with `--calibrate`), the evaluation queries,
our recognizer and the baselines on them, judging, and the typed `EvalResult`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from core.framestore import FrameStore
from core.media import Media, load_media
from core.recognition import Calibration, Recognizer, build_recognizer, features_of
from training.eval.baselines import BASELINE_PARAMS, build_baselines
from training.eval.calibration import (
    CALIBRATION,
    CalibrationFit,
    CalibrationReport,
    expected_calibration_error,
    fit_calibration,
    reliability,
)
from training.eval.config import EvalConfig
from training.eval.judging import TOLERANCES, Guess, Judge, Judgement, guesses_of
from training.eval.metrics import (
    Abstaining,
    CategoryMetrics,
    abstention,
    coverage_curve,
    percentiles,
    ratio,
    rnd,
    summarize,
)
from training.eval.queries import OOL, Progress, Query, build_queries, categories
from training.eval.result import (
    EvalResult,
    IndexInfo,
    LibraryInfo,
    ModelInfo,
    OursExtras,
    QueryCounts,
    QueryRecord,
    RunSettings,
    Splits,
    SystemAnswer,
    SystemMetrics,
)
from training.eval.truth import Truth, load_truth, stored_frame_numbers

if TYPE_CHECKING:
    from core.index.milvus import MilvusConfig

DEFAULT_CONFIG = EvalConfig()
SYSTEMS = ("ours", "colorlayout", "phash", "untrained_cnn")
SYSTEM_LABELS = {
    "ours": "AniRec",
    "colorlayout": "trace.moe ColorLayout",
    "phash": "pHash",
    "untrained_cnn": "untrained MobileNetV3-S",
}


@dataclass
class SystemRun:
    """A system's answers to all queries (aligned with the query list)."""

    name: str
    guesses: list[list[Guess]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # the top-1 score/confidence
    latency_ms: list[float] = field(default_factory=list)
    status: list[str] = field(default_factory=list)  # ours only
    features: list[tuple[float, ...]] = field(default_factory=list)  # ours only


def run_ours(recognizer: Recognizer, medias: Sequence[Media],
             progress: Progress | None = None, stage: str = "recognizing") -> SystemRun:
    run = SystemRun("ours")
    if medias:  # warm-up: first-call allocations are not a query's latency
        recognizer.recognize(medias[0])
    for i, media in enumerate(medias):
        t0 = time.perf_counter()
        rec = recognizer.recognize(media)
        run.latency_ms.append((time.perf_counter() - t0) * 1000)
        run.guesses.append(guesses_of(rec))
        run.scores.append(float(rec.confidence))
        run.status.append(rec.status)
        run.features.append(features_of(rec))
        if progress:
            progress(stage, i + 1, len(medias))
    return run


def _run_baselines(rec: Recognizer, medias: Sequence[Media], framestore_dir: Path,
                   progress: Progress | None) -> list[SystemRun]:
    runs = []
    for fs in build_baselines(rec.catalog, FrameStore(framestore_dir), progress=progress):
        run = SystemRun(fs.name)
        for i, m in enumerate(medias):
            t0 = time.perf_counter()
            gs = fs.search(m.first)  # the first frame only, as trace.moe does
            run.latency_ms.append((time.perf_counter() - t0) * 1000)
            run.guesses.append(gs)
            run.scores.append(gs[0].score if gs else 0.0)
            if progress:
                progress(f"baseline {fs.name}", i + 1, len(medias))
        runs.append(run)
    return runs


def _machine() -> dict[str, object]:
    import torch

    from core.sysinfo import machine_info

    info = machine_info()
    return {**info, "cpu": info["cpu_model"], "torch_threads": torch.get_num_threads()}


def _load_all(queries: Sequence[Query]) -> tuple[list[Media], list[float]]:
    medias, ms = [], []
    for q in queries:
        t0 = time.perf_counter()
        medias.append(load_media(q.data))
        ms.append((time.perf_counter() - t0) * 1000)
    return medias, ms


def split_of(truth: Truth, train_episodes: Sequence[str] | None) -> dict[str, str] | None:
    """episode ground-truth path → "train" / "held_out", when the model lists its training set."""
    if not train_episodes:
        return None
    names = {str(p).replace("\\", "/") for p in train_episodes}
    out = {}
    for e in truth.episodes:
        hit = e["path"] in names or e["abs"] in names or any(e["abs"].endswith("/" + n) for n in names)
        out[e["path"]] = "train" if hit else "held_out"
    return out


def _stage(progress: Progress | None, name: str) -> Progress | None:
    if progress is None:
        return None
    return lambda _stage_name, done, total: progress(name, done, total)


def _calibrate(rec: Recognizer, truth: Truth, stored: dict[str, set[int]], judge: Judge,
               config: EvalConfig, path: Path, progress: Progress | None) -> CalibrationFit:
    """Fit the calibration on its own query set (another seed), save it and put it in use."""
    cal_seed = config.seed + CALIBRATION.seed_offset
    cal_n = config.calibration_queries or config.queries
    cal_q = build_queries(truth, stored, n=cal_n, seed=cal_seed,
                          progress=_stage(progress, "calibration queries"))
    cal_media, _ = _load_all(cal_q)
    cal_run = run_ours(rec, cal_media, progress, "calibration set")
    del cal_media
    labels = [judge(q, g).episode_top1 for q, g in zip(cal_q, cal_run.guesses, strict=True)]
    name = f"eval seed={cal_seed} n={cal_n} {dt.date.today().isoformat()}"
    fitted = fit_calibration(cal_run.features, labels, name=name)
    fitted.save(path)
    rec.calibration = fitted
    return CalibrationFit(after=fitted, path=str(path), n=cal_n, seed=cal_seed,
                          right=int(sum(labels)), wrong=int(len(labels) - sum(labels)))


def _system_metrics(run: SystemRun, js: Sequence[Judgement], queries: Sequence[Query]
                    ) -> SystemMetrics:
    inl = [i for i, q in enumerate(queries) if q.in_library]
    per_cat = {}
    for c in categories():
        s = summarize([js[i] for i in inl if queries[i].category == c])
        per_cat[c] = CategoryMetrics(s.n, s)
    threshold = None
    if run.name == "colorlayout":
        key = f"abstention_at_{BASELINE_PARAMS.tracemoe_threshold:.2f}"
        threshold = (key, abstention([s < BASELINE_PARAMS.tracemoe_threshold for s in run.scores],
                                     queries, [j.episode_top1 for j in js]))
    return SystemMetrics(
        label=SYSTEM_LABELS[run.name], overall=summarize([js[i] for i in inl]),
        per_category=per_cat,
        coverage_accuracy=tuple(coverage_curve([run.scores[i] for i in inl],
                                               [js[i].episode_top1 for i in inl])),
        latency_ms=percentiles(run.latency_ms), threshold_abstention=threshold)


def _ours_metrics(base: SystemMetrics, ours: SystemRun, js: Sequence[Judgement],
                  queries: Sequence[Query], load_ms: Sequence[float],
                  before_calibration: Sequence[float] | None, match_threshold: float
                  ) -> SystemMetrics:
    """Our recognizer's metrics plus its statuses, abstention and abstention per category."""
    right_all = [j.episode_top1 for j in js]
    ab = [s != "match" for s in ours.status]
    per_cat = dict(base.per_category)
    for c in [*categories(), OOL]:
        idx = [i for i, q in enumerate(queries) if q.category == c]
        pc = per_cat.get(c, CategoryMetrics(len(idx), None))
        matched = [i for i in idx if not ab[i]]
        per_cat[c] = CategoryMetrics(pc.n, pc.summary, Abstaining(
            rnd(sum(ab[i] for i in idx) / len(idx)) if idx else None,
            rnd(sum(right_all[i] for i in matched) / len(matched)) if matched else None))
    before = None
    if before_calibration is not None:
        before = abstention([c < match_threshold for c in before_calibration], queries, right_all)
    extras = OursExtras(
        abstention=abstention(ab, queries, right_all),
        status_counts={s: ours.status.count(s) for s in ("match", "unsure", "no_match")},
        load_ms=percentiles(load_ms), abstention_before_calibration=before)
    return SystemMetrics(base.label, base.overall, per_cat, base.coverage_accuracy,
                         base.latency_ms, base.threshold_abstention, extras)



def _confidence_before(ours: SystemRun, before: Calibration) -> list[float]:
    """Each answer's confidence under the calibration in use before the run."""
    return [before(*f) if ours.guesses[i] else 0.0 for i, f in enumerate(ours.features)]


def _calibration_report(before: Calibration, conf_before: Sequence[float], ours: SystemRun,
                        right_all: Sequence[bool], fit: CalibrationFit | None) -> CalibrationReport:
    conf_after = list(ours.scores)
    return CalibrationReport(
        before=before, fit=fit,
        ece_before=rnd(expected_calibration_error(conf_before, right_all)),
        ece=rnd(expected_calibration_error(conf_after, right_all)),
        reliability=tuple(reliability(conf_after, right_all)),
        reliability_before=tuple(reliability(conf_before, right_all)),
        confidence_range=(rnd(min(conf_after)), rnd(max(conf_after))) if conf_after else None)


def _ratios(systems: dict[str, SystemMetrics]) -> dict[str, dict[str, float | None]]:
    """ours / ColorLayout per category and overall (empty without the ColorLayout run)."""
    if "colorlayout" not in systems:
        return {}
    out = {}
    for c in [*categories(), "overall"]:
        a = systems["ours"].overall if c == "overall" else systems["ours"].per_category[c].summary
        b = (systems["colorlayout"].overall if c == "overall"
             else systems["colorlayout"].per_category[c].summary)
        out[c] = {m: ratio(getattr(a, m), getattr(b, m))
                  for m in ("series_top1", "episode_top1", "time_2s")}
    return out


def _splits(truth: Truth, train_episodes: Sequence[str] | None, queries: Sequence[Query],
            judged: dict[str, list[Judgement]]) -> Splits:
    split = split_of(truth, train_episodes)
    if split is None:
        return Splits("per-library setting (model not trained on a split)")
    inl = [i for i, q in enumerate(queries) if q.in_library]
    parts = {}
    for part in ("held_out", "train"):
        ids = [i for i in inl if split.get(queries[i].episode or "") == part]
        parts[part] = {name: summarize([js[i] for i in ids]) for name, js in judged.items()}
    return Splits("held-out split (the scene model lists its training episodes)",
                  episodes={k: sum(1 for v in split.values() if v == k) for k in ("train", "held_out")},
                  parts=parts)


def _answer(run: SystemRun, j: Judgement, i: int) -> SystemAnswer:
    top = run.guesses[i][0] if run.guesses[i] else None
    ours = run.name == "ours"
    return SystemAnswer(
        rank=j.rank, series=j.series_top1, episode=j.episode_top1, time=j.time_2s,
        score=rnd(run.scores[i]), answer_t=rnd(top.time, 2) if top else None,
        status=run.status[i] if ours else None,
        # what the confidence was computed from: score, margin, agreement, check, detail
        evidence=tuple(rnd(x) for x in run.features[i]) if ours else None)


def _per_query(queries: Sequence[Query], runs: dict[str, SystemRun],
               judged: dict[str, list[Judgement]]) -> tuple[QueryRecord, ...]:
    return tuple(
        QueryRecord(id=q.qid, category=q.category, perturbation=q.perturbation,
                    episode=q.episode, t=rnd(q.t, 3), segment=q.segment,
                    answers={name: _answer(run, judged[name][i], i) for name, run in runs.items()})
        for i, q in enumerate(queries))


def _library_info(truth: Truth, indexed_frames: int) -> LibraryInfo:
    return LibraryInfo(
        roots=tuple(truth.roots), params=truth.params, seed=truth.seed,
        series=len({e["series"] for e in truth.episodes}), episodes=len(truth.episodes),
        video_seconds=rnd(sum(float(e["duration"]) for e in truth.episodes), 1),
        indexed_frames=indexed_frames)


def _model_info(rec: Recognizer, trained_on_split: bool) -> ModelInfo:
    emb = rec.embedder
    metrics = getattr(emb, "metrics", {}) or {}
    return ModelInfo(version=rec.model_version, embedder=emb.spec.to_dict(),
                     trained_on_split=trained_on_split,
                     metrics={k: v for k, v in metrics.items()
                              if k != "train_episodes" and isinstance(v, (int, float, str, bool))})


def _query_counts(queries: Sequence[Query]) -> QueryCounts:
    counts = {c: sum(1 for q in queries if q.category == c) for c in [*categories(), OOL]}
    return QueryCounts(n=len(queries), in_library=sum(1 for q in queries if q.in_library),
                       out_of_library=counts[OOL], per_category=counts)


def evaluate(sessions: sessionmaker[Session], *, index_dir: Path, models_dir: Path,
             framestore_dir: Path, library: Path | None = None,
             config: EvalConfig = DEFAULT_CONFIG, progress: Progress | None = None,
             calibration_path: Path | None = None,
             milvus: MilvusConfig | None = None) -> EvalResult:
    """Run the whole evaluation and return its result (see `EvalResult`, `write_report`).

    Args:
        sessions: the catalog database.
        index_dir, models_dir, framestore_dir: the home folder's parts.
        library: the sample library (default: the folder the catalog was indexed from).
        config: sizes, seed, calibration and baseline switches.
        progress: called as progress(stage, done, total).
        calibration_path: where `--calibrate` saves the fit (default
            `<models_dir>/calibration.json`, which the bot loads).
        milvus: the index is in Milvus (None: hnswlib files in `index_dir`).

    Raises:
        EvalError: no ground truth / nothing indexed.
        IndexUnavailable: no index yet.
    """
    t_start = time.perf_counter()
    rec = build_recognizer(sessions, index_dir=index_dir, models_dir=models_dir,
                           search_k=config.search_k, match_threshold=config.match_threshold,
                           unsure_threshold=config.unsure_threshold, num_threads=1,
                           subcrops=config.subcrops, milvus=milvus)
    truth = load_truth(sessions, rec.catalog, library)
    stored = stored_frame_numbers(rec.catalog, truth)
    judge = Judge(rec.catalog)
    cal_before = rec.calibration

    # 1. calibration on its own query set (another seed), saved before the evaluation runs
    fit = None
    if config.calibrate:
        path = Path(calibration_path or Path(models_dir) / "calibration.json")
        fit = _calibrate(rec, truth, stored, judge, config, path, progress)

    # 2. the evaluation queries, our recognizer and the baselines on them
    queries = build_queries(truth, stored, n=config.queries, seed=config.seed,
                            progress=_stage(progress, "building queries"))
    medias, load_ms = _load_all(queries)
    runs: dict[str, SystemRun] = {"ours": run_ours(rec, medias, progress, "recognizing")}
    for i, ms in enumerate(load_ms):  # latency of ours: decoding the file + recognition
        runs["ours"].latency_ms[i] += ms
    if config.baselines:
        runs.update((r.name, r) for r in _run_baselines(rec, medias, framestore_dir, progress))

    # 3. judge and summarize
    judged = {name: [judge(q, g) for q, g in zip(queries, run.guesses, strict=True)] for name, run in runs.items()}
    systems = {name: _system_metrics(run, judged[name], queries) for name, run in runs.items()}
    right_all = [j.episode_top1 for j in judged["ours"]]
    conf_before = _confidence_before(runs["ours"], cal_before)
    systems["ours"] = _ours_metrics(systems["ours"], runs["ours"], judged["ours"], queries, load_ms,
                                    conf_before if config.calibrate else None,
                                    config.match_threshold)

    # 4. held-out honesty
    train_eps = (getattr(rec.embedder, "metrics", {}) or {}).get("train_episodes")
    splits = _splits(truth, train_eps, queries, judged)
    return EvalResult(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=_machine(),
        library=_library_info(truth, len(rec.catalog)),
        model=_model_info(rec, splits.episodes is not None),
        index=IndexInfo(version=rec.index_version, vectors=len(rec.index),
                        region_vectors=len(getattr(rec.index, "regions", None) or ())),
        config=RunSettings(config, rec.subcrops, TOLERANCES.time, BASELINE_PARAMS.merge_seconds),
        queries=_query_counts(queries),
        categories=tuple(categories()),
        systems=systems,
        ratios_vs_colorlayout=_ratios(systems),
        calibration=_calibration_report(cal_before, conf_before, runs["ours"], right_all, fit),
        splits=splits,
        wall_seconds=rnd(time.perf_counter() - t_start, 1),
        per_query=_per_query(queries, runs, judged),
    )
