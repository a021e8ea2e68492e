"""Settings: defaults, environment, `.env`, secrets never shown, bad values name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings, load_settings
from core.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("ANIREC_") or k in {"DATABASE_URL", "DISCORD_TOKEN", "TELEGRAM_TOKEN"}:
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    s = load_settings()
    assert s.home == Path("var")
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("var/catalog.db")
    assert s.discord_token is None and s.telegram_token is None
    assert s.index_fps == 2.0


def test_environment_and_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANIREC_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("TELEGRAM_TOKEN", "123:SECRET")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@localhost/anirec")
    s = load_settings()
    assert s.home == tmp_path / "h"
    assert s.telegram_token is not None and s.telegram_token.get_secret_value() == "123:SECRET"
    assert "SECRET" not in repr(s) and "SECRET" not in str(s.model_dump())
    assert s.db_url == "postgresql://u@localhost/anirec"


def test_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ANIREC_INDEX_FPS=3.5\nDISCORD_TOKEN=abc\n")
    s = load_settings()
    assert s.index_fps == 3.5 and s.discord_token is not None


@pytest.mark.parametrize("var,value", [
    ("ANIREC_INDEX_FPS", "fast"), ("ANIREC_WEB_PORT", "99999"), ("DATABASE_URL", "not a url"),
    ("ANIREC_LOG_LEVEL", "LOUD"),
    # the media decode budget (tests/test_media_settings.py has the rest)
    ("ANIREC_MAX_ANIMATION_FRAMES", "0"), ("ANIREC_MAX_ANIMATION_FRAMES", "many"),
    ("ANIREC_MAX_FRAME_PIXELS", "-1"), ("ANIREC_MAX_DECODE_PIXELS", "0"),
    ("ANIREC_MAX_DECODE_SECONDS", "0"), ("ANIREC_MAX_DECODE_SECONDS", "86400"),
])
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        load_settings()


def test_unknown_setting_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIREC_INDX_FPS", "2")
    with pytest.raises(ConfigError, match="ANIREC_INDX_FPS"):
        load_settings()


def test_env_example_documents_every_setting() -> None:
    from core.config import env_name

    text = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    missing = [env_name(f) for f in Settings.model_fields if f"{env_name(f)}=" not in text]
    assert not missing, f".env.example lacks {missing}"
