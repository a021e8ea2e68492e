"""Operators' rough edges (issue #22, items 8, 9, 11, 12): an empty index is not ready, the
Discord command-sync marker, clean configuration and command-line errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.chat.texts import file_size, user_error_text
from bot.discord_adapter import build_discord_bot, run_discord
from core.config import load_settings
from core.errors import ConfigError, IndexUnavailable
from tests import discord_helpers
from tests.fakes.discord_server import FakeDiscord

dc = discord_helpers.dc

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("ANIREC_HOME", str(h))
    return h


async def web_client(app: Any, svc: Any) -> Any:
    """The web chat over `svc`, served to a started aiohttp test client."""
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web import build_web_app

    st = app.settings
    web_app = build_web_app(svc, sessions=app.sessions, index_dir=st.index_dir,
                            framestore_dir=st.framestore_dir)
    client = TestClient(TestServer(web_app, host="127.0.0.1"))
    await client.start_server()
    return client


def test_index_of_an_empty_folder_or_a_file_says_so(home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["index", "--quiet", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "no episodes indexed" in err and "Traceback" not in err
    a_file = tmp_path / "episode.mkv"
    a_file.write_bytes(b"\0")
    assert main(["index", "--quiet", str(a_file)]) == 2
    assert "is a file; give the folder" in capsys.readouterr().err
    assert main(["status"]) == 0
    assert "no episodes indexed" in capsys.readouterr().out


async def test_web_status_says_no_episodes_indexed(home: Path, tmp_path: Path) -> None:
    from bot.app import App

    empty = tmp_path / "empty"
    empty.mkdir()
    app = App.from_settings(load_settings())
    app.open()
    app.indexer(fps=1.0).run(empty)
    svc = app.service()
    await svc.start()
    client = await web_client(app, svc)
    try:
        r = await client.get("/api/status")
        body = await r.json()
        assert body["ready"] is False and body["frames"] == 0
        assert "No episodes are indexed" in body["message"]
        admin = await (await client.get("/admin")).text()
        assert "no episodes indexed" in admin
    finally:
        await client.close()
        await svc.close()


async def test_sync_marker_only_after_a_successful_sync(dc: FakeDiscord, tmp_path: Path,
                                                        service: Any) -> None:
    marker = tmp_path / "discord-commands.synced"
    bad = build_discord_bot(service, sync_commands=True, guild_ready_timeout=0.05)
    bad.sync_marker = marker
    with pytest.raises(discord.LoginFailure):
        await run_discord(bad, "not-the-token", asyncio.Event())
    assert not marker.exists()  # a failed start must not mark the commands as synced
    good = build_discord_bot(service, sync_commands=True, guild_ready_timeout=0.05)
    good.sync_marker = marker
    stop = asyncio.Event()
    task = asyncio.create_task(run_discord(good, dc.token, stop))
    await discord_helpers.eventually(marker.exists, what="the marker")
    assert dc.requests_matching("PUT", r"^/applications/\d+/commands$")
    stop.set()
    await asyncio.wait_for(task, 10)


@pytest.mark.parametrize(("env", "expected"), [
    ({"ANIREC_MATCH_THRESOLD": "0.5"}, "did you mean ANIREC_MATCH_THRESHOLD?"),
    ({"ANIREC_MATCH_THRESHOLD": "0.2"}, "is below ANIREC_UNSURE_THRESHOLD"),
    ({"ANIREC_DISCORD_OWNER_IDS": "12,abc"}, "e.g. ANIREC_DISCORD_OWNER_IDS=1234"),
])
def test_settings_errors_explain_themselves(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                            expected: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=expected.replace("?", r"\?")):
        load_settings()


def test_id_lists_take_commas_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIREC_DISCORD_OWNER_IDS", "123, 456")
    monkeypatch.setenv("ANIREC_TELEGRAM_OWNER_IDS", "[7, 8]")
    st = load_settings()
    assert st.discord_owner_ids == [123, 456] and st.telegram_owner_ids == [7, 8]


def test_cli_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    monkeypatch.setenv("ANIREC_HOME", str(a_file))
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "is a file; it must be a folder" in err and "Traceback" not in err
    monkeypatch.setenv("ANIREC_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit) as exit_:
        main(["--log-level", "loud", "status"])
    assert exit_.value.code == 2 and "invalid choice: 'LOUD'" in capsys.readouterr().err
    assert main(["identify", str(tmp_path / "missing.png")]) == 2
    assert "missing.png does not exist" in capsys.readouterr().err
    monkeypatch.delenv("ANIREC_HOME")
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 0
    assert f"creating AniRec's home folder {tmp_path / 'var'}" in capsys.readouterr().err


def test_chat_users_never_see_a_path_and_sizes_read_well() -> None:
    exc = IndexUnavailable("No index in /srv/anirec/var/index (no manifest.json)")
    assert user_error_text(exc) == IndexUnavailable.user_message
    assert [file_size(n) for n in (842, 52_000, 2_400_000, 20_000_000)] == \
        ["1 KB", "52 KB", "2.4 MB", "20 MB"]


def test_sigterm_stops_the_runner_with_a_log_line(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "ANIREC_HOME": str(tmp_path / "home"), "ANIREC_WEB_PORT": "0",
           "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    for k in ("DISCORD_TOKEN", "TELEGRAM_TOKEN"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "AniRec web chat on http" in line or not line:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "SIGTERM received: stopping" in text and "anirec.run: stopped" in text
    assert "voice will NOT be supported" not in text and "Traceback" not in text


async def test_without_an_index_chat_users_get_a_plain_sentence(home: Path, dc: FakeDiscord
                                                                ) -> None:
    """Item 7 end to end: no index was ever built (the service's error names the index
    folder); the web chat and Discord say the plain sentence, in the person's language, and
    never the folder."""
    import io

    import aiohttp
    from PIL import Image

    from bot.app import App
    from bot.chat import i18n

    app = App.from_settings(load_settings())
    app.open()
    svc = app.service()
    await svc.start()
    assert not svc.ready
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 90, 40)).save(buf, format="PNG")
    png = buf.getvalue()
    client = await web_client(app, svc)
    try:
        for lang, table in (("en", i18n.EN), ("ja", i18n.JA)):
            form = aiohttp.FormData()
            form.add_field("file", png, filename="shot.png", content_type="image/png")
            r = await client.post(f"/api/identify?lang={lang}", data=form)
            body = await r.text()
            assert r.status == 503 and (await r.json())["error"] == table["error.index"]
            assert str(home) not in body and "manifest" not in body
        async with discord_helpers.running(dc, svc):
            dm = dc.dm_channel(dc.users[1])
            msg = dc.message_create(dm, dc.users[1], "",
                                    attachments=[discord_helpers.png_attachment(dc, png)])
            [reply] = await discord_helpers.answer_to(dc, msg)
        assert reply.json["content"] == i18n.EN["error.index"]
        assert str(home) not in str(reply.json)
    finally:
        await client.close()
        await svc.close()


def test_discord_docs_explain_sync_commands() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "discord.md").read_text()
    assert "--sync-commands" in doc and "discord-commands.synced" in doc
