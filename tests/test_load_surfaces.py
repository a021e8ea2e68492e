"""A small burst across every surface of `anirec run --web` at once (the web chat, the fake
Telegram and the fake Discord, real clients, one loop, one service): every request gets
exactly one reply, an answer or "busy"/"rate-limited" with a retry time; the per-user limit
holds; the Discord gateway stays connected and heartbeating, Telegram keeps polling, the web
chat's status keeps answering; a clean stop. The full-size run is `python -m bench.bench_load`."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench.bench_load import burst


@pytest.fixture(autouse=True)
def _no_proxy(no_proxy: None) -> None:
    """Talk straight to the fakes."""


@pytest.mark.timeout(240)
async def test_burst_across_web_telegram_and_discord(indexed_home: Any, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # tokens must stay out of the log at every level
    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, home)
    pngs = [indexed_home.frame_png(i, 5.0) for i in range(3)]
    # 4 requests from each of 9 users, a queue of 2 and 3 answers a minute per user: some must
    # be turned away as busy and some as rate-limited, and every one must still hear back
    res = await burst(home, pngs, split={"web": (12, 3), "telegram": (12, 3), "discord": (12, 3)},
                      settings_overrides={"queue_size": 2, "user_rate_per_minute": 3},
                      deadline_s=150, heartbeat_ms=500, secrets=(tokens := []))
    assert res["requests"] == 36 and res["users"] == 9
    assert res["dropped"] == 0 and res["failed_or_deferred_without_retry_time"] == 0, res["by_kind"]
    assert res["duplicate_replies"] == 0
    for surface, part in res["per_surface"].items():
        assert sum(part["by_kind"].values()) == 12, (surface, part)
    assert res["answered"] >= 3 and res["by_kind"].get("busy", 0) >= 1  # a queue of 2 overflowed
    assert res["most_answers_for_one_user"] <= 3  # the per-user limit held on every surface
    assert res["answered"] + res["deferred"] == 36
    # the process stayed responsive: the loop ran, the gateway kept beating and never
    # reconnected, Telegram kept polling, the status page answered during the burst
    assert res["loop_heartbeat"]["ticks"] > 0 and res["discord_gateway_reconnects"] == 0
    if res["wall_seconds"] > 2:
        assert res["discord_gateway_heartbeat"]["during_burst"] >= 1
        assert res["telegram_long_poll"]["polls_during_burst"] >= 1
        assert res["status_during_burst_ms"]["answered"] >= 1
    assert res["clean_stop"] and not res["fake_errors"]
    # neither bot token in any log record (DEBUG included) nor in any file of the home
    assert len(tokens) == 2
    for token in tokens:
        assert token not in caplog.text
        for f in home.rglob("*"):
            if f.is_file():
                assert token.encode() not in f.read_bytes(), f
