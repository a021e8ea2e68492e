"""The hostile-input corpus (tests/hostile.py) through every surface: `anirec identify`, the
web chat and both bot adapters (against the fake servers). Each file gets a clear sentence or
an answer; no traceback, no server path, one reply each."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bot.web import build_web_app
from tests import discord_helpers, hostile, telegram_helpers
from tests.fakes.telegram_server import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
CORPUS = list(hostile.corpus())
ANSWERABLE = {n for n, _, e in CORPUS if e == "answer"}

tg = telegram_helpers.tg
dc = discord_helpers.dc
_no_proxy = telegram_helpers._no_proxy
_no_handler_errors = telegram_helpers._no_handler_errors


def _name(i: int) -> str:
    return hostile.HOSTILE_NAMES[i % len(hostile.HOSTILE_NAMES)]


def _clean(text: str, home: Path) -> None:
    assert "Traceback" not in text and str(home) not in text and str(home.resolve()) not in text
    assert "/tmp/" not in text and "site-packages" not in text


def test_identify_cli_answers_or_explains_every_file(indexed_home: Any, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i, (name, data, _) in enumerate(CORPUS):
        # on disk: the hostile names made legal (no "/" or NUL, within NAME_MAX)
        fname = f"{i:02d}-" + _name(i).replace("/", "_").replace("\0", "_")[:200]
        p = folder / fname
        p.write_bytes(data)
        paths.append((name, p))
    home = tmp_path / "home"  # a private copy: another process must not share the session's catalog
    shutil.copytree(indexed_home.settings.home, home)
    run = subprocess.run([sys.executable, "-m", "bot", "identify", "--json", *(str(p) for _, p in paths)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={"PYTHONPATH": str(ROOT), "ANIREC_HOME": str(home)})
    assert "Traceback" not in run.stderr
    lines = [json.loads(x) for x in run.stdout.splitlines() if x.strip()]
    assert len(lines) == len(paths)
    for (name, _), d in zip(paths, lines, strict=True):
        if name in ANSWERABLE:
            assert "error" not in d and d["status"] in ("match", "unsure", "no_match"), (name, d)
        else:
            assert d["error"] and "Traceback" not in d["error"], (name, d)


async def test_web_chat_answers_or_explains_every_file(make_service: Any, indexed_home: Any) -> None:
    svc = await make_service()
    st = indexed_home.settings
    app = build_web_app(svc, sessions=indexed_home.app.sessions, index_dir=st.index_dir,
                        framestore_dir=st.framestore_dir)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        for i, (name, data, expect) in enumerate(CORPUS):
            # by hand: the client library refuses control characters in a part header, an
            # attacker's script does not (CR/LF would end the header, so they go as %0D%0A)
            fname = _name(i).replace("\r", "%0D").replace("\n", "%0A").encode("utf-8", "surrogateescape")
            body_bytes = (b"--XbounD\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + fname
                          + b"\"\r\nContent-Type: image/png\r\n\r\n" + data + b"\r\n--XbounD--\r\n")
            resp = await client.post("/api/identify", data=body_bytes,
                                     headers={"Content-Type": "multipart/form-data; boundary=XbounD"})
            text = await resp.text()
            _clean(text, st.home)
            body = json.loads(text)
            if any(b < 32 for b in fname):  # a control character in the part header
                assert resp.status == 400 and "could not be read" in body["error"], (name, body)
            elif expect == "answer":
                assert resp.status == 200 and body["query_id"], (name, body)
            else:
                assert resp.status in (400, 413, 415) and body["error"], (name, resp.status, body)
    finally:
        await client.close()


async def test_telegram_answers_or_explains_every_file(tg: FakeTelegram, make_service: Any,
                                                       indexed_home: Any) -> None:
    service = await make_service()
    alice = tg.user(3101, "Alice", "alice")
    chat = tg.private_chat(alice)
    async with telegram_helpers.running(tg, service):
        for i, (name, data, expect) in enumerate(CORPUS):
            if not data:
                continue  # Telegram does not deliver empty files
            upd = tg.document_message(chat, alice, data, file_name=_name(i), mime_type="image/png")
            mid = upd["message"]["message_id"]
            tg.push_update(upd)
            call = await telegram_helpers.answer_to(tg, mid, timeout=60)
            text = telegram_helpers.shown(call)
            _clean(text, indexed_home.settings.home)
            if expect == "refuse":
                assert call.method == "sendMessage" and text, (name, text)


async def test_discord_answers_or_explains_every_file(dc: Any, make_service: Any, indexed_home: Any) -> None:
    service = await make_service()
    async with discord_helpers.running(dc, service):
        for i, (name, data, expect) in enumerate(CORPUS):
            if not data:
                continue
            # Discord itself rewrites attachment names ("/", "\\" and control characters go)
            safe = "".join(c for c in _name(i) if c not in "/\\" and ord(c) >= 32)[:200] or "x.png"
            att = dc.add_attachment(data, safe, "image/png")
            msg = dc.message_create(dc.text_channel, dc.users[0], "", attachments=[att])
            [post] = await discord_helpers.answer_to(dc, msg, timeout=60)
            shown = json.dumps(post.json)
            _clean(shown, indexed_home.settings.home)
            if expect == "answer":
                assert post.json.get("embeds"), (name, shown[:300])
