"""`kill -9` in the middle of `anirec retrain` and of an index save (`anirec index`): the real
commands run in a child process, paused at a chosen point and killed with SIGKILL (no
clean-up handler runs). The model or index that was served before stays the one served and
verifies, `anirec models` / `anirec status` agree with what is on disk, and the next run
recovers (finishes, leaves no temp files, status and index agree again)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, func, update

from bot.app import App
from core.config import Settings
from core.db.models import Episode, Feedback, ModelVersion, Query
from core.index import HnswIndex, read_manifest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)

# The child: patch one function of the real code path to announce the point and hang there,
# then run the real CLI. The parent kills it with SIGKILL once the marker file appears.
DRIVER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    marker, point, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]

    def hang():
        marker.write_text(str(os.getpid()))
        time.sleep(600)

    def before(mod, name, when=lambda *a, **k: True):
        real = getattr(mod, name)
        def wrapped(*a, **k):
            if when(*a, **k):
                hang()
            return real(*a, **k)
        setattr(mod, name, wrapped)

    def after(obj, name):
        real = getattr(obj, name)
        def wrapped(*a, **k):
            out = real(*a, **k)
            hang()
            return out
        setattr(obj, name, wrapped)

    if point == "retrain-fit":           # learning the adapter
        import training.retrain as m; before(m, "fit_ridge_adapter")
    elif point == "retrain-bundle":      # the adapter written into the temp bundle, the rest not
        import core.models.adapter as m; after(m.QueryAdapter, "save")
    elif point == "retrain-register":    # the bundle complete, the version not yet recorded
        import core.models.registry as m; before(m, "register_model")
    elif point == "save-vectors":        # the new graph written to its temp file, not renamed
        import core.index.hnsw as m
        before(m, "commit_temp", lambda tmp, final: final.name.startswith("vectors-")
               and final.parent.name != "regions")
    elif point == "save-manifest":       # regions and data files committed, manifest not
        import core.index.hnsw as m
        before(m, "write_manifest", lambda folder, man: folder.name != "regions")
    else:
        raise SystemExit("unknown point " + point)
    from bot.cli import main
    sys.exit(main(argv))
""")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIREC_")}
    return {**env, "PYTHONPATH": str(ROOT), "ANIREC_HOME": str(home), "OMP_NUM_THREADS": "1",
            "ANIREC_TORCH_THREADS": "1", "ANIREC_RETRAIN_SUITE_QUERIES": "0"}


def kill_at(point: str, home: Path, argv: list[str], tmp_path: Path, timeout: float = 240) -> None:
    """Run `anirec ARGV` until it reaches `point`, then SIGKILL it."""
    marker = tmp_path / f"reached-{point}"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(marker), point, *argv], cwd=tmp_path,
                            env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"{point}: the run ended before the point ({proc.returncode}): "
                                     f"{proc.stdout.read() if proc.stdout else ''}")
            assert time.monotonic() < deadline, f"{point} not reached in {timeout} s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def anirec(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`anirec ARGV` on `home`, in this process (the next run after the kill; a fresh App)."""
    import contextlib
    import io

    from bot.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in _env(home)}
    os.environ.update({k: v for k, v in _env(home).items() if k.startswith("ANIREC_")})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    finally:
        for k, v in saved.items():
            if k.startswith("ANIREC_"):
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return subprocess.CompletedProcess(list(argv), rc, out.getvalue(), err.getvalue())


def _answer(app: App, png: bytes) -> str:
    """The top series a freshly loaded recogniser answers for `png` (the served state)."""
    from core.media import load_media

    res = app.recognizer().recognize(load_media(png))
    return f"{res.candidates[0].series.title} {res.candidates[0].episode_id}" if res.candidates else ""


# -- retrain -----------------------------------------------------------------------------------

@pytest.fixture()
def voted_home(indexed_home: Any, tmp_path: Path) -> Iterator[Any]:
    """A copy of the indexed home with an adapter promoted by hand (the model being served)
    and voted answers to learn from."""
    from core.models.adapter import QueryAdapter
    from core.models.registry import register_model
    from tests.test_learning import _voted_home

    h = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, h)
    app = App.from_settings(Settings(_env_file=None, home=h))  # type: ignore[call-arg]
    with app.sessions() as s:
        s.execute(delete(Feedback))
        s.execute(delete(Query))
        s.execute(delete(ModelVersion).where(ModelVersion.kind == "adapter"))
        s.commit()
    emb = app.embedder()
    rel = Path("retrain") / "adapter-old"  # a bundle folder, as `anirec retrain` writes it
    QueryAdapter(np.eye(emb.dim, dtype=np.float32), "adapter-old", emb.version).save(
        app.settings.models_dir / rel / "adapter.npz")
    register_model(app.sessions, kind="adapter", version="adapter-old", path=rel, metrics={}, promote=True)
    _voted_home(type("H", (), {"app": app, "ih": indexed_home})(), 10)
    yield type("Home", (), {"app": app, "path": h, "ih": indexed_home})()


RETRAIN_POINTS = [pytest.param("retrain-bundle", marks=pytest.mark.slow),
                  pytest.param("retrain-fit", marks=pytest.mark.slow),
                  pytest.param("retrain-register", marks=pytest.mark.slow)]


@pytest.mark.parametrize("point", RETRAIN_POINTS)
def test_kill9_during_retrain_keeps_the_served_model(voted_home: Any, tmp_path: Path, point: str) -> None:
    from core.models.registry import deployed_state

    app, st = voted_home.app, voted_home.app.settings
    png = voted_home.ih.frame_png(1, 6.0)
    served, answer = deployed_state(app.sessions, st.models_dir, st.index_dir), _answer(app, png)
    assert app.recognizer().adapter is not None and app.recognizer().adapter.version == "adapter-old"

    kill_at(point, voted_home.path, ["retrain", "--steps", "30", "--suite", "0"], tmp_path)

    # what a running bot (or a restarted one) would load is exactly what was served before
    assert deployed_state(app.sessions, st.models_dir, st.index_dir) == served
    assert app.recognizer().adapter.version == "adapter-old" and _answer(app, png) == answer
    listed = anirec(voted_home.path, "models", "list", "--kind", "adapter", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["version"], r["promoted"]) for r in rows] == [("adapter-old", True)]
    retrain_dir = st.models_dir / "retrain"
    if point == "retrain-bundle":  # SIGKILL ran no clean-up: the half bundle is still there
        assert [p.name for p in retrain_dir.glob(".*.tmp")]

    again = anirec(voted_home.path, "retrain", "--steps", "30", "--suite", "0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stderr
    assert not list(retrain_dir.glob(".*.tmp"))  # the next run cleared the half-written one
    rows = json.loads(anirec(voted_home.path, "models", "list", "--kind", "adapter", "--json").stdout)
    assert len(rows) == 2 and sum(r["promoted"] for r in rows) == 1
    app.recognizer()  # whichever is promoted now loads and verifies


# -- an index save ---------------------------------------------------------------------------

@pytest.fixture()
def grown_library(indexed_home: Any, tmp_path: Path) -> tuple[Path, Path]:
    """(home, library): a copy of the indexed home and of its library with one more series,
    so `anirec index` has an episode to add and an index to save."""
    from data.synth import generate_library

    home, lib = tmp_path / "home", tmp_path / "library"
    shutil.copytree(indexed_home.settings.home, home)
    shutil.copytree(indexed_home.library, lib)  # the same files (mtimes kept): unchanged
    app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    with app.sessions() as s:  # the catalog keeps absolute paths: point it at the copy
        old_root = indexed_home.library.resolve().as_posix()
        s.execute(update(Episode).values(path=func.replace(Episode.path, old_root, lib.resolve().as_posix())))
        s.commit()
    extra = tmp_path / "extra"
    generate_library(extra, series=2, episodes=1, seconds=10.0, seed=41, workers=1)
    known = {p.name for p in lib.iterdir()}
    new = [p for p in extra.iterdir() if p.is_dir() and p.name not in known and p.name != "references"]
    assert new, "the extra library only repeats known series"
    shutil.copytree(new[0], lib / new[0].name)
    return home, lib


def _status(home: Path) -> dict[str, Any]:
    r = anirec(home, "status", "--json")
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


@pytest.mark.parametrize("point", ["save-manifest", pytest.param("save-vectors", marks=pytest.mark.slow)])
def test_kill9_during_an_index_save_keeps_the_old_index(grown_library: tuple[Path, Path], tmp_path: Path,
                                                        indexed_home: Any, point: str) -> None:
    home, lib = grown_library
    index_dir = home / "index"
    before = read_manifest(index_dir)
    app = App.from_settings(Settings(_env_file=None, home=home))  # type: ignore[call-arg]
    emb = app.embedder()
    png = indexed_home.frame_png(0, 5.0)
    answer = _answer(app, png)

    kill_at(point, home, ["index", str(lib)], tmp_path)

    # the old index is still the one named, it verifies (sha256) and answers as before
    assert read_manifest(index_dir).version == before.version
    old = HnswIndex.load(index_dir, embedder_name=emb.name, embedder_version=emb.version, dim=emb.dim)
    assert len(old) == before.count
    assert _answer(app, png) == answer
    st = _status(home)
    assert st["index"]["count"] == before.count and st["index"]["version"] == before.version
    assert st["episodes_pending"] == 1  # the episode whose save was killed: redone next run

    again = anirec(home, "index", str(lib))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stderr
    st = _status(home)
    m = read_manifest(index_dir)
    assert st["episodes_pending"] == 0 and st["episodes_failed"] == 0
    assert st["index"]["count"] == m.count == st["frames"] > before.count  # status agrees with the index
    new = HnswIndex.load(index_dir, embedder_name=emb.name, embedder_version=emb.version, dim=emb.dim)
    assert len(new) == m.count and new.regions is not None
    assert new.regions.version == (m.regions or {}).get("version")  # regions and manifest agree again
    leftovers = [p.name for d in (index_dir, index_dir / "regions") for p in d.iterdir()
                 if p.name.startswith(".tmp-")]
    assert not leftovers
    names = {f.name for f in m.files.values()} | {"manifest.json", "regions"}
    assert {p.name for p in index_dir.iterdir()} <= names | {p.name for p in index_dir.glob("*.lock")}
