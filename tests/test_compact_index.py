"""The compact region index (core.index.compact): IVF-PQ codes in memory, exact re-ranking
from the full vectors on disk; and the conversion of region vectors saved in full."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from core.errors import IndexMismatch, IndexUnavailable
from core.index import (
    COMPACT_BACKEND,
    MANIFEST_NAME,
    REGIONS_DIR,
    CompactIndex,
    HnswIndex,
    RegionSpec,
    VectorIndex,
    open_index,
    read_manifest,
)

DIM = 64
EMB = {"embedder_name": "scene-test", "embedder_version": "3"}


def clustered(rng: np.random.Generator, n: int, centres: int = 60) -> np.ndarray:
    c = rng.normal(size=(centres, DIM))
    x = c[rng.integers(0, centres, n)] + 0.4 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(q: np.ndarray, ids: np.ndarray, vecs: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(q @ vecs.T), axis=1)[:, :k]]


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_small_index_is_exact(rng: np.random.Generator) -> None:
    vecs = clustered(rng, 500)
    ids = np.arange(500, dtype=np.int64) * 32 + 3
    index = CompactIndex(DIM, pq_m=8, **EMB)
    index.add(ids, vecs)
    assert isinstance(index, VectorIndex) and not index.quantised and len(index) == 500
    q = clustered(rng, 20)
    found, sims = index.search(q, 10)
    assert (found == exact_top(q, ids, vecs, 10)).all()
    assert sims == pytest.approx(np.sort(q @ vecs.T, axis=1)[:, ::-1][:, :10], abs=1e-5)
    found, sims = index.search(q[:1], 600)  # more than it holds: padded
    assert (found[0, 500:] == -1).all() and (sims[0, 500:] == -1.0).all()


def test_quantised_search_recall_and_exact_scores(tmp_path: Path, rng: np.random.Generator
                                                  ) -> None:
    vecs = clustered(rng, 6000)
    ids = np.arange(6000, dtype=np.int64) * 32
    index = CompactIndex(DIM, pq_m=8, train_min=4000, nprobe=16, **EMB)
    for i in range(0, 6000, 1000):  # trained once it holds train_min, then encodes as it goes
        index.add(ids[i:i + 1000], vecs[i:i + 1000])
    assert index.quantised and len(index) == 6000
    q = clustered(rng, 100)
    found, sims = index.search(q, 10)
    truth = exact_top(q, ids, vecs, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.9
    # the scores are the exact inner products of the stored vectors, best first
    rows = found // 32
    assert sims == pytest.approx(np.einsum("nd,nkd->nk", q, vecs[rows]), abs=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    # once saved, memory holds the codes and ids, not the vectors (memory-mapped)
    index.save(tmp_path)
    assert index.memory_bytes() / len(index) < 0.5 * DIM * 4 + 100
    assert (index.search(q, 10)[0] == found).all()


def test_replace_remove_save_load(tmp_path: Path, rng: np.random.Generator) -> None:
    vecs = clustered(rng, 5000)
    ids = np.arange(5000, dtype=np.int64) * 32
    index = CompactIndex(DIM, pq_m=8, train_min=3000, **EMB)
    index.add(ids, vecs)
    new = clustered(rng, 1)
    index.add(ids[:1], new)  # replaced, not added twice
    index.remove([int(ids[1]), 123456789])  # unknown ids ignored
    assert len(index) == 4999
    assert index.vectors(ids[:1]) == pytest.approx(new)
    with pytest.raises(KeyError):
        index.vectors(ids[1:2])
    found, _ = index.search(vecs[1:2], 20)
    assert ids[1] not in found
    index.save(tmp_path)
    back = CompactIndex.load(tmp_path, dim=DIM, **EMB)
    assert len(back) == 4999 and back.quantised and back.version == index.version
    q = clustered(rng, 10)
    assert (back.search(q, 10)[0] == index.search(q, 10)[0]).all()
    assert back.vectors(ids[2:4]) == pytest.approx(vecs[2:4])
    back.add(ids[1:2], vecs[1:2])  # a loaded index takes adds and saves them
    back.save(tmp_path)
    again = CompactIndex.load(tmp_path, dim=DIM, **EMB)
    assert len(again) == 5000 and again.vectors(ids[1:2]) == pytest.approx(vecs[1:2])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        [MANIFEST_NAME] + [f.name for f in again.manifest.files.values()])  # stale files gone


def test_damaged_or_foreign_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    index = CompactIndex(DIM, pq_m=8, **EMB)
    index.add(np.arange(100, dtype=np.int64), clustered(rng, 100))
    index.save(tmp_path)
    with pytest.raises(IndexMismatch, match="--reembed"):
        CompactIndex.load(tmp_path, dim=DIM, embedder_name="scene-test", embedder_version="4")
    vec = tmp_path / index.manifest.files["vectors"].name
    data = bytearray(vec.read_bytes())
    data[-1] ^= 0xFF
    vec.write_bytes(bytes(data))
    with pytest.raises(IndexUnavailable, match="corrupt"):
        CompactIndex.load(tmp_path, dim=DIM, **EMB)


def _old_home(folder: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An index saved before compact codes: its region vectors in a full hnswlib index."""
    spec = RegionSpec()
    index = HnswIndex(DIM, **EMB)
    frames = np.arange(1, 201, dtype=np.int64)
    index.add(frames, clustered(rng, 200))
    index.region_spec = spec
    index.regions = HnswIndex(DIM, **EMB)
    rids = spec.region_ids(frames[:50])
    rvecs = clustered(rng, len(rids))
    index.regions.add(rids, rvecs)
    index.save(folder)
    assert read_manifest(folder / REGIONS_DIR).backend == "hnswlib"
    return rids, rvecs


def test_old_full_regions_load_and_are_converted_by_the_indexer(
        tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture) -> None:
    rids, rvecs = _old_home(tmp_path, rng)
    q = rvecs[:5]
    with caplog.at_level(logging.WARNING, logger="core.index"):
        loaded = HnswIndex.load(tmp_path, dim=DIM, **EMB)  # the recogniser: used as it is
    assert isinstance(loaded.regions, HnswIndex)
    assert "next `anirec index` converts them" in caplog.text
    before = loaded.regions.search(q, 5)[0]
    # the indexer's entry converts it once and saves
    opened = open_index(tmp_path, dim=DIM, regions=RegionSpec(), **EMB)
    assert isinstance(opened.regions, CompactIndex) and len(opened.regions) == len(rids)
    assert read_manifest(tmp_path / REGIONS_DIR).backend == COMPACT_BACKEND
    assert not list((tmp_path / REGIONS_DIR).glob("*.hnsw"))  # the full vectors' file is gone
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["regions"]["count"] == len(rids)
    again = HnswIndex.load(tmp_path, dim=DIM, **EMB)
    assert isinstance(again.regions, CompactIndex)
    assert (again.regions.search(q, 5)[0][:, 0] == before[:, 0]).all()
    assert again.regions.vectors(rids[:3]) == pytest.approx(rvecs[:3])
    # the frames' own removal takes their regions along
    again.remove([1])
    assert len(again.regions) == len(rids) - RegionSpec().n_windows


def test_new_index_keeps_regions_compact(tmp_path: Path) -> None:
    index = open_index(tmp_path, dim=DIM, regions=RegionSpec(), **EMB)
    assert isinstance(index.regions, CompactIndex)
