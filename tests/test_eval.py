"""The evaluation harness on the real indexed sample library: query building, judging, the
trace.moe ColorLayout baseline, the result JSON, the report, calibration and `anirec eval`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from core.catalog import Catalog
from core.framestore import FrameStore
from core.recognition import Calibration
from data.perturb import SUITE
from data.video import read_frames_at
from training.eval import (
    CLIP,
    METRICS,
    OOL,
    EvalConfig,
    Guess,
    Judge,
    Query,
    bench_queries,
    build_baselines,
    build_queries,
    categories,
    demo_queries,
    evaluate,
    format_table,
    load_truth,
    places_of,
    split_of,
    stored_frame_numbers,
    tracemoe_color_layout,
    write_json,
    write_report,
)

N = 40


@pytest.fixture(scope="module")
def catalog(indexed_home: Any) -> Catalog:
    return Catalog.load(indexed_home.app.sessions)


@pytest.fixture(scope="module")
def truth(indexed_home: Any, catalog: Catalog) -> Any:
    return load_truth(indexed_home.app.sessions, catalog)


@pytest.fixture(scope="module")
def run(indexed_home: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One calibrated evaluation with baselines (the calibration goes to a scratch file, so
    the shared home's models folder, which other tests' services load, is left alone)."""
    out = tmp_path_factory.mktemp("eval")
    st = indexed_home.settings
    stages: list[str] = []
    result = evaluate(indexed_home.app.sessions, index_dir=st.index_dir, models_dir=st.models_dir,
                      framestore_dir=st.framestore_dir,
                      config=EvalConfig(queries=N, seed=5, calibrate=True),
                      progress=lambda stage, done, total: stages.append(stage),
                      calibration_path=out / "calibration.json")
    write_json(result, out / "eval.json")
    paths = write_report(result, out / "report")
    return {"result": result.to_json(), "dir": out, "paths": paths, "stages": stages}


# ----------------------------------------------------------------------------------------------
def test_queries_cover_the_suite_and_avoid_stored_frames(truth: Any, catalog: Catalog) -> None:
    stored = stored_frame_numbers(catalog, truth)
    qs = build_queries(truth, stored, n=N, seed=11)
    assert len(qs) == N
    cats = [q.category for q in qs]
    for c in categories():
        assert cats.count(c) == 2, c  # 36 in-library queries over 18 categories
    assert cats.count(OOL) == 4
    fps = {e["path"]: float(e["fps"]) for e in truth.episodes}
    for q in qs:
        if q.in_library:
            assert q.places and q.episode is not None and q.t is not None
            assert round(q.t * fps[q.episode]) not in stored[q.places[0].path]
        else:
            assert not q.places and q.episode is None
    clip = next(q for q in qs if q.category == CLIP)
    assert clip.data[:6] in (b"GIF87a", b"GIF89a")
    assert build_queries(truth, stored, n=N, seed=11)[7].data == qs[7].data  # seeded


def test_demo_and_benchmark_queries_come_from_the_same_maker(truth: Any, catalog: Catalog) -> None:
    library = Path(truth.roots[0])
    qs = demo_queries(library, n=9, seed=7)
    assert [q.suffix for q in qs] == [".jpg"] * 7 + [".gif", ".jpg"]
    assert qs[7].qid == "q07-clip" and qs[7].category == CLIP and qs[0].qid == "q00-crop50"
    assert all(len(q.places) == 1 and q.episode_number is not None for q in qs)
    assert [q.data for q in demo_queries(library, n=9, seed=7)] == [q.data for q in qs]  # seeded
    judge = Judge(catalog)
    by_path = {em.path: em.id for em in catalog.episodes.values()}
    q = qs[0]
    assert q.t is not None and judge(q, [Guess(by_path[q.places[0].path], q.t + 1.0, 0.9)]).time_2s_strict
    shots = bench_queries(library, 3)
    assert len(shots) == 3 and all(b[:2] == b"\xff\xd8" for b in shots)
    assert bench_queries(library, 3) == shots


def test_identical_footage_counts_as_the_same_place(truth: Any, catalog: Catalog) -> None:
    eps = truth.episodes
    ep = next(e for e in eps if e.get("opening"))
    t = (ep["opening"][0] + ep["opening"][1]) / 2
    places = places_of(ep, t, truth)
    siblings = [e for e in eps if e["series"] == ep["series"] and e.get("opening")]
    assert {p.path for p in places} == {e["abs"] for e in siblings}
    recap_ep = next(e for e in eps if e.get("recap"))
    r = recap_ep["recap"][0]
    places = places_of(recap_ep, r["from"] + 0.2, truth)
    src = next(p for p in places if p.path.endswith(r["source_path"]))
    assert src.t == pytest.approx(r["source_time"] + 0.2)

    judge = Judge(catalog)
    by_path = {em.path: em.id for em in catalog.episodes.values()}
    other = next(e for e in siblings if e is not ep)
    q = Query("q", "clean", "clean", b"", episode=ep["path"], series=ep["series"], t=t,
              segment="opening", places=places_of(ep, t, truth))
    j = judge(q, [Guess(by_path[other["abs"]], other["opening"][0] + (t - ep["opening"][0]), 0.9)])
    assert j.episode_top1 and j.time_2s and j.rank == 1
    far = judge(q, [Guess(by_path[ep["abs"]], t + 6.0, 0.9)])
    assert far.episode_top1 and not far.time_2s_strict
    wrong_series = next(e for e in eps if e["series"] != ep["series"])
    w = judge(q, [Guess(by_path[wrong_series["abs"]], t, 0.9), Guess(by_path[ep["abs"]], t, 0.8)])
    assert not w.series_top1 and w.series_top5 and w.rank == 2 and w.rr == 0.5
    assert judge(Query("o", OOL, "clean", b""), [Guess(by_path[ep["abs"]], t, 0.9)]).rank == 0


def test_held_out_split_from_the_model_metrics(truth: Any) -> None:
    assert split_of(truth, None) is None
    first = truth.episodes[0]["path"]
    split = split_of(truth, [first])
    assert split is not None and split[first] == "train"
    assert sum(v == "held_out" for v in split.values()) == len(truth.episodes) - 1


def test_tracemoe_color_layout_descriptor() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)).resize((480, 270))
    v = tracemoe_color_layout(img)
    assert v.shape == (33,)
    assert np.all(v == np.round(v)) and v.min() >= 0 and v.max() <= 127
    assert np.array_equal(v, tracemoe_color_layout(img.copy()))
    assert not np.array_equal(v, tracemoe_color_layout(ImageOps.mirror(img)))
    grey = tracemoe_color_layout(Image.new("RGB", (64, 64), (128, 128, 128)))
    assert np.all(grey[1:21] == 16)  # flat picture: every AC coefficient at its zero level


def test_colorlayout_baseline_gets_clean_frames_right(indexed_home: Any, catalog: Catalog,
                                                      truth: Any) -> None:
    """Sanity check of the baseline itself: clean frames between the indexed ones."""
    (cl,) = build_baselines(catalog, FrameStore(indexed_home.settings.framestore_dir),
                            which=("colorlayout",))
    judge = Judge(catalog)
    rng = random.Random(3)
    right = total = 0
    for ep in truth.episodes:
        times = [rng.uniform(0.5, ep["duration"] - 0.5) for _ in range(3)]
        for t, arr in zip(times, read_frames_at(Path(ep["abs"]), times), strict=True):
            q = Query("q", "clean", "clean", b"", episode=ep["path"], series=ep["series"], t=t,
                      places=places_of(ep, t, truth))
            guesses = cl.search(Image.fromarray(arr))
            assert 1 <= len(guesses) <= 5
            assert all(0.0 <= g.score <= 1.0 for g in guesses)
            assert [g.score for g in guesses] == sorted((g.score for g in guesses), reverse=True)
            right += judge(q, guesses).episode_top1
            total += 1
    assert right / total >= 0.7


# ----------------------------------------------------------------------------------------------
def test_result_structure(run: dict[str, Any]) -> None:
    r = run["result"]
    json.dumps(r)  # serializable as is
    for key in ("date", "machine", "library", "model", "index", "config", "queries", "systems",
                "calibration", "splits", "ratios_vs_colorlayout", "per_query"):
        assert key in r, key
    assert r["queries"]["n"] == N and r["config"]["seed"] == 5
    assert r["config"]["subcrops"] is True  # "auto" with the model-free default embedder
    assert r["machine"]["cpu_count"] and r["index"]["version"] and r["model"]["version"]
    assert r["library"]["episodes"] == 6 and r["library"]["indexed_frames"] > 0
    assert set(r["systems"]) == {"ours", "colorlayout", "phash", "untrained_cnn"}
    assert r["splits"]["setting"].startswith("per-library setting")
    assert {"building queries", "recognizing", "baseline colorlayout"} <= set(run["stages"])
    assert json.loads((run["dir"] / "eval.json").read_text()) == json.loads(json.dumps(r))


def test_every_category_present_and_metrics_are_rates(run: dict[str, Any]) -> None:
    r = run["result"]
    assert r["categories"] == [*SUITE, CLIP]
    for name, sys_ in r["systems"].items():
        for c in r["categories"]:
            pc = sys_["per_category"][c]
            assert pc["n"] >= 1, (name, c)
            for m in METRICS:
                assert 0.0 <= pc[m] <= 1.0, (name, c, m)
        for m in METRICS:
            assert 0.0 <= sys_["overall"][m] <= 1.0
        assert sys_["overall"]["episode_top1"] <= sys_["overall"]["episode_top5"]
        assert sys_["overall"]["series_top1"] >= sys_["overall"]["episode_top1"]
        curve = sys_["coverage_accuracy"]
        assert [c["coverage"] for c in curve] == [i / 10 for i in range(1, 11)]
        assert curve[-1]["accuracy"] == sys_["overall"]["episode_top1"]
    lat = r["systems"]["ours"]["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert r["ratios_vs_colorlayout"]["overall"]["episode_top1"] is not None


def test_baselines_ran_on_the_same_queries(run: dict[str, Any]) -> None:
    r = run["result"]
    n_in = r["queries"]["in_library"]
    assert {s["overall"]["n"] for s in r["systems"].values()} == {n_in}
    assert len(r["per_query"]) == N
    for row in r["per_query"]:
        assert {"ours", "colorlayout", "phash", "untrained_cnn"} <= set(row)


def test_out_of_library_queries_are_excluded_from_accuracy(run: dict[str, Any]) -> None:
    r = run["result"]
    q = r["queries"]
    assert q["out_of_library"] == 4 and q["in_library"] == N - 4
    assert sum(q["per_category"][c] for c in r["categories"]) == q["in_library"]
    assert sum(s["overall"]["n"] for s in [r["systems"]["ours"]]) == q["in_library"]
    ool_rows = [row for row in r["per_query"] if row["category"] == OOL]
    assert len(ool_rows) == 4 and all(row["ours"]["rank"] == 0 for row in ool_rows)
    ab = r["systems"]["ours"]["abstention"]
    assert ab["recall"] is not None and 0.0 <= ab["recall"] <= 1.0
    assert ab["precision"] is None or 0.0 <= ab["precision"] <= 1.0
    assert r["systems"]["ours"]["per_category"][OOL]["n"] == 4


def test_calibration_is_fitted_saved_and_used(run: dict[str, Any]) -> None:
    r = run["result"]
    cal = r["calibration"]
    path = run["dir"] / "calibration.json"
    assert cal["calibrated"] and Path(cal["path"]) == path and path.exists()
    fitted = Calibration.load(path)
    assert fitted.fitted_on.startswith("eval seed=")
    assert fitted.bias == pytest.approx(cal["after"]["bias"])
    for s in np.linspace(0, 1, 6):
        for m in (0.0, 0.05, 0.3):
            assert 0.0 < fitted(float(s), m, 1.0) < 1.0
    answered = [row["ours"]["score"] for row in r["per_query"] if row["ours"]["answer_t"] is not None]
    assert answered and all(0.0 < c < 1.0 for c in answered)
    assert 0.0 <= cal["ece_before"] <= 1.0 and 0.0 <= cal["ece_after"] <= 1.0
    assert cal["set"]["n"] == N and cal["set"]["seed"] != 5


def test_report_files(run: dict[str, Any]) -> None:
    report = run["dir"] / "report"
    md = (report / "report.md").read_text()
    for name in ("accuracy_per_perturbation.png", "coverage_accuracy.png", "calibration.png"):
        png = report / name
        assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name})" in md
    for c in categories():
        assert f"| {c} |" in md
    assert "trace.moe ColorLayout" in md and "expected calibration error" in md.lower()
    table = format_table(run["result"])
    assert "ours/CL" in table and "overall" in table and "phone+jpeg" in table


def test_cli_eval(indexed_home: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    monkeypatch.setenv("ANIREC_HOME", str(indexed_home.settings.home))
    monkeypatch.setenv("ANIREC_QUERY_SUBCROPS", "off")  # the eval measures what the bot runs
    out = tmp_path / "e.json"
    assert main(["eval", "--queries", "12", "--seed", "2", "--no-baselines", "--json", str(out),
                 "--report", str(tmp_path / "rep")]) == 0
    printed = capsys.readouterr().out
    assert "episode top-1 per perturbation" in printed and "AniRec" in printed
    data = json.loads(out.read_text())
    assert set(data["systems"]) == {"ours"} and data["queries"]["n"] == 12
    assert (tmp_path / "rep" / "report.md").exists()
    assert not data["calibration"]["calibrated"]
    assert data["config"]["subcrops"] is False


@pytest.mark.parametrize("argv", [["--queries", "0"], ["--calibration-queries", "-3"]])
def test_cli_eval_refuses_bad_sizes(indexed_home: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    from bot.cli import main

    monkeypatch.setenv("ANIREC_HOME", str(indexed_home.settings.home))
    out = tmp_path / "e.json"
    assert main(["eval", *argv, "--json", str(out)]) == 2
    assert "error:" in capsys.readouterr().err and not out.exists()
