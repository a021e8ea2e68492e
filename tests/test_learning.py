"""The learning loop on a copy of the indexed test library: what a query keeps, the
`anirec feedback|retrain|models` commands, bad input changing nothing, a retrain killed
midway, the simulation at tiny size, and the hot swap under a stream of requests."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, func, select, update

from core.db.models import Feedback, ModelVersion, Query
from core.types import Source, Verdict

pytestmark = pytest.mark.timeout(900)

ALICE = Source("telegram", chat_id="-1", user_id="111")
BOB = Source("telegram", chat_id="-1", user_id="222")


@pytest.fixture()
def home(indexed_home: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A private copy of the indexed home (retraining writes to it), as ANIREC_HOME."""
    from bot.app import App
    from core.config import Settings

    h = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, h)
    monkeypatch.setenv("ANIREC_HOME", str(h))
    monkeypatch.setenv("ANIREC_RETRAIN_SUITE_QUERIES", "24")
    app = App.from_settings(Settings(_env_file=None, home=h, retrain_suite_queries=24))  # type: ignore[call-arg]
    with app.sessions() as s:  # the shared home holds other tests' answers: start empty
        s.execute(delete(Feedback))
        s.execute(delete(Query))
        s.execute(delete(ModelVersion).where(ModelVersion.kind == "adapter"))
        s.commit()
    yield type("Home", (), {"app": app, "path": h, "ih": indexed_home})()


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from bot.cli import main

    capsys.readouterr()
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


async def _ask(app: Any, datas: list[bytes], who: Source = ALICE) -> list[Any]:
    svc = app.service(user_rate=10**6, chat_rate=10**6)
    await svc.start()
    try:
        return [await svc.recognize(d, source=who, with_preview=False) for d in datas]
    finally:
        await svc.close()


def _counts(app: Any) -> tuple[int, int, int]:
    with app.sessions() as s:
        return (s.scalar(select(func.count(Query.id))) or 0,
                s.scalar(select(func.count(Feedback.id))) or 0,
                s.scalar(select(func.count(ModelVersion.id)).where(ModelVersion.kind == "adapter")) or 0)


def test_query_keeps_vectors_views_and_candidates(home: Any) -> None:
    (rec,) = asyncio.run(_ask(home.app, [home.ih.frame_png(0, 5.0)]))
    with home.app.sessions() as s:
        q = s.get(Query, rec.query_id)
        assert q is not None and q.vectors is not None and q.trace is not None
        tr = q.trace
    vec = np.frombuffer(q.vectors, np.float16).reshape(-1, tr["dim"])
    assert vec.shape[0] == 2 * len(tr["views"])  # every view and its mirror
    assert 0 <= tr["winner"] < vec.shape[0]
    assert len(tr["frames"]) == len(rec.candidates) == len(tr["scores"])
    index = home.app.recognizer().index
    assert all(int(f) in index for f in tr["frames"])
    stored = index.vectors(np.array(tr["frames"][:1]))[0]
    # the winning view of a clean frame is (nearly) that frame's stored vector
    assert float(vec[tr["winner"]].astype(np.float32) @ stored) > 0.9
    assert len(tr["evidence"]) == 5 and q.image_path is None  # no picture unless opted in


def test_feedback_commands_and_bad_input(home: Any, capsys: pytest.CaptureFixture[str]) -> None:
    recs = asyncio.run(_ask(home.app, [home.ih.frame_png(0, 5.0), home.ih.frame_png(2, 7.0)]))
    store = home.app.feedback_store()
    a, b = recs[0].query_id, recs[1].query_id
    store.record(a, ALICE, Verdict.CORRECT)
    store.record(a, BOB, Verdict.WRONG)
    store.record(b, BOB, Verdict.PICK, 2)
    before = _counts(home.app)
    # bad input: clear message, nothing changed
    rc, out, err = _cli(["feedback", "add", "nosuchquery", "--right"], capsys)
    assert rc == 2 and "nosuchquery" in err and "Traceback" not in err
    n = len(recs[1].candidates)
    rc, out, err = _cli(["feedback", "add", b, "--pick", str(n + 1)], capsys)
    assert rc == 2 and f"1..{n}" in err
    rc, out, err = _cli(["feedback", "export", str(home.path / "missing" / "x.jsonl")], capsys)
    assert rc == 2 and "cannot write" in err and not (home.path / "missing").exists()
    rc, out, err = _cli(["feedback", "export", str(home.path)], capsys)
    assert rc == 2 and "folder" in err
    rc, out, err = _cli(["feedback", "add", b, "--truth", "No Such Show", "1", "3"], capsys)
    assert rc == 2 and "No series" in err
    assert _counts(home.app) == before
    # stats
    rc, out, _ = _cli(["feedback", "stats"], capsys)
    assert rc == 0 and "active votes: 3 on 2 answers" in out and "telegram 3" in out
    assert "1 of 1 answers with several voters" in out and a in out
    # add: a pick, then a truth naming a place that is no candidate
    rc, out, _ = _cli(["feedback", "add", b, "--pick", "1"], capsys)
    assert rc == 0
    ep = home.ih.ground_truth["episodes"][2]
    title = home.ih.series_title(2)
    rc, out, err = _cli(["feedback", "add", a, "--truth", title, str(ep["episode"]), "7.5"], capsys)
    assert rc == 0, err
    with home.app.sessions() as s:
        truth = s.scalar(select(Feedback).where(Feedback.query_id == a, Feedback.verdict == "truth"))
        assert truth is not None and truth.truth and truth.truth["t"] == 7.5
    # export: one JSON line per answer, with votes and vectors, hashed ids only
    out_file = home.path / "fb.jsonl"
    rc, out, _ = _cli(["feedback", "export", str(out_file)], capsys)
    rows = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert rc == 0 and len(rows) == 2 and all("vectors_f16" in r for r in rows)
    assert all(r["user"] == store.hash_id("telegram", "111") for r in rows)  # hashed, never raw
    assert '"111"' not in out_file.read_text() and '"222"' not in out_file.read_text()
    assert {v["verdict"] for r in rows for v in r["votes"]} >= {"correct", "wrong", "truth", "pick"}
    # forget Bob: his votes go, Alice's answers (which he voted on) stay
    rc, out, _ = _cli(["feedback", "forget", "--platform", "telegram", "--user", "222"], capsys)
    assert rc == 0 and "0 answer(s)" in out and "2 vote(s)" in out
    rc, out, _ = _cli(["feedback", "forget", "--platform", "telegram", "--user", "111"], capsys)
    assert rc == 0 and "2 answer(s)" in out
    assert _counts(home.app)[:2] == (0, 0)  # her answers went, with every vote on them


def test_purge_enforces_retention(home: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli.run import purge_images

    app = home.app
    svc = app.service(user_rate=10**6, chat_rate=10**6)
    svc.images_dir = home.path / "query-images"  # as ANIREC_STORE_QUERY_IMAGES=true

    async def go() -> list[Any]:
        await svc.start()
        try:
            return [await svc.recognize(home.ih.frame_png(i, 4.0), source=ALICE, with_preview=False)
                    for i in (0, 1)]
        finally:
            await svc.close()

    old, new = asyncio.run(go())
    with app.sessions() as s:
        s.execute(update(Query).where(Query.id == old.query_id)
                  .values(created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=40)))
        s.commit()
        paths = {q.id: q.image_path for q in s.scalars(select(Query))}
    assert all(p and Path(p).exists() for p in paths.values())
    assert purge_images(app) == 1  # what `anirec run` does on start and daily
    assert not Path(paths[old.query_id]).exists() and Path(paths[new.query_id]).exists()
    rc, out, _ = _cli(["feedback", "purge", "--days", "1"], capsys)
    assert rc == 0 and "deleted 0" in out  # the other one is younger than a day
    with app.sessions() as s:
        assert s.scalar(select(func.count(Query.id))) == 2  # the answers and votes stay


def test_retrain_with_no_usable_votes_changes_nothing(home: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _cli(["retrain"], capsys)
    assert rc == 1 and "No usable votes" in err and "Nothing was changed" in err
    (rec,) = asyncio.run(_ask(home.app, [home.ih.frame_png(0, 5.0)]))
    # a pick beyond the candidates cannot even be stored
    with pytest.raises(ValueError):
        home.app.feedback_store().record(rec.query_id, ALICE, Verdict.PICK, 6)
    rc, out, err = _cli(["retrain"], capsys)
    assert rc == 1 and "No usable votes" in err
    assert _counts(home.app)[2] == 0 and not (home.path / "models" / "retrain").exists()
    rc, out, _ = _cli(["models", "list", "--kind", "adapter"], capsys)
    assert "built-in defaults" in out


def _voted_home(home: Any, n: int = 18) -> list[Any]:
    """Clean and tinted frames asked and voted on by three agreeing people and one troll."""
    import io
    import random

    from PIL import Image

    from training.feedback_sim import strong_tint

    datas = []
    for i in range(n):
        png = home.ih.frame_png(i % len(home.ih.ground_truth["episodes"]), 1.0 + (i * 1.7) % 12)
        if i % 2:
            img = strong_tint(Image.open(io.BytesIO(png)).convert("RGB"), random.Random(i))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            png = buf.getvalue()
        datas.append(png)
    recs = asyncio.run(_ask(home.app, datas))
    store = home.app.feedback_store()
    people = [Source("discord", "c", f"u{k}") for k in range(3)]
    troll = Source("discord", "c", "troll")
    for r in recs:
        for p in people:
            store.record(r.query_id, p, Verdict.CORRECT)
        store.record(r.query_id, troll, Verdict.WRONG)
    return recs


def test_retrain_gate_versions_and_rollback(home: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from core.models.registry import deployed_state

    _voted_home(home)
    st = home.app.settings
    key0 = deployed_state(home.app.sessions, st.models_dir, st.index_dir)
    out_json = home.path / "retrain.json"
    rc, out, err = _cli(["retrain", "--json", str(out_json), "--steps", "60"], capsys)
    assert rc == 0, err
    res = json.loads(out_json.read_text())
    assert res["learnt"]["votes"] == 18 * 4 and res["learnt"]["answers_used"] == 18
    assert res["learnt"]["down_weighted_voters"] == 1  # the troll
    assert f"learnt from {18 * 4} vote(s)" in out
    fb, suite = res["metrics"]["feedback"], res["metrics"]["suite"]
    assert suite["kind"] == "eval suite" and suite["current"]["n"] == 24
    with home.app.sessions() as s:
        row = s.scalar(select(ModelVersion).where(ModelVersion.version == res["version"]))
        assert row is not None and row.kind == "adapter" and row.metrics["gate"]["reason"] == res["reason"]
        assert row.promoted == res["promoted"]
    # the decision follows the numbers: promoted only if better on the held-out votes
    assert res["promoted"] == (fb["judged"] > 0 and fb["candidate"] > fb["current"]
                               and suite["candidate"]["episode_top1"] >= suite["current"]["episode_top1"] - 0.01
                               and suite["candidate"]["right_as_match"] >= suite["current"]["right_as_match"] - 0.01)
    # promote it by hand (as `--to`) to exercise what serving loads, then roll back
    rc, out, _ = _cli(["models", "rollback", "adapter", "--to", res["version"]], capsys)
    assert rc == 0 and res["version"] in out
    rec = home.app.recognizer()
    assert rec.adapter is not None and f"+adapter:{res['version']}" in rec.model_version
    assert deployed_state(home.app.sessions, st.models_dir, st.index_dir) != key0
    rc, out, _ = _cli(["models", "list"], capsys)
    assert f"* adapter    {res['version']}" in out
    rc, out, _ = _cli(["models", "rollback"], capsys)
    assert rc == 0 and "built-in default" in out
    rec = home.app.recognizer()
    assert rec.adapter is None and "+adapter" not in rec.model_version  # the default path again
    assert deployed_state(home.app.sessions, st.models_dir, st.index_dir) == key0
    rc, out, err = _cli(["models", "rollback", "--to", "nonsense"], capsys)
    assert rc == 2 and "No adapter version" in err


def test_retrain_killed_midway_leaves_nothing(home: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.models import adapter as adapter_mod
    from training.retrain_gate import RetrainGate, retrain_from_feedback

    _voted_home(home, 10)
    real_save = adapter_mod.QueryAdapter.save

    def killed(self: Any, path: Path) -> None:
        real_save(self, path)
        raise KeyboardInterrupt  # killed after the adapter, before the rest was written

    monkeypatch.setattr(adapter_mod.QueryAdapter, "save", killed)
    app = home.app
    with pytest.raises(KeyboardInterrupt):
        retrain_from_feedback(app.sessions, app.feedback_store(), app.settings.models_dir, app.recognizer,
                              gate=RetrainGate(suite_queries=0))
    assert _counts(app)[2] == 0  # no version row
    assert list((home.path / "models" / "retrain").iterdir()) == []  # no folder, no temp
    assert app.recognizer().adapter is None
    # a half-written adapter file is refused, never loaded
    from core.models.adapter import load_adapter

    bad = home.path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 half")
    with pytest.raises(ValueError):
        load_adapter(bad)


def test_hot_swap_under_a_stream_of_requests(home: Any) -> None:
    from core.models.adapter import QueryAdapter
    from core.models.registry import register_model
    from training.promote import rollback

    app = home.app
    st = app.settings
    emb = app.embedder()
    folder = st.models_dir / "retrain" / "adapter-test"
    QueryAdapter(np.eye(emb.dim, dtype=np.float32), "adapter-test", emb.version).save(folder / "adapter.npz")
    datas = [home.ih.frame_png(i % 6, 2.0 + i % 9) for i in range(36)]

    async def go() -> tuple[list[Any], list[str], int]:
        svc = app.service(user_rate=10**6, chat_rate=10**6)
        svc.queue_size = 1000
        await svc.start()
        stop = asyncio.Event()
        watcher = asyncio.create_task(svc.watch(stop, interval=0.05))
        results: list[Any] = []

        async def one(i: int) -> None:
            await asyncio.sleep(0.01 * i)
            results.append(await svc.recognize(datas[i], source=Source("web", "c", f"u{i}"),
                                               with_preview=False))

        tasks = [asyncio.create_task(one(i)) for i in range(len(datas))]
        versions = [svc.model_version or ""]
        await asyncio.sleep(0.1)
        register_model(app.sessions, kind="adapter", version="adapter-test",
                       path=folder.relative_to(st.models_dir), metrics={"gate": {"promoted": True}},
                       promote=True)  # what `anirec retrain` does when the gate passes
        while "+adapter" not in (svc.model_version or "") and not all(t.done() for t in tasks):
            await asyncio.sleep(0.02)
        versions.append(svc.model_version or "")
        rollback(app.sessions, "adapter", to=None)  # `anirec models rollback`
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await svc.check_deployed()
        versions.append(svc.model_version or "")
        stop.set()
        await watcher
        await svc.close()
        assert not [d for d in done if isinstance(d, BaseException)]
        return results, versions, svc.reloads

    results, versions, reloads = asyncio.run(go())
    assert len(results) == len(datas) and all(r.query_id for r in results)  # none failed
    assert "+adapter" not in versions[0] and "+adapter:adapter-test" in versions[1]
    assert "+adapter" not in versions[2] and reloads >= 2
    # every answer was made by one whole version: its stored row says which
    with app.sessions() as s:
        stored = {q.id: q.model_version for q in s.scalars(select(Query))}
    assert {stored[r.query_id] for r in results} <= {versions[0], versions[1]}
    assert all(stored[r.query_id] == r.model_version for r in results)


async def test_admin_queue_shows_pictures_frames_and_resolves(home: Any) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web import build_web_app

    app = home.app
    st = app.settings
    svc = app.service(user_rate=10**6, chat_rate=10**6)
    svc.images_dir = home.path / "query-images"
    await svc.start()
    kept = await svc.recognize(home.ih.frame_png(1, 6.0), source=ALICE, with_preview=False)
    svc.images_dir = None
    unkept = await svc.recognize(home.ih.frame_png(3, 6.0), source=ALICE, with_preview=False)
    for r in (kept, unkept):
        await svc.record_feedback(r.query_id, Verdict.WRONG, source=BOB)
    web_app = build_web_app(svc, sessions=app.sessions, index_dir=st.index_dir,
                            framestore_dir=st.framestore_dir, samples_dir=None, contact_sheets_dir=None)
    client = TestClient(TestServer(web_app, host="127.0.0.1"))
    await client.start_server()
    try:
        page = await (await client.get("/admin")).text()
        assert f"/admin/query/{kept.query_id}/image" in page
        assert f"/admin/query/{unkept.query_id}/image" not in page and "was not kept" in page
        assert f"/admin/query/{kept.query_id}/frame/1" in page
        r = await client.get(f"/admin/query/{kept.query_id}/image")
        assert r.status == 200 and r.content_type == "image/png"
        assert await r.read() == home.ih.frame_png(1, 6.0)
        assert (await client.get(f"/admin/query/{unkept.query_id}/image")).status == 404
        r = await client.get(f"/admin/query/{kept.query_id}/frame/1")
        assert r.status == 200 and r.content_type == "image/jpeg" and (await r.read())[:2] == b"\xff\xd8"
        assert (await client.get(f"/admin/query/{kept.query_id}/frame/9")).status == 404
        assert (await client.get("/admin/query/nope/frame/1")).status == 404
        hdr = {"X-AniRec-Admin": "1"}
        r = await client.post("/admin/api/resolve", json={"query_id": kept.query_id})
        assert r.status == 403
        r = await client.post("/admin/api/resolve", json={"query_id": "nope"}, headers=hdr)
        assert r.status == 404
        r = await client.post("/admin/api/resolve", json={"query_id": kept.query_id}, headers=hdr)
        assert r.status == 200
        page = await (await client.get("/admin")).text()
        assert f"id='q-{kept.query_id}'" not in page and f"id='q-{unkept.query_id}'" in page
        assert len(app.feedback_store().active_feedback(kept.query_id)) == 1  # the vote stays
    finally:
        await client.close()
        await svc.close()


def test_simulation_at_tiny_size(home: Any) -> None:
    """Simulated people send sideways phone pictures (which the current model gets wrong),
    vote (one of them abusively), the operator labels some with the truth; the retrained
    version answers FRESH sideways pictures better and clean frames no worse."""
    from dataclasses import replace

    from bot.web_common import OPERATOR
    from core.feedback_ops import CLI_OPERATOR
    from core.media import load_media
    from training.eval.truth import load_truth
    from training.feedback_sim import default_voters, make_queries, score, send_and_vote
    from training.retrain_gate import RetrainGate, retrain_from_feedback

    app = home.app

    async def go() -> Any:
        svc = app.service(user_rate=10**9, chat_rate=10**9)
        svc.queue_size = 10**6
        await svc.start()
        try:
            truth = load_truth(app.sessions, svc.recognizer.catalog)
            return await send_and_vote(svc, make_queries(truth, ["sideways"], 40, seed=11),
                                       default_voters(), seed=3)
        finally:
            await svc.close()

    log = asyncio.run(go())
    assert log.abusive_votes > 0 and log.by_kind.get("truth", 0) > 0
    store = app.feedback_store()
    trusted = [store.hash_id(s.platform, s.user_id) for s in (CLI_OPERATOR, OPERATOR)]
    res = retrain_from_feedback(app.sessions, store, app.settings.models_dir, app.recognizer,
                                gate=RetrainGate(suite_queries=24), trusted=trusted)
    assert res.learnt["down_weighted_voters"] >= 1  # the abusive voter
    current = replace(app.recognizer(), adapter=None)  # the version before (no adapter)
    from core.models.adapter import load_adapter

    candidate = replace(current, adapter=load_adapter(app.settings.models_dir / res.path / "adapter.npz"))
    truth = load_truth(app.sessions, current.catalog)
    fresh = make_queries(truth, ["sideways", "strong_tint"], 16, seed=12)  # never voted on
    before = score(lambda d: current.recognize(load_media(d)), fresh, current.catalog)
    after = score(lambda d: candidate.recognize(load_media(d)), fresh, current.catalog)
    assert after["sideways"].right > before["sideways"].right
    assert after["strong_tint"].right >= before["strong_tint"].right  # the rest does not drop
    suite = res.metrics["suite"]
    assert isinstance(suite, dict)
    assert suite["candidate"]["episode_top1"] >= suite["current"]["episode_top1"] - 0.01
