"""The decode budget of `core/media.py` is configurable: ANIREC_MAX_ANIMATION_FRAMES,
ANIREC_MAX_FRAME_PIXELS, ANIREC_MAX_DECODE_PIXELS and ANIREC_MAX_DECODE_SECONDS reach the
limits the service decodes with (through the composition root), bad values name the variable
(`tests/test_config.py`),
and a changed value changes what a real hostile file gets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.app import App
from core.config import load_settings
from core.errors import ConfigError, MediaTooLarge
from core.media import MediaLimits, load_media
from tests import hostile


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith("ANIREC_") or k in {"DATABASE_URL", "DISCORD_TOKEN", "TELEGRAM_TOKEN"}:
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANIREC_HOME", str(tmp_path / "home"))


def _limits() -> MediaLimits:
    return App.from_settings(load_settings()).media_limits()


def test_defaults_are_the_media_defaults() -> None:
    assert _limits() == MediaLimits()


def test_environment_reaches_the_decode_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIREC_MAX_ANIMATION_FRAMES", "100")
    monkeypatch.setenv("ANIREC_MAX_FRAME_PIXELS", "1000000")
    monkeypatch.setenv("ANIREC_MAX_DECODE_PIXELS", "50000000")
    monkeypatch.setenv("ANIREC_MAX_DECODE_SECONDS", "2.5")
    lim = _limits()
    assert (lim.max_animation_frames, lim.max_frame_pixels, lim.max_decode_pixels,
            lim.max_decode_seconds) == (100, 1_000_000, 50_000_000, 2.5)


def test_a_budget_smaller_than_one_frame_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIREC_MAX_FRAME_PIXELS", "9000000")
    monkeypatch.setenv("ANIREC_MAX_DECODE_PIXELS", "8000000")
    with pytest.raises(ConfigError, match="ANIREC_MAX_FRAME_PIXELS.*ANIREC_MAX_DECODE_PIXELS"):
        load_settings()
    monkeypatch.setenv("ANIREC_MAX_FRAME_PIXELS", "1000000")  # still images must fit too
    with pytest.raises(ConfigError, match="ANIREC_MAX_PIXELS.*ANIREC_MAX_DECODE_PIXELS"):
        load_settings()


def test_changed_settings_change_what_a_file_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    gif = hostile.long_gif(frames=300)  # 64x64 frames, answered with the defaults
    assert len(load_media(gif, _limits()).frames) == 8
    monkeypatch.setenv("ANIREC_MAX_ANIMATION_FRAMES", "200")
    with pytest.raises(MediaTooLarge, match="frames"):
        load_media(gif, _limits())
    monkeypatch.setenv("ANIREC_MAX_ANIMATION_FRAMES", "5000")
    monkeypatch.setenv("ANIREC_MAX_FRAME_PIXELS", str(32 * 32))
    with pytest.raises(MediaTooLarge, match="too large"):
        load_media(gif, _limits())
    monkeypatch.delenv("ANIREC_MAX_FRAME_PIXELS")
    monkeypatch.setenv("ANIREC_MAX_DECODE_SECONDS", "0.001")  # 300 frames take longer than 1 ms
    with pytest.raises(MediaTooLarge, match="too long to decode"):
        load_media(hostile.zero_duration_mp4(w=64, h=48, frames=300), _limits())
