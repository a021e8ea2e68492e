"""Indexing on a real local Ray (2 workers, data/parallel.py): the same index as the serial
indexer, and a run stopped mid-way is continued by the next one (`anirec index --ray`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from bot.app import App
from bot.cli import main as cli_main
from core.config import Settings
from core.db.models import Episode, Frame, Shot
from core.index import HnswIndex
from data.parallel import RayRunner, make_runner
from data.prepare import SerialRunner
from tests.test_indexer import interrupt_on_write

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Any:
    """One real local Ray with 2 worker CPUs for the module (a runner uses a Ray that is
    already up and leaves it running; `bench.bench_index_speed` times one it starts itself)."""
    RayRunner(workers=2)._init(ray)
    yield
    ray.shutdown()


def _app(home: Path) -> App:
    return App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]


def snapshot(app: App, root: Path) -> dict[str, Any]:
    """Everything an index run stores, keyed by the episode's path under `root`."""
    ix = app.indexer()
    e = ix.embedder
    index = HnswIndex.load(ix.index_dir, embedder_name=e.name, embedder_version=e.version, dim=e.dim)
    spec = index.region_spec
    assert spec is not None and index.regions is not None
    have_regions = set(index.regions.ids().tolist())
    out: dict[str, Any] = {}
    with app.sessions() as s:
        for ep in s.scalars(select(Episode).order_by(Episode.path)):
            assert ep.status == "indexed", ep.path
            frames = list(s.scalars(select(Frame).where(Frame.episode_id == ep.id).order_by(Frame.t)))
            shots = list(s.execute(select(Shot.start, Shot.end).where(Shot.episode_id == ep.id)
                                   .order_by(Shot.idx)))
            ids = np.array([f.id for f in frames])
            stored = app.framestore().read(ep.id)
            region_ids = np.array([r for r in spec.region_ids(ids).tolist() if r in have_regions])
            out[Path(ep.path).relative_to(root.resolve()).as_posix()] = {
                "times": [f.t for f in frames], "oped": [f.oped for f in frames], "shots": shots,
                "vectors": index.vectors(ids),
                "regions": index.regions.vectors(region_ids) if len(region_ids) else None,
                "n_regions": len(region_ids), "jpegs": [stored.jpeg(i) for i in range(len(stored))],
                "duration": ep.duration}
    return out


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        x, y = a[k], b[k]
        assert x["times"] == y["times"], k
        assert x["oped"] == y["oped"] and x["shots"] == y["shots"] and x["duration"] == y["duration"], k
        assert np.array_equal(x["vectors"], y["vectors"]), k
        assert x["n_regions"] == y["n_regions"] > 0, k
        assert np.array_equal(x["regions"], y["regions"]), k
        assert x["jpegs"] == y["jpegs"], k


def test_ray_with_two_workers_indexes_like_serial(indexed_home: Any, tmp_path: Path) -> None:
    """The session's library indexed by the serial indexer (the fixture) and again on a real
    local Ray with 2 workers: the same frames, shots, flags, vectors, region vectors, thumbnails."""
    app = _app(tmp_path / "home")
    ix = app.indexer()
    ix.runner = RayRunner(workers=2)
    rep = ix.run(indexed_home.library)
    assert not rep.failed and len(rep.added) == 6
    assert_same(snapshot(indexed_home.app, indexed_home.library), snapshot(app, indexed_home.library))
    again = ix.run(indexed_home.library)
    assert again.unchanged == 6 and again.frames_embedded == 0


@pytest.mark.slow  # ~60 s on a quiet machine: two more Ray runs
def test_ray_run_stopped_midway_is_continued(indexed_home: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """Ctrl-C while the driver writes the 4th episode (3 committed): the next `anirec index
    --ray` keeps those, redoes the rest, and ends with the serial index; a corrupt file among
    them is reported failed by the worker and nothing of it is written."""
    lib = tmp_path / "lib"
    shutil.copytree(indexed_home.library, lib)
    bad = lib / "Broken Show" / "Broken Show - 01.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 5000)
    home = tmp_path / "home"
    undo = interrupt_on_write(monkeypatch, 4)
    ix = _app(home).indexer()
    ix.runner = RayRunner(workers=2)
    with pytest.raises(KeyboardInterrupt):
        ix.run(lib)
    undo()
    with _app(home).sessions() as s:
        assert len(list(s.scalars(select(Episode).where(Episode.status == "indexed")))) == 3

    monkeypatch.setenv("ANIREC_HOME", str(home))
    monkeypatch.setenv("ANIREC_INDEX_WORKERS", "2")
    assert cli_main(["index", str(lib), "--ray", "--quiet"]) == 0
    out = capsys.readouterr().out
    # the 4th episode's row was written `pending` before the Ctrl-C: it is redone as an update
    m = re.search(r"(\d+) added, (\d+) updated, 0 removed, 3 unchanged, 1 failed", out)
    assert m and int(m[1]) + int(m[2]) == 3 and "ray (local, 2 workers)" in out
    assert "FAILED Broken Show/Broken Show - 01.mp4" in out
    app = _app(home)
    with app.sessions() as s:
        broken = s.scalar(select(Episode).where(Episode.path.like("%Broken Show%")))
        assert broken is not None and broken.status == "failed"
        assert not list(s.scalars(select(Frame.id).where(Frame.episode_id == broken.id)))
        s.delete(broken)  # compare the rest with the serial index
        s.commit()
    assert_same(snapshot(indexed_home.app, indexed_home.library), snapshot(app, lib))


def test_the_settings_pick_the_runner(tmp_path: Path) -> None:
    assert isinstance(make_runner(0), SerialRunner) and isinstance(make_runner(1), SerialRunner)
    assert isinstance(make_runner(2), RayRunner) and make_runner(3).describe() == "ray (local, 3 workers)"
    assert make_runner(0, "ray://head:10001").describe() == "ray (ray://head:10001)"
    app = App.from_settings(Settings(_env_file=None, home=tmp_path, index_workers=2))  # type: ignore[call-arg]
    assert isinstance(app.indexer().runner, RayRunner)
    assert isinstance(_app(tmp_path).indexer().runner, SerialRunner)
