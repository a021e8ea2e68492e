"""Tests for core.index: the hnswlib-backed VectorIndex, its manifest and atomic save/load."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from core.errors import IndexMismatch, IndexUnavailable
from core.index import MANIFEST_NAME, HnswIndex, IndexManifest, VectorIndex, open_index

DIM = 32
EMB = {"embedder_name": "scene-test", "embedder_version": "3"}


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture()
def filled(rng: np.random.Generator) -> tuple[HnswIndex, np.ndarray, np.ndarray]:
    vecs = unit(rng, 1000)
    ids = np.arange(10_000, 11_000, dtype=np.int64)
    index = HnswIndex(DIM, initial_capacity=100, **EMB)
    index.add(ids, vecs)
    return index, ids, vecs


def test_is_a_vector_index(filled: tuple[HnswIndex, np.ndarray, np.ndarray]) -> None:
    index, _, _ = filled
    assert isinstance(index, VectorIndex)
    assert index.dim == DIM


def test_each_vector_finds_itself(filled: tuple[HnswIndex, np.ndarray, np.ndarray]) -> None:
    index, ids, vecs = filled
    found, sims = index.search(vecs, k=5)
    assert found.dtype == np.int64 and sims.dtype == np.float32
    assert found.shape == sims.shape == (1000, 5)
    recall = float(np.mean(found[:, 0] == ids))
    assert recall >= 0.99
    assert sims[:, 0] == pytest.approx(1.0, abs=1e-4)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # best first


def test_growth_past_initial_capacity(
        filled: tuple[HnswIndex, np.ndarray, np.ndarray]) -> None:
    index, _, _ = filled
    assert len(index) == 1000
    assert index.capacity >= 1000
    assert index.manifest.count == 1000


def test_remove_never_returns_removed(
        filled: tuple[HnswIndex, np.ndarray, np.ndarray]) -> None:
    index, ids, vecs = filled
    gone = set(ids[::2].tolist())
    index.remove(ids[::2])
    index.remove([ids[0], 123456789])  # already removed / unknown: ignored
    assert len(index) == 500
    found, _ = index.search(vecs, k=20)
    assert not gone & set(found.ravel().tolist())
    kept = ids[1::2]
    f2, _ = index.search(vecs[1::2], k=1)
    assert np.mean(f2[:, 0] == kept) >= 0.99
    assert ids[0] not in index and ids[1] in index


def test_removed_slots_are_reused(filled: tuple[HnswIndex, np.ndarray, np.ndarray],
                                  rng: np.random.Generator) -> None:
    index, ids, _ = filled
    index.remove(ids[:300])
    cap = index.capacity
    new = unit(rng, 300)
    index.add(np.arange(300), new)
    assert index.capacity == cap  # filled the deleted slots, no growth
    assert len(index) == 1000
    found, _ = index.search(new, k=1)
    assert np.mean(found[:, 0] == np.arange(300)) >= 0.99


def test_add_existing_id_replaces_vector(
        filled: tuple[HnswIndex, np.ndarray, np.ndarray], rng: np.random.Generator) -> None:
    index, ids, vecs = filled
    fresh = unit(rng, 1)
    index.add(ids[:1], fresh)
    assert len(index) == 1000
    found, sims = index.search(fresh, k=1)
    assert found[0, 0] == ids[0] and sims[0, 0] == pytest.approx(1.0, abs=1e-4)
    found, _ = index.search(vecs[:1], k=3)
    assert ids[0] not in found[0]  # the old vector is gone


def test_readding_a_removed_id_revives_it(
        filled: tuple[HnswIndex, np.ndarray, np.ndarray], rng: np.random.Generator) -> None:
    index, ids, vecs = filled
    index.remove(ids[:10])
    index.add(np.arange(5), unit(rng, 5))  # reuses some removed slots
    index.add(ids[:10], vecs[:10])
    assert len(index) == 1005
    found, _ = index.search(vecs[:10], k=1)
    assert list(found[:, 0]) == list(ids[:10])


def test_duplicate_ids_in_one_batch_last_wins(rng: np.random.Generator) -> None:
    index = HnswIndex(DIM, **EMB)
    v = unit(rng, 3)
    index.add(np.array([7, 7, 8]), v)
    assert len(index) == 2
    found, _ = index.search(v[1:2], k=1)
    assert found[0, 0] == 7


def test_k_larger_than_count_pads(rng: np.random.Generator) -> None:
    index = HnswIndex(DIM, **EMB)
    v = unit(rng, 3)
    index.add(np.array([1, 2, 3]), v)
    found, sims = index.search(v, k=10)
    assert found.shape == (3, 10)
    assert set(found[0, :3].tolist()) == {1, 2, 3}
    assert (found[:, 3:] == -1).all() and (sims[:, 3:] == -1.0).all()


def test_empty_index_search(rng: np.random.Generator) -> None:
    index = HnswIndex(DIM, **EMB)
    found, sims = index.search(unit(rng, 2), k=4)
    assert (found == -1).all() and (sims == -1.0).all() and found.shape == (2, 4)
    index.add(np.array([1]), unit(rng, 1))
    index.remove([1])
    found, _ = index.search(unit(rng, 1), k=4)
    assert (found == -1).all()


def test_bad_input_is_rejected(rng: np.random.Generator) -> None:
    index = HnswIndex(DIM, **EMB)
    with pytest.raises(ValueError, match="shape"):
        index.add(np.array([1]), unit(rng, 1, dim=DIM + 1))
    with pytest.raises(ValueError, match=">= 0"):
        index.add(np.array([-1]), unit(rng, 1))
    with pytest.raises(ValueError, match="ids for"):
        index.add(np.array([1, 2]), unit(rng, 1))
    with pytest.raises(ValueError, match="k must"):
        index.search(unit(rng, 1), k=0)


def test_save_load_round_trip(filled: tuple[HnswIndex, np.ndarray, np.ndarray],
                              tmp_path: Path) -> None:
    index, ids, vecs = filled
    index.remove(ids[:50])
    index.save(tmp_path)
    m = index.manifest
    assert m.count == 950 and m.version.startswith("3-950-")
    loaded = HnswIndex.load(tmp_path, dim=DIM, **EMB)
    assert len(loaded) == 950 and loaded.manifest == m
    a_ids, a_sims = index.search(vecs, k=10)
    b_ids, b_sims = loaded.search(vecs, k=10)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_allclose(a_sims, b_sims)
    # The manifest is plain JSON with what the issue asks for.
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    for key in ("format_version", "backend", "space", "dim", "M", "ef_construction",
                "embedder_name", "embedder_version", "count", "created_at", "updated_at",
                "version"):
        assert key in raw
    assert raw["files"]["vectors"]["size"] > 0 and len(raw["files"]["vectors"]["sha256"]) == 64
    assert IndexManifest.from_json(raw) == m


def test_every_save_is_a_new_version_and_old_files_go(
        filled: tuple[HnswIndex, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    index, _, _ = filled
    index.save(tmp_path)
    v1 = index.manifest.version
    index.save(tmp_path)
    v2 = index.manifest.version
    assert v1 != v2
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([MANIFEST_NAME, f"vectors-{v2}.hnsw", f"deleted-{v2}.npy"])


def test_crash_before_manifest_keeps_old_version(
        filled: tuple[HnswIndex, np.ndarray, np.ndarray], tmp_path: Path,
        rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    index, _, vecs = filled
    index.save(tmp_path)
    old_version = index.manifest.version
    index.add(np.array([1]), unit(rng, 1))
    import core.index.manifest as mod
    real = mod.commit_temp

    def crash_on_manifest(tmp: Path, final: Path) -> object:
        if final.name == MANIFEST_NAME:
            raise OSError("disk full")
        return real(tmp, final)

    monkeypatch.setattr(mod, "commit_temp", crash_on_manifest)
    with pytest.raises(OSError):
        index.save(tmp_path)
    monkeypatch.undo()
    loaded = HnswIndex.load(tmp_path, dim=DIM, **EMB)
    assert loaded.manifest.version == old_version and len(loaded) == 1000


@pytest.mark.parametrize("field,value,expect", [
    ("embedder_name", "other-net", "scene-test v3"),
    ("embedder_version", "4", "scene-test v3"),
    ("dim", DIM * 2, "scene-test v3"),
])
def test_mismatch_is_refused(filled: tuple[HnswIndex, np.ndarray, np.ndarray],
                             tmp_path: Path, field: str, value: object, expect: str) -> None:
    index, _, _ = filled
    index.save(tmp_path)
    kwargs: dict[str, object] = {"dim": DIM, **EMB, field: value}
    with pytest.raises(IndexMismatch) as err:
        HnswIndex.load(tmp_path, **kwargs)  # type: ignore[arg-type]
    msg = str(err.value)
    assert f"built by embedder {expect}" in msg
    assert "anirec index --reembed" in msg


def test_truncated_file_is_detected(filled: tuple[HnswIndex, np.ndarray, np.ndarray],
                                    tmp_path: Path) -> None:
    index, _, _ = filled
    index.save(tmp_path)
    data = tmp_path / index.manifest.files["vectors"].name
    size = data.stat().st_size
    with open(data, "r+b") as f:
        f.truncate(size // 2)
    for verify in (True, False):
        with pytest.raises(IndexUnavailable, match="truncated"):
            HnswIndex.load(tmp_path, dim=DIM, verify=verify, **EMB)


def test_corrupt_file_is_detected(filled: tuple[HnswIndex, np.ndarray, np.ndarray],
                                  tmp_path: Path) -> None:
    index, _, _ = filled
    index.save(tmp_path)
    data = tmp_path / index.manifest.files["vectors"].name
    with open(data, "r+b") as f:
        f.seek(1000)
        f.write(b"\xff" * 16)
    with pytest.raises(IndexUnavailable, match="checksum"):
        HnswIndex.load(tmp_path, dim=DIM, **EMB)


def test_missing_and_broken_manifest(tmp_path: Path) -> None:
    with pytest.raises(IndexUnavailable, match="anirec index"):
        HnswIndex.load(tmp_path, dim=DIM, **EMB)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(IndexUnavailable, match="corrupt"):
        HnswIndex.load(tmp_path, dim=DIM, **EMB)
    with pytest.raises(IndexUnavailable):
        open_index(tmp_path, dim=DIM, **EMB)  # damaged is not "missing": no silent reset


def test_open_index_creates_then_loads(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = tmp_path / "index"
    index = open_index(folder, dim=DIM, initial_capacity=4, **EMB)
    assert len(index) == 0
    index.add(np.arange(10), unit(rng, 10))
    index.save(folder)
    again = open_index(folder, dim=DIM, **EMB)
    assert len(again) == 10 and again.version == index.version
    with pytest.raises(IndexMismatch):
        open_index(folder, dim=DIM, embedder_name="scene-test", embedder_version="9")


def test_concurrent_searches_and_writes(rng: np.random.Generator) -> None:
    index = HnswIndex(DIM, initial_capacity=16, **EMB)
    base = unit(rng, 200)
    index.add(np.arange(200), base)
    errors: list[BaseException] = []

    def searcher(k: int) -> None:
        try:
            for _ in range(30):
                found, _ = index.search(base[:4], k=k)
                assert found[0, 0] >= 0
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(k,)) for k in (5, 50, 150)]
    for t in threads:
        t.start()
    for j in range(10):
        index.add(np.arange(1000 + 50 * j, 1050 + 50 * j), unit(rng, 50))
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 700
