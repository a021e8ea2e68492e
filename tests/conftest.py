"""Shared fixtures: a small real sample library, indexed once per test session, and a real
RecognitionService over it (real SQLite, real hnswlib, real video files)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

# Tests share 2 cores with other work: one torch thread avoids the contention collapse.
torch.set_num_threads(1)
os.environ.setdefault("PTB_TIMEDELTA", "true")

from bot.app import App  # noqa: E402
from core.config import Settings  # noqa: E402

TEST_LIBRARY = dict(series=3, episodes=2, seconds=16.0, seed=3)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture()
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP clients (httpx, aiohttp) must talk straight to the fakes on 127.0.0.1."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture()
def no_logged_errors(caplog: pytest.LogCaptureFixture) -> Any:
    """Fail the test if anything logged at ERROR (handlers log unexpected failures there;
    expected user errors are logged at INFO). Chat libraries only log handler exceptions."""
    import logging

    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bad, "errors logged: " + "; ".join(f"{r.name}: {r.getMessage()}" for r in bad)


@dataclass
class IndexedHome:
    """A home folder with the test library indexed by the default embedder."""

    settings: Settings
    library: Path
    ground_truth: dict[str, Any]
    app: App

    def frame_png(self, episode: int = 0, t: float = 5.0) -> bytes:
        """A clean PNG of the library frame at `t` seconds of ground-truth episode `episode`."""
        from PIL import Image

        from data.video import read_frames_at

        ep = self.ground_truth["episodes"][episode]
        arr = read_frames_at(self.library / ep["path"], [t])[0]
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    def series_title(self, episode: int = 0) -> str:
        """The title AniRec shows for ground-truth episode `episode`'s series."""
        ep = self.ground_truth["episodes"][episode]
        meta = self.library / Path(ep["path"]).parent / "series.json"
        if meta.exists():
            return str(json.loads(meta.read_text()).get("title") or ep["series"])
        return str(ep["series"])


@pytest.fixture(scope="session")
def sample_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from data.synth import generate_library

    out = tmp_path_factory.mktemp("sample") / "library"
    generate_library(out, **TEST_LIBRARY)  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="session")
def indexed_home(sample_library: Path, tmp_path_factory: pytest.TempPathFactory) -> IndexedHome:
    home = tmp_path_factory.mktemp("home")
    settings = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    app = App.from_settings(settings)
    app.indexer().run(sample_library)
    gt = json.loads((sample_library / "ground_truth.json").read_text())
    return IndexedHome(settings=settings, library=sample_library, ground_truth=gt, app=app)


@pytest.fixture()
async def make_service(indexed_home: IndexedHome) -> AsyncIterator[Callable[..., Any]]:
    """`await make_service(**overrides)` → a started RecognitionService over the indexed home.

    Overrides: rate (both per-minute limits), queue_size, max_bytes. Closed at teardown.
    """
    from dataclasses import replace

    made: list[Any] = []

    async def factory(*, rate: int = 1_000_000, queue_size: int | None = None,
                      max_bytes: int | None = None) -> Any:
        svc = indexed_home.app.service(user_rate=rate, chat_rate=rate)
        if queue_size is not None:
            svc.queue_size = queue_size
        if max_bytes is not None:
            svc.limits = replace(svc.limits, max_bytes=max_bytes)
        await svc.start()
        made.append(svc)
        return svc

    yield factory
    for svc in made:
        await svc.close()


@pytest.fixture()
async def service(make_service: Callable[..., Any]) -> Any:
    """A started RecognitionService with generous limits."""
    return await make_service()


# --- catalog databases: SQLite and a real PostgreSQL the tests start themselves ------------
PG_MISSING = ("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql "
              "(scripts/setup.sh does as root) or set ANIREC_PG_BIN")


@pytest.fixture(scope="session")
def pg_server() -> Any:
    """One private PostgreSQL server (127.0.0.1, a free port, a socket in its own tmp folder)
    for the session; each test gets its own database from `pg_url`."""
    from core.db.pg_local import LocalPostgres, find_bin_dir

    if find_bin_dir() is None:
        pytest.skip(PG_MISSING)
    server = LocalPostgres(fsync=False).start()  # tests need no durability across crashes
    yield server
    server.stop()


@pytest.fixture()
def pg_url(pg_server: Any) -> str:
    """A fresh, empty PostgreSQL database's URL."""
    import uuid

    return str(pg_server.create_database("t_" + uuid.uuid4().hex[:16]))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog URL: SQLite in tmp_path, then a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'c.db'}"
    return str(request.getfixturevalue("pg_url"))
