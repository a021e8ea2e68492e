"""Files damaged on disk and disks that fill up: refused with a clear message at load, the
previous one kept, nothing half-written committed, `anirec index` repairs what it can."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.app import App
from core.config import Settings
from core.errors import IndexUnavailable
from core.framestore import DamagedPack
from core.index import HnswIndex, read_manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def home_copy(indexed_home: Any, tmp_path: Path) -> App:
    """A private copy of the indexed home, free to damage."""
    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, home)
    return App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]


def _flip_byte(path: Path, at: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _vectors_file(folder: Path) -> Path:
    return folder / read_manifest(folder).files["vectors"].name


# -- a full disk / file-size limit while saving ----------------------------------------------

SAVE_UNDER_LIMIT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from pathlib import Path
    from core.index import HnswIndex
    folder = Path(sys.argv[1])
    idx = HnswIndex.load(folder, embedder_name="t", embedder_version="1", dim=32)
    rng = np.random.default_rng(1)
    idx.add(np.arange(1000, 6000), rng.standard_normal((5000, 32)).astype("float32"))
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        idx.save(folder)
    except OSError as exc:
        print("REFUSED", exc)
        sys.exit(3)
    print("SAVED")
""")


def test_file_size_limit_never_commits_a_truncated_index(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    idx = HnswIndex(32, embedder_name="t", embedder_version="1")
    rng = np.random.default_rng(0)
    idx.add(np.arange(1000), rng.standard_normal((1000, 32)).astype("float32"))
    idx.save(folder)
    before = read_manifest(folder)
    limit = _vectors_file(folder).stat().st_size * 2  # the new file (6,000 vectors) cannot fit
    run = subprocess.run([sys.executable, "-c", SAVE_UNDER_LIMIT, str(folder), str(limit)],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert run.returncode == 3, run.stdout + run.stderr
    assert "written short" in run.stdout and "Traceback" not in run.stderr
    after = read_manifest(folder)
    assert after.version == before.version  # the old index is still the one named
    back = HnswIndex.load(folder, embedder_name="t", embedder_version="1", dim=32)  # and it verifies
    assert len(back) == 1000
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_framestore_write_under_a_size_limit_leaves_the_old_pack(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import resource, sys
        from pathlib import Path
        from core.framestore import FrameStore
        fs = FrameStore(Path(sys.argv[1]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        try:
            fs.write(1, list(range(50)), [0.0] * 50, [0] * 50, [bytes(1000)] * 50, [bytes(432)] * 50)
        except OSError as exc:
            print("REFUSED", exc); sys.exit(3)
    """)
    from core.framestore import FrameStore

    fs = FrameStore(tmp_path / "fs")
    fs.write(1, [1], [0.0], [0], [b"x" * 10], [bytes(432)])
    run = subprocess.run([sys.executable, "-c", code, str(fs.root)], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert run.returncode == 3, run.stdout + run.stderr
    assert len(fs.read(1)) == 1 and sorted(p.name for p in fs.root.iterdir()) == ["ep1.npz"]


# -- damaged files at load -------------------------------------------------------------------


def test_same_size_corrupted_vectors_refused_when_serving(home_copy: App) -> None:
    _flip_byte(_vectors_file(home_copy.settings.index_dir))
    with pytest.raises(IndexUnavailable, match="corrupt"):
        home_copy.recognizer()


def test_flipped_byte_in_regions_refused(home_copy: App) -> None:
    regions = home_copy.settings.index_dir / "regions"
    if not (regions / "manifest.json").exists():
        pytest.skip("the test index has no region vectors")
    _flip_byte(_vectors_file(regions))
    with pytest.raises(IndexUnavailable, match="corrupt"):
        home_copy.recognizer()


async def test_service_keeps_serving_the_old_index_when_a_reload_finds_damage(
        home_copy: App, indexed_home: Any) -> None:
    from core.types import Source

    svc = home_copy.service()
    await svc.start()
    try:
        me = Source("cli", "c", "u")
        first = await svc.recognize(indexed_home.frame_png(0, 8.0), source=me, with_preview=False)
        _flip_byte(_vectors_file(home_copy.settings.index_dir))
        with pytest.raises(IndexUnavailable):
            await svc.reload()
        again = await svc.recognize(indexed_home.frame_png(0, 8.0), source=me, with_preview=False)
        assert again.candidates[0].episode_id == first.candidates[0].episode_id
    finally:
        await svc.close()


async def test_service_started_on_a_damaged_index_says_so(home_copy: App) -> None:
    from bot.chat.texts import user_error_text
    from core.types import Source

    _flip_byte(_vectors_file(home_copy.settings.index_dir))
    svc = home_copy.service()
    await svc.start()
    try:
        assert not svc.ready
        with pytest.raises(IndexUnavailable) as err:
            await svc.recognize(b"x" * 100, source=Source("cli", "c", "u"))
        text = user_error_text(err.value)
        assert "index" in text.lower() and "/" not in text
    finally:
        await svc.close()


def test_anirec_index_rebuilds_a_damaged_index_from_the_frame_store(home_copy: App, indexed_home: Any) -> None:
    folder = home_copy.settings.index_dir
    count = read_manifest(folder).count
    _flip_byte(_vectors_file(folder))
    rep = home_copy.indexer().run(indexed_home.library)
    assert any("damaged" in w for w in rep.warnings)
    assert rep.index_count == count
    home_copy.recognizer()  # loads and verifies again


def test_truncated_frame_pack_refused_and_reindexed(home_copy: App, indexed_home: Any) -> None:
    fs = home_copy.framestore()
    eid = fs.episode_ids()[0]
    path = fs.path(eid)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DamagedPack, match="anirec index"):
        fs.read(eid)
    assert not fs.intact(eid)
    rep = home_copy.indexer().run(indexed_home.library)
    assert any("stored frames were damaged" in w for w in rep.warnings)
    assert fs.intact(eid) and len(fs.read(eid)) > 0


def test_same_size_corrupted_frame_pack_is_caught_on_read(home_copy: App) -> None:
    fs = home_copy.framestore()
    eid = fs.episode_ids()[0]
    _flip_byte(fs.path(eid), 0.5)
    with pytest.raises(DamagedPack):
        fs.read(eid)


def test_identify_batch_survives_a_damaged_frame_pack(home_copy: App, indexed_home: Any,
                                                      tmp_path: Path) -> None:
    fs = home_copy.framestore()
    for eid in fs.episode_ids():
        p = fs.path(eid)
        p.write_bytes(p.read_bytes()[:100])
    shots = []
    for i in range(2):
        p = tmp_path / f"q{i}.png"
        p.write_bytes(indexed_home.frame_png(i, 8.0))
        shots.append(str(p))
    run = subprocess.run([sys.executable, "-m", "bot", "identify", "--json", *shots], capture_output=True,
                         text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT),
                                                    "ANIREC_HOME": str(home_copy.settings.home)})
    lines = [json.loads(x) for x in run.stdout.splitlines() if x.strip()]
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(lines) == 2 and all(d.get("candidates") for d in lines)
    assert "Traceback" not in run.stderr


# -- models ------------------------------------------------------------------------------------


def test_corrupt_promoted_model_refused_and_the_previous_kept(tmp_path: Path) -> None:
    from core.db import open_database
    from core.models.embedder import EmbedderSpec, build_embedder
    from core.models.registry import load_scene_embedder, register_model

    _, sessions = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    models = tmp_path / "models"
    old = build_embedder(EmbedderSpec(arch="tiny", version="old-1"))
    old.save(models / "old.pt")
    register_model(sessions, kind="scene", version="old-1", path=Path("old.pt"), metrics={}, promote=True,
                   models_dir=models)
    new = build_embedder(EmbedderSpec(arch="tiny", version="new-2", seed=5))
    new.save(models / "new.pt")
    register_model(sessions, kind="scene", version="new-2", path=Path("new.pt"), metrics={}, promote=True,
                   models_dir=models)
    assert load_scene_embedder(sessions, models).version == "new-2"
    _flip_byte(models / "new.pt", 0.5)
    assert load_scene_embedder(sessions, models).version == "old-1"
    (models / "new.pt").write_bytes(b"")  # truncated to nothing
    assert load_scene_embedder(sessions, models).version == "old-1"


def test_checkpoint_with_code_is_refused(tmp_path: Path) -> None:
    import torch

    from core.models.checkpoint import BadCheckpoint, load_checkpoint

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pwned",))

    torch.save({"kind": "scene", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(BadCheckpoint, match="not a plain checkpoint"):
        load_checkpoint(tmp_path / "evil.pt", "scene")
