"""The Milvus vector backend (core/index/milvus.py) against a real Milvus on this machine.

Milvus Lite (a local file, no server) in the default run; the standalone server of the PyPI
`milvus` package, started here on 127.0.0.1, in the slow run. Each skips saying why when its
Milvus cannot be had. Real catalog, real frame store, real sample-library videos.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from bot.app import App
from core.config import Settings
from core.errors import IndexMismatch, IndexUnavailable
from core.index import HnswIndex, RegionSpec, region_frame_ids
from tests.conftest import IndexedHome

pymilvus = pytest.importorskip("pymilvus", reason="pymilvus is not installed (the `milvus` extra)")


def _lite_available() -> str | None:
    try:
        import milvus_lite  # noqa: F401
    except ImportError as exc:
        return f"milvus-lite is not installed ({exc})"
    return None


lite_only = pytest.mark.skipif(_lite_available() is not None, reason=str(_lite_available()))


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A standalone Milvus server on 127.0.0.1 for this module; its URI."""
    from core.index.milvus_local import MilvusStartError, start_standalone

    try:
        srv = start_standalone(tmp_path_factory.mktemp("milvus-server"), timeout_s=300)
    except MilvusStartError as exc:
        pytest.skip(f"no standalone Milvus: {exc}")
    try:
        yield srv.uri
    finally:
        srv.stop()


def _settings(home: Path, uri: str, **kw: object) -> Settings:
    return Settings(_env_file=None, home=home, vector_backend="milvus",  # type: ignore[call-arg]
                    milvus_uri=uri, **kw)


def _copy_home(src: Path, dst: Path) -> None:
    """The indexed home without its hnswlib index (the catalog, frame store and models)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("index", "milvus.db*"))


@pytest.fixture(scope="module")
def milvus_home(indexed_home: IndexedHome, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[App]:
    """The sample library's home on Milvus Lite, holding the very vectors of its hnswlib
    index (so answers can be compared exactly; `test_reembed_into_milvus` embeds anew)."""
    if (why := _lite_available()) is not None:
        pytest.skip(why)
    from core.index.milvus import MilvusIndex

    home = tmp_path_factory.mktemp("milvus-home") / "home"
    _copy_home(indexed_home.settings.home, home)
    app = App.from_settings(_settings(home, str(home / "milvus.db")))
    hn = indexed_home.app.recognizer().index
    assert isinstance(hn, HnswIndex) and hn.regions is not None and hn.region_spec is not None
    cfg = app.milvus_config()
    assert cfg is not None
    mv = MilvusIndex.new(hn.dim, cfg, embedder_name=hn.embedder_name,
                         embedder_version=hn.embedder_version, regions=hn.region_spec)
    assert mv.regions is not None
    mv.add(hn.ids(), hn.vectors(hn.ids()))
    mv.regions.add(hn.regions.ids(), hn.regions.vectors(hn.regions.ids()))
    mv.save(app.settings.index_dir)
    yield app


def _frame_rows(app: App) -> list[tuple[int, int, int, float]]:
    from core.db.models import Episode, Frame

    with app.sessions() as s:
        q = select(Frame.id, Episode.series_id, Frame.episode_id, Frame.t).join(Episode)
        return [(int(a), int(b), int(c), float(d)) for a, b, c, d in s.execute(q)]


# -- the sample library on Milvus Lite ---------------------------------------------------------

@lite_only
def test_identify_gives_the_same_answers_as_hnswlib(indexed_home: IndexedHome,
                                                    milvus_home: App) -> None:
    from core.index.milvus import MilvusIndex
    from core.media import load_media

    hn, mv = indexed_home.app.recognizer(), milvus_home.recognizer()
    assert isinstance(mv.index, MilvusIndex) and isinstance(hn.index, HnswIndex)
    assert len(mv.index) == len(hn.index) > 0
    assert mv.index.regions is not None and hn.index.regions is not None
    assert len(mv.index.regions) == len(hn.index.regions) > 0
    n_eps = len(indexed_home.ground_truth["episodes"])
    for ep, t in [(e, 3.0 + 2.5 * e) for e in range(n_eps)]:
        media = load_media(indexed_home.frame_png(ep, t))
        a, b = hn.recognize(media), mv.recognize(media)
        assert a.status == b.status
        got = [(c.series.title, c.episode_id, round(c.time, 1)) for c in b.candidates[:3]]
        want = [(c.series.title, c.episode_id, round(c.time, 1)) for c in a.candidates[:3]]
        assert got == want, (ep, t)
        assert abs(b.confidence - a.confidence) < 1e-3


@lite_only
def test_same_neighbours_and_stored_fields(indexed_home: IndexedHome, milvus_home: App) -> None:
    from core.index.milvus import MilvusIndex

    hn, mv = indexed_home.app.recognizer().index, milvus_home.recognizer().index
    assert isinstance(mv, MilvusIndex) and isinstance(hn, HnswIndex)
    ids = hn.ids()
    assert np.array_equal(mv.ids(), ids)
    pick = ids[:: max(1, len(ids) // 25)]
    q = hn.vectors(pick)
    assert np.allclose(mv.vectors(pick), q, atol=1e-6)
    mi, ms = mv.search(q, 10)
    # each stored frame finds itself (first, or tied with an identical still frame)
    assert all(p in row for p, row in zip(pick, mi, strict=True))
    exact = ids[np.argsort(-(q @ hn.vectors(ids).T), axis=1)[:, :10]]
    hi, _ = hn.search(q, 10)
    for m, h, e in zip(mi, hi, exact, strict=True):
        assert len(set(m) & set(e)) >= 9 and len(set(m) & set(h)) >= 9
    assert np.allclose(ms[:, 0], 1.0, atol=1e-4)
    assert (np.diff(ms, axis=1) <= 1e-6).all()  # best first
    rows = {fid: (sid, eid, t) for fid, sid, eid, t in _frame_rows(milvus_home)}
    for fid, (sid, eid, t) in mv.fields(pick).items():
        assert (sid, eid) == rows[fid][:2] and abs(t - rows[fid][2]) < 1e-3


@lite_only
def test_series_filtered_search(milvus_home: App) -> None:
    from core.index.milvus import MilvusIndex

    index = milvus_home.recognizer().index
    assert isinstance(index, MilvusIndex)
    rows = _frame_rows(milvus_home)
    series = sorted({r[1] for r in rows})
    assert len(series) >= 2
    own = [r for r in rows if r[1] == series[0]][:5]
    q = index.vectors(np.array([r[0] for r in own]))
    other = series[1:]
    ids, sims = index.search_in_series(q, 20, other)
    found = index.fields(ids[ids >= 0])
    assert found and {s for s, _, _ in found.values()} <= set(other)
    assert not set(ids.reshape(-1).tolist()) & {r[0] for r in own}
    ids, sims = index.search_in_series(q, 5, [series[0]])
    assert all(r[0] in row for r, row in zip(own, ids, strict=True))  # (openings repeat)
    assert {s for s, _, _ in index.fields(ids[ids >= 0]).values()} == {series[0]}
    assert np.allclose(sims[:, 0], 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="at least one series"):
        index.search_in_series(q, 5, [])


@lite_only
def test_backend_switch_without_reembed_is_refused(indexed_home: IndexedHome,
                                                   tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, home, ignore=shutil.ignore_patterns("milvus.db*"))
    app = App.from_settings(_settings(home, str(tmp_path / "m.db")))
    with pytest.raises(IndexMismatch, match="reembed"):
        app.recognizer()
    with pytest.raises(IndexMismatch, match="reembed"):
        app.indexer().run(indexed_home.library)
    # and back: a Milvus index folder is refused by the hnswlib backend
    assert json.loads((home / "index" / "manifest.json").read_text())["backend"] == "hnswlib"


@lite_only
@pytest.mark.slow
def test_reembed_into_milvus(indexed_home: IndexedHome, tmp_path: Path) -> None:
    """Moving a home onto Milvus the documented way: `anirec index --reembed`."""
    from core.index.milvus import MilvusIndex
    from core.media import load_media

    home = tmp_path / "home"
    _copy_home(indexed_home.settings.home, home)
    app = App.from_settings(_settings(home, str(home / "milvus.db")))
    rep = app.indexer().run(indexed_home.library, reembed=True)
    hn = indexed_home.app.recognizer()
    assert rep.index_count == len(hn.index) and rep.region_count == len(hn.index.regions or ())
    rec = app.recognizer()
    assert isinstance(rec.index, MilvusIndex)
    for ep in range(len(indexed_home.ground_truth["episodes"])):
        media = load_media(indexed_home.frame_png(ep, 4.0))
        a, b = hn.recognize(media), rec.recognize(media)
        assert a.status == b.status
        assert [(c.episode_id, round(c.time)) for c in a.candidates[:1]] == \
            [(c.episode_id, round(c.time)) for c in b.candidates[:1]]


# -- the index protocol, on random vectors --------------------------------------------------------

def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _protocol_checks(uri: str, folder: Path) -> None:
    from core.index.milvus import MilvusConfig, MilvusIndex

    dim = 16
    fields = {i: (i % 3, i // 10, 0.5 * i) for i in range(60)}

    def frame_fields(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = [fields.get(int(i), (-1, -1, -1.0)) for i in ids]
        return (np.array([g[0] for g in got], np.int64), np.array([g[1] for g in got], np.int64),
                np.array([g[2] for g in got], np.float32))

    cfg = MilvusConfig(uri=uri, collection="proto", frame_fields=frame_fields)
    ix = MilvusIndex.new(dim, cfg, embedder_name="t", embedder_version="1",
                         regions=RegionSpec())
    v = _unit(60, dim, 0)
    ix.add(np.arange(60), v)
    assert len(ix) == 60
    ids, sims = ix.search(v[:4], 100)  # more than there are: padded
    assert (ids[:, 0] == np.arange(4)).all() and (ids[:, 60:] == -1).all()
    assert (sims[:, 60:] == -1.0).all() and np.allclose(sims[:, 0], 1.0, atol=1e-4)
    ix.add(np.array([5]), v[7:8])  # replaced, not duplicated
    assert len(ix) == 60 and np.allclose(ix.vectors(np.array([5])), v[7:8], atol=1e-6)
    ix.remove([1, 2, 999])  # unknown ids ignored
    assert len(ix) == 58 and 1 not in ix.ids()
    with pytest.raises(KeyError):
        ix.vectors(np.array([1]))
    with pytest.raises(ValueError):
        ix.add(np.array([-1]), v[:1])
    with pytest.raises(ValueError):
        ix.add(np.array([70]), np.full((1, dim), np.nan, np.float32))
    # region vectors go with their frame
    assert ix.regions is not None and ix.region_spec is not None
    rids = ix.region_spec.region_ids(np.array([10, 11]))
    ix.regions.add(rids, _unit(len(rids), dim, 1))
    assert len(ix.regions) == len(rids)
    assert set(region_frame_ids(ix.regions.ids()).tolist()) == {10, 11}
    ix.remove([10])
    assert set(region_frame_ids(ix.regions.ids()).tolist()) == {11}
    ix.remove_episode(1)  # frames 10..19 (and 11's regions)
    assert len(ix.regions) == 0 and not set(range(10, 20)) & set(ix.ids().tolist())
    ix.save(folder)
    m = json.loads((folder / "manifest.json").read_text())
    assert m["backend"] == "milvus" and m["count"] == len(ix) == 48
    back = MilvusIndex.load(folder, cfg, embedder_name="t", embedder_version="1", dim=dim)
    assert back.version == ix.version and len(back) == 48 and back.regions is not None
    with pytest.raises(IndexMismatch, match="reembed"):
        MilvusIndex.load(folder, cfg, embedder_name="t", embedder_version="2", dim=dim)
    with pytest.raises(IndexMismatch):
        HnswIndex.load(folder, embedder_name="t", embedder_version="1", dim=dim)
    # a rebuild goes to new collections; the old ones are dropped once it is saved
    old = ix.collection
    ix2 = MilvusIndex.new(dim, cfg, embedder_name="t", embedder_version="1")
    ix2.add(np.arange(3), v[:3])
    assert MilvusIndex.load(folder, cfg, embedder_name="t", embedder_version="1",
                            dim=dim).collection == old  # not saved yet: the old one is served
    ix2.save(folder)
    ix3 = MilvusIndex.new(dim, cfg, embedder_name="t", embedder_version="1")
    ix3.save(folder)
    names = set(ix3._client.list_collections())
    assert old not in names and ix2.collection in names and ix3.collection in names


@lite_only
def test_protocol_on_milvus_lite(tmp_path: Path) -> None:
    _protocol_checks(str(tmp_path / "m.db"), tmp_path / "index")


def test_unreachable_milvus_is_a_clear_error(tmp_path: Path) -> None:
    from core.index.milvus import MilvusConfig, MilvusIndex

    cfg = MilvusConfig(uri="http://user:secret@127.0.0.1:9", timeout_s=1.0)
    with pytest.raises(IndexUnavailable) as err:
        MilvusIndex.new(8, cfg, embedder_name="t", embedder_version="1")
    assert "127.0.0.1:9" in str(err.value) and "secret" not in str(err.value)


def test_missing_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from core.errors import MissingExtra
    from core.index.milvus import MilvusConfig, connect

    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(MissingExtra, match=r"pip install 'anirec\[milvus\]'"):
        connect(MilvusConfig(uri="x.db"))


def test_bad_milvus_settings_are_refused() -> None:
    from core.errors import ConfigError
    from core.index.milvus import MilvusConfig

    with pytest.raises(ValueError, match="index type"):
        MilvusConfig(uri="x.db", index_type="ANNOY")
    with pytest.raises(ValueError, match="collection"):
        MilvusConfig(uri="x.db", collection="1bad-name")
    with pytest.raises((ConfigError, ValueError)):
        Settings(_env_file=None, vector_backend="faiss")  # type: ignore[call-arg]


# -- episode removal, through `anirec index` -------------------------------------------------------

def _removal_checks(uri: str, tmp_path: Path) -> None:
    from core.db.models import Episode
    from core.index.milvus import MilvusIndex
    from data.synth import generate_library

    lib = tmp_path / "library"
    generate_library(lib, series=1, episodes=2, seconds=10.0, seed=11)
    app = App.from_settings(_settings(tmp_path / "home", uri))
    rep = app.indexer().run(lib)
    assert not rep.failed and rep.index_count > 0
    index = app.recognizer().index
    assert isinstance(index, MilvusIndex) and index.regions is not None
    with app.sessions() as s:
        eps = {e.path: e.id for e in s.scalars(select(Episode))}
    rows = _frame_rows(app)
    gone_path, gone_id = sorted(eps.items())[0]
    gone_frames = {r[0] for r in rows if r[2] == gone_id}
    assert gone_frames and gone_frames <= set(index.ids().tolist())
    assert gone_frames & set(region_frame_ids(index.regions.ids()).tolist())
    before, regions_before = len(index), len(index.regions)
    assert Path(gone_path).is_relative_to(lib.resolve())
    Path(gone_path).unlink()
    rep = app.indexer().run(lib)
    assert rep.frames_removed == len(gone_frames)
    index = app.recognizer().index
    assert isinstance(index, MilvusIndex) and index.regions is not None
    assert len(index) == before - len(gone_frames)
    left = set(index.ids().tolist())
    assert not gone_frames & left
    assert left == {r[0] for r in _frame_rows(app)}
    assert not gone_frames & set(region_frame_ids(index.regions.ids()).tolist())
    assert len(index.regions) < regions_before
    assert not [f for f, (_, e, _) in index.fields(np.array(sorted(left))).items() if e == gone_id]


@lite_only
def test_episode_removal_deletes_its_vectors_lite(tmp_path: Path) -> None:
    _removal_checks(str(tmp_path / "m.db"), tmp_path)


# -- the same against the standalone server -----------------------------------------------------------

@pytest.mark.slow
def test_protocol_on_standalone_milvus(milvus_server: str, tmp_path: Path) -> None:
    _protocol_checks(milvus_server, tmp_path / "index")


@pytest.mark.slow
def test_episode_removal_on_standalone_milvus(milvus_server: str, tmp_path: Path) -> None:
    _removal_checks(milvus_server, tmp_path)


@pytest.mark.slow
def test_index_types_on_standalone_milvus(milvus_server: str) -> None:
    from core.index.milvus import MilvusConfig, MilvusIndex

    v = _unit(3000, 32, 2)
    for it in ("HNSW", "IVF_SQ8", "IVF_PQ", "FLAT"):
        cfg = MilvusConfig(uri=milvus_server, collection=f"types_{it.lower()}", index_type=it,
                           nlist=16, nprobe=16, pq_m=8)
        ix = MilvusIndex.new(32, cfg, embedder_name="t", embedder_version="1")
        ix.add(np.arange(3000), v)
        ix.flush()
        ix.wait_indexed(timeout_s=300)
        ids, _ = ix.search(v[:20], 10)
        hit = float(np.mean(ids[:, 0] == np.arange(20)))
        assert hit >= (0.8 if it == "IVF_PQ" else 1.0), it
        ix._client.drop_collection(ix.collection)


def test_env_names_milvus_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.config import load_settings

    monkeypatch.setenv("ANIREC_HOME", str(tmp_path))
    monkeypatch.setenv("ANIREC_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("ANIREC_MILVUS_URI", "http://127.0.0.1:19530")
    monkeypatch.setenv("ANIREC_MILVUS_INDEX", "IVF_SQ8")
    st = load_settings()
    cfg = App.from_settings(st).milvus_config()
    assert cfg is not None and cfg.uri == "http://127.0.0.1:19530" and cfg.index_type == "IVF_SQ8"
    monkeypatch.setenv("ANIREC_VECTOR_BACKEND", "hnsw")
    assert App.from_settings(load_settings()).milvus_config() is None
    assert replace(cfg, index_type="HNSW").search_params(300) == {"ef": 300}
    assert os.environ["ANIREC_MILVUS_URI"]  # only read through Settings
