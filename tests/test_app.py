"""The composition root: one setting means the same everywhere. `anirec index`, the demo's
indexing step and the re-embed after `anirec train scene` build their indexers from the same
settings (here a non-default ANIREC_INDEX_REGIONS), and a failed re-embed rolls the
promotion back."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from core.config import Settings
from core.index import RegionSpec
from core.models.embedder import EmbedderSpec, build_embedder
from core.models.registry import promoted
from data.indexer import Indexer
from training import promote


class _Stop(Exception):
    """Raised by the recording indexer instead of doing the work."""


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, RegionSpec | None]]:
    """Every Indexer.run / Indexer.reembed call's region spec, in order (the work is skipped)."""
    seen: list[tuple[str, RegionSpec | None]] = []

    def run(self: Indexer, root: Path, *, reembed: bool = False) -> Any:
        seen.append(("run", self.regions))
        raise _Stop

    def reembed(self: Indexer) -> Any:
        seen.append(("reembed", self.regions))
        raise _Stop

    monkeypatch.setattr(Indexer, "run", run)
    monkeypatch.setattr(Indexer, "reembed", reembed)
    return seen


def _fake_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """`train scene` without the training: a ready-made model that passes the gate."""
    import training.scene

    def fit(store: Any, episode_ids: list[int], cfg: Any, out_dir: Path, **_: Any) -> Any:
        model = build_embedder(EmbedderSpec(arch="tiny", version="test-scene-model"))
        return model, {"train_seconds": 0.0, "steps": cfg.steps}

    def gate(model: Any, current: Any, store: Any, split: Any, params: Any = None) -> Any:
        return promote.SceneGate(1.0, 0.0, current.version, "training episodes")

    monkeypatch.setattr(training.scene, "train_scene", fit)
    monkeypatch.setattr(promote, "gate_scene", gate)


@pytest.mark.parametrize("regions", ["false", "true"])
def test_index_demo_and_reembed_build_the_same_region_spec(
        indexed_home: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        recorded: list[tuple[str, RegionSpec | None]], regions: str) -> None:
    from bot.cli import main

    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, home)  # training registers a model
    monkeypatch.setenv("ANIREC_HOME", str(home))
    monkeypatch.setenv("ANIREC_INDEX_REGIONS", regions)
    _fake_training(monkeypatch)
    library = str(indexed_home.library)
    for argv in (["index", library, "--quiet"], ["demo", "--library", library, "--no-serve"],
                 ["train", "scene", "--steps", "1"]):
        with pytest.raises(_Stop):
            main(argv)
    assert [kind for kind, _ in recorded] == ["run", "run", "reembed"]
    want = App.from_settings(Settings(_env_file=None)).region_spec()  # type: ignore[call-arg]
    assert want == (RegionSpec() if regions == "true" else None)
    assert [spec for _, spec in recorded] == [want, want, want]
    # the re-embed failed: the new model is not left promoted over an index it never reached
    app = App.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert promoted(app.sessions, "scene") is None


async def test_service_takes_both_rate_limits_from_the_settings(tmp_path: Path) -> None:
    """ANIREC_USER_RATE_PER_MINUTE limits one user, ANIREC_CHAT_RATE_PER_MINUTE one chat."""
    from core.errors import IndexUnavailable, RateLimited
    from core.types import Source

    settings = Settings(_env_file=None, home=tmp_path / "home",  # type: ignore[call-arg]
                        user_rate_per_minute=3, chat_rate_per_minute=7)
    service = App.from_settings(settings).service()  # not started: admitted requests find no index

    async def outcome(user: str, chat: str) -> str:
        try:
            await service.recognize(b"", source=Source(platform="web", chat_id=chat, user_id=user))
        except RateLimited:
            return "limited"
        except IndexUnavailable:
            return "admitted"
        return "answered"

    try:
        assert [await outcome("one", f"c{i}") for i in range(4)] == ["admitted"] * 3 + ["limited"]
        assert [await outcome(f"u{i}", "shared") for i in range(8)] == ["admitted"] * 7 + ["limited"]
    finally:
        await service.close()
