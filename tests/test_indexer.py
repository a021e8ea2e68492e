"""Indexing a real generated library: catalog, frame store, index, shots, OP/ED, incremental
updates, deleted and corrupt files, interrupted runs, embedder mismatch and re-embedding."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from core.config import Settings
from core.db.models import Episode, Frame, Shot
from core.errors import IndexMismatch
from core.index import HnswIndex
from core.models.embedder import EmbedderSpec, build_embedder, default_embedder
from data import indexer as indexer_mod
from data import prepare as prepare_mod
from data.indexer import Indexer


def make_indexer(home: Path, embedder: Any = None) -> Indexer:
    from bot.app import App

    app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    return app.indexer(embedder=embedder or default_embedder())


def load_index(ix: Indexer) -> HnswIndex:
    e = ix.embedder
    return HnswIndex.load(ix.index_dir, embedder_name=e.name, embedder_version=e.version, dim=e.dim)


def db_frame_ids(ix: Indexer) -> set[int]:
    with ix.sessions() as s:
        return set(s.scalars(select(Frame.id)))


@pytest.fixture()
def library(sample_library: Path, tmp_path: Path) -> Path:
    """A private copy of the session's sample library that a test may damage."""
    dst = tmp_path / "lib"
    shutil.copytree(sample_library, dst)
    return dst


def test_fresh_index_is_complete_and_consistent(indexed_home: Any) -> None:
    ix = make_indexer(indexed_home.settings.home)
    gt = indexed_home.ground_truth
    with ix.sessions() as s:
        eps = s.scalars(select(Episode)).all()
        assert len(eps) == len(gt["episodes"]) and all(e.status == "indexed" for e in eps)
        n_frames = s.scalar(select(func.count(Frame.id)))
        assert s.scalar(select(func.count(Shot.id))) >= len(eps)
    total = sum(e["duration"] for e in gt["episodes"])
    # ~2 fps minus duplicates, plus the frames fast motion adds (never more than 6 fps)
    st = indexed_home.settings
    assert 0.5 * st.index_fps * total < n_frames <= st.index_max_fps * total + len(gt["episodes"])
    index = load_index(ix)
    assert set(index.ids().tolist()) == db_frame_ids(ix)
    assert ix.framestore.episode_ids() == sorted(e.id for e in eps)
    m = index.manifest
    assert (m.embedder_name, m.embedder_version, m.dim) == (ix.embedder.name, ix.embedder.version, 256)


def test_second_run_embeds_nothing(indexed_home: Any) -> None:
    ix = make_indexer(indexed_home.settings.home)
    before = load_index(ix).version
    rep = ix.run(indexed_home.library)
    assert rep.frames_embedded == 0 and rep.unchanged == len(indexed_home.ground_truth["episodes"])
    assert not rep.added and not rep.removed and not rep.failed
    assert load_index(ix).version == before  # nothing changed: not even re-saved


def test_shots_follow_the_ground_truth(indexed_home: Any) -> None:
    ix = make_indexer(indexed_home.settings.home)
    gt = indexed_home.ground_truth["episodes"][0]
    with ix.sessions() as s:
        ep = s.scalar(select(Episode).where(Episode.path.like(f"%{Path(gt['path']).name}")))
        starts = sorted(s.scalars(select(Shot.start).where(Shot.episode_id == ep.id)))
    true_cuts = [sh["start"] for sh in gt["shots"][1:]]
    found = sum(any(abs(c - x) <= 0.25 for x in starts) for c in true_cuts)
    assert found >= 0.8 * len(true_cuts), (true_cuts, starts)


def test_openings_are_flagged(indexed_home: Any) -> None:
    ix = make_indexer(indexed_home.settings.home)
    inside = outside = inside_flag = outside_flag = 0
    with ix.sessions() as s:
        for gt in indexed_home.ground_truth["episodes"]:
            if not gt.get("opening"):
                continue
            t0, t1 = gt["opening"]
            ep = s.scalar(select(Episode).where(Episode.path.like(f"%{Path(gt['path']).name}")))
            for t, oped in s.execute(select(Frame.t, Frame.oped).where(Frame.episode_id == ep.id)):
                if t0 + 0.5 <= t <= t1 - 0.5:
                    inside += 1
                    inside_flag += oped == 1
                elif t > t1 + 1.0:
                    outside += 1
                    outside_flag += oped == 1
    assert inside and inside_flag / inside >= 0.8
    assert outside_flag / max(1, outside) <= 0.1


def test_flags_of_older_rules_are_computed_again(library: Path, tmp_path: Path) -> None:
    """The opening/ending/recap flags are stored per frame at indexing time; when the rules
    change (data.oped.RULES_VERSION), the next `anirec index` flags every series again even
    though no file changed. With the rules unchanged, an unchanged library is not re-flagged."""
    from sqlalchemy import update

    from data.oped import RULES_VERSION

    home = tmp_path / "home"
    ix = make_indexer(home)
    ix.run(library)
    rules = ix.framestore.root / indexer_mod.FLAG_RULES_FILE
    assert json.loads(rules.read_text()) == {"version": RULES_VERSION}

    def flags() -> dict[int, int]:
        with ix.sessions() as s:
            return {int(i): int(f) for i, f in s.execute(select(Frame.id, Frame.oped))}

    right = flags()
    assert sum(v == 1 for v in right.values()) > 0  # the sample library has openings
    with ix.sessions() as s:  # flags as older rules might have left them
        s.execute(update(Frame).values(oped=3))
        s.commit()
    report = make_indexer(home).run(library)  # rules unchanged: nothing is flagged again
    assert not report.added and not report.updated
    assert set(flags().values()) == {3}
    rules.write_text(json.dumps({"version": RULES_VERSION - 1}))  # flagged by older rules
    make_indexer(home).run(library)
    assert flags() == right
    assert json.loads(rules.read_text()) == {"version": RULES_VERSION}
    rules.unlink()  # an index from before the rules had versions
    with ix.sessions() as s:
        s.execute(update(Frame).values(oped=0))
        s.commit()
    make_indexer(home).run(library)
    assert flags() == right


def test_delete_truncate_and_add(library: Path, tmp_path: Path) -> None:
    ix = make_indexer(tmp_path / "home")
    first = ix.run(library)
    assert len(first.added) == 6 and not first.failed
    videos = sorted(library.rglob("*.mp4"))
    # delete one episode → its frames leave the catalog, the index and the frame store
    with ix.sessions() as s:
        gone = s.scalar(select(Episode).where(Episode.path == videos[0].resolve().as_posix()))
        gone_id = gone.id
        gone_frames = set(s.scalars(select(Frame.id).where(Frame.episode_id == gone_id)))
    videos[0].unlink()
    rep = ix.run(library)
    assert rep.removed == [videos[0].resolve().as_posix()] and rep.frames_embedded == 0
    index = load_index(ix)
    assert not gone_frames & set(index.ids().tolist())
    assert set(index.ids().tolist()) == db_frame_ids(ix)
    assert not ix.framestore.has(gone_id)
    # truncate another → reported, and its earlier frames are kept (nothing indexed is lost)
    victim = videos[1]
    with ix.sessions() as s:
        kept = set(s.scalars(select(Frame.id).join(Episode).where(
            Episode.path == victim.resolve().as_posix())))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    rep = ix.run(library)
    assert [p for p, _ in rep.failed] == [victim.relative_to(library).as_posix()]
    assert kept <= set(load_index(ix).ids().tolist())
    # a brand-new corrupt file → failed, the others untouched; reported again next time
    bad = library / victim.parent.name / "Broken - 09.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)
    rep = ix.run(library)
    assert any("Broken" in p for p, _ in rep.failed)
    assert set(load_index(ix).ids().tolist()) == db_frame_ids(ix)
    with ix.sessions() as s:
        assert "keeping the earlier index" in s.scalar(select(Episode.error).where(
            Episode.path == victim.resolve().as_posix()))
    # the file is restored: identical content, so nothing to re-embed and the error clears
    victim.write_bytes(data)
    rep = ix.run(library)
    assert rep.frames_embedded == 0 and kept <= set(load_index(ix).ids().tolist())
    with ix.sessions() as s:
        assert s.scalar(select(Episode.error).where(Episode.path == victim.resolve().as_posix())) is None
    # a changed file (re-encoded: other bytes) is re-indexed, replacing its frames
    other = videos[2]
    victim.write_bytes(other.read_bytes())
    rep = ix.run(library)
    assert rep.updated == [victim.relative_to(library).as_posix()]
    assert not kept & set(load_index(ix).ids().tolist()) or rep.frames_removed > 0
    assert set(load_index(ix).ids().tolist()) == db_frame_ids(ix)


def interrupt_on_write(monkeypatch: pytest.MonkeyPatch, n: int) -> Callable[[], None]:
    """Commit after every episode and press Ctrl-C while the `n`th is written; returns the
    function that undoes the Ctrl-C."""
    monkeypatch.setattr(indexer_mod, "SAVE_EVERY_SECONDS", 0.0)
    real = Indexer._write_episode
    calls = {"n": 0}

    def dying(self: Indexer, *a: Any, **kw: Any) -> int:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt  # the operator pressed Ctrl-C mid-way
        return real(self, *a, **kw)

    monkeypatch.setattr(Indexer, "_write_episode", dying)
    return lambda: monkeypatch.setattr(Indexer, "_write_episode", real)


def test_interrupted_run_resumes(library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ix = make_indexer(tmp_path / "home")
    undo = interrupt_on_write(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        ix.run(library)
    undo()
    rep = make_indexer(tmp_path / "home").run(library)
    assert len(rep.added) + rep.unchanged + len(rep.updated) == 6
    assert rep.unchanged >= 2  # the episodes committed before the crash were not redone
    ix2 = make_indexer(tmp_path / "home")
    assert set(load_index(ix2).ids().tolist()) == db_frame_ids(ix2)
    with ix2.sessions() as s:
        assert set(s.scalars(select(Episode.status))) == {"indexed"}


def test_other_embedder_is_refused_then_reembedded(library: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    make_indexer(home).run(library)
    other = build_embedder(EmbedderSpec(arch="tiny", version="other-v2", seed=5))
    with pytest.raises(IndexMismatch, match="--reembed"):
        make_indexer(home, other).run(library)

    def no_decoding(*a: Any, **kw: Any) -> None:
        raise AssertionError("re-embedding must not decode video")

    monkeypatch.setattr(prepare_mod.EpisodeDecoder, "__iter__", no_decoding)
    ix = make_indexer(home, other)
    rep = ix.run(library, reembed=True)
    index = load_index(ix)
    assert index.manifest.embedder_version == "other-v2"
    assert rep.frames_embedded == len(index) == len(db_frame_ids(ix))
    # vectors really come from the new embedder
    fid = int(index.ids()[0])
    with ix.sessions() as s:
        ep_id = s.scalar(select(Frame.episode_id).where(Frame.id == fid))
    ef = ix.framestore.read(ep_id)
    want = other.embed_arrays(ef.thumbnail_array(ef.index_of(fid))[None])[0]
    assert np.allclose(index.vectors(np.array([fid]))[0], want, atol=1e-4)


def test_reference_frames_only_index_answers_the_same(indexed_home: Any, library: Path, tmp_path: Path) -> None:
    """ANIREC_INDEX_DECODE=ref (only the reference frames decoded): about as many frames, and
    the stills that the index of every frame answers right are answered right by it too."""
    import io
    import random

    from PIL import Image

    from bot.app import App
    from core.media import load_media
    from data.video import read_frames_at

    app = App.from_settings(Settings(_env_file=None, home=tmp_path / "ref", index_decode="ref"))  # type: ignore[call-arg]
    ix = app.indexer()
    assert ix.decode == "ref"
    rep = ix.run(library)
    assert len(rep.added) == len(indexed_home.ground_truth["episodes"]) and not rep.failed
    full = indexed_home.app
    n_all, n_ref = len(load_index(make_indexer(indexed_home.settings.home))), len(load_index(ix))
    assert abs(n_ref - n_all) <= 0.15 * n_all
    recognizers = (full.recognizer(), app.recognizer())
    rng = random.Random(21)
    right: dict[str, list[bool]] = {"all": [], "ref": []}
    for ep in indexed_home.ground_truth["episodes"]:
        for t in (rng.uniform(1.0, ep["duration"] - 1.0) for _ in range(4)):
            buf = io.BytesIO()
            Image.fromarray(read_frames_at(indexed_home.library / ep["path"], [t])[0]).save(buf, format="PNG")
            for name, rec in (("all", recognizers[0]), ("ref", recognizers[1])):
                res = rec.recognize(load_media(buf.getvalue()))
                top = res.candidates[0] if res.candidates else None
                path = rec.catalog.episodes[top.episode_id].path if top else ""
                right[name].append(Path(path).name == Path(ep["path"]).name and
                                   (abs(top.time - t) <= 2.0 or top.time_from - 0.5 <= t <= top.time_to + 0.5))
    # the two indexes hold frames up to a couple of video frames apart: a still near the edge
    # of what either answers within 2 s may flip, no more than one of the 24 (the full eval:
    # docs/indexing.md)
    assert sum(right["all"]) >= 0.8 * len(right["all"])
    assert sum(right["ref"]) >= sum(right["all"]) - 1
    assert sum(a != b for a, b in zip(right["all"], right["ref"], strict=True)) <= 2
