"""The web chat's answers in a real headless Chromium: the language switch (the browser's
language by default, a picker to change it; titles from series.json's `titles`), a close-rival
answer with the link buttons, and a no-match whose closest guesses sit behind "Show closest
scenes". Screenshots of each bubble go to bench/results/chat/ (the issue's evidence).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.web import CTX, build_web_app, run_web
from core.types import Recognition
from tests.test_chat_answers import EVIDENCE, SAVE, elsewhere_rival, no_match, same_episode_rival
from tests.test_web_browser import MISSING, _driver, off_loop, require_browser

pytestmark = [pytest.mark.skipif(MISSING is not None, reason=MISSING or ""),
              pytest.mark.timeout(180)]


class Scripted:
    """The real service, except that the next `recognize` calls return scripted answers
    (a close rival and a no-match cannot be produced on demand from the sample library)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.script: list[Recognition] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def recognize(self, data: bytes, **kw: Any) -> Recognition:
        if self.script:
            return self.script.pop(0)
        return await self._real.recognize(data, **kw)


async def start(app: Any, tmp_path: Path) -> tuple[asyncio.Event, Any, Any, Path]:
    """Serve `app` on a free port and open Chromium: (stop, server task, driver, shots)."""
    browser, driver_bin = require_browser()
    stop = asyncio.Event()
    server = asyncio.create_task(run_web(app, "127.0.0.1", 0, stop))
    driver = await off_loop(_driver, browser, driver_bin, tmp_path / "profile")
    shots = EVIDENCE if SAVE else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    for _ in range(250):
        if app[CTX].url or server.done():
            break
        await asyncio.sleep(0.02)
    return stop, server, driver, shots


async def test_language_switch_rivals_links_and_closest(
        make_service: Callable[..., Any], indexed_home: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    shot = tmp_path / "frame.png"
    shot.write_bytes(indexed_home.frame_png(0, 5.0))
    meta = json.loads((indexed_home.library / Path(indexed_home.ground_truth["episodes"][0]["path"])
                       .parent / "series.json").read_text())
    svc = Scripted(await make_service())
    st = indexed_home.settings
    app = build_web_app(svc, sessions=indexed_home.app.sessions, index_dir=st.index_dir,
                        framestore_dir=st.framestore_dir)
    stop, server, driver, shots = await start(app, tmp_path)
    try:
        url = app[CTX].url
        assert url

        def wait(cond: Callable[[Any], Any], timeout: float = 40) -> Any:
            return WebDriverWait(driver, timeout, poll_frequency=0.1).until(cond)

        def answers() -> list[Any]:
            return driver.find_elements(By.CSS_SELECTOR, ".answer")

        def snap(el: Any, path: Path) -> None:  # the bubble alone, clear of the fixed bars
            bars = ".composer-wrap, .topbar"
            driver.execute_script(f"document.querySelectorAll('{bars}')"
                                  ".forEach(b => b.style.visibility = 'hidden')")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
            time.sleep(0.3)
            el.screenshot(str(path))
            driver.execute_script(f"document.querySelectorAll('{bars}')"
                                  ".forEach(b => b.style.visibility = '')")

        async def send(n: int) -> Any:
            picker = driver.find_element(By.ID, "file")
            await off_loop(picker.send_keys, str(shot))
            await off_loop(wait, lambda d: len(answers()) == n)
            bubble = answers()[-1]
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", bubble)
            return bubble

        await off_loop(driver.get, url)
        await off_loop(wait, lambda d: d.find_element(By.ID, "lang"))
        lang = Select(driver.find_element(By.ID, "lang"))
        assert lang.first_selected_option.get_attribute("value") == "en"  # the browser's language

        # 日本語: a real answer from the sample library, with the title from series.json's `titles`.
        lang.select_by_value("ja")
        ja = await send(1)
        await off_loop(wait, lambda d: ja.find_elements(By.CSS_SELECTOR, ".title"))
        assert ja.get_attribute("lang") == "ja"
        assert ja.find_element(By.CSS_SELECTOR, ".title").text.strip() == meta["titles"]["ja"]
        assert ja.find_element(By.CSS_SELECTOR, ".status-text").text.startswith("見つかりました")
        assert "確信度" in ja.find_element(By.CSS_SELECTOR, ".conf").text
        assert meta["title"] in ja.find_element(By.CSS_SELECTOR, ".alt-titles").text
        await asyncio.sleep(0.5)
        await off_loop(snap, ja, shots / "web_japanese_title.png")

        # Back to English: a close rival says so, and the link buttons are there.
        lang.select_by_value("en")
        svc.script = [same_episode_rival(), elsewhere_rival()]
        rival = await send(2)
        assert "two moments of this episode fit" in rival.text
        assert "Episode 3 · 00:00:14 or 00:00:25" in rival.text
        assert rival.find_element(By.CSS_SELECTOR, ".conf").text == "Confidence 99%"
        assert rival.text.count("%") == 1
        links = rival.find_elements(By.CSS_SELECTOR, "a.link-button")
        assert [a.text for a in links] == ["AniList", "MyAnimeList"]
        assert links[0].get_attribute("href") == "https://anilist.co/anime/101"
        await off_loop(snap, rival, shots / "web_close_rival_same_episode.png")
        other = await send(3)
        assert "Probably this" in other.text and "Could also be: Quiet Meadow" in other.text
        await off_loop(snap, other, shots / "web_close_rival_elsewhere.png")

        # A no-match: no preview, no votes; the guesses only after "Show closest scenes".
        svc.script = [no_match(None)]
        nothing = await send(4)
        assert nothing.get_attribute("data-status") == "no_match"
        assert not nothing.find_elements(By.CSS_SELECTOR, "video, button.fb")
        closest = nothing.find_element(By.CSS_SELECTOR, ".closest")
        assert not closest.is_displayed() and "Crimson Harbor" not in nothing.text
        await off_loop(snap, nothing, shots / "web_no_match.png")
        button = nothing.find_element(By.CSS_SELECTOR, "button.show-closest")
        assert button.text == "Show closest scenes"
        await off_loop(button.click)
        await off_loop(wait, lambda d: closest.is_displayed())
        assert "1\nCrimson Harbor — Episode 2 @ 00:00:40" in closest.text
        await off_loop(snap, nothing, shots / "web_no_match_closest_shown.png")

        # Preview clips off: the next answer comes without one (and the choice is remembered).
        box = driver.find_element(By.ID, "preview")
        assert box.is_selected()
        await off_loop(box.click)
        plain = await send(5)
        await off_loop(wait, lambda d: plain.find_elements(By.CSS_SELECTOR, ".title"))
        assert not plain.find_elements(By.CSS_SELECTOR, "video")

        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1280, "height": int(size["height"]) + 8, "deviceScaleFactor": 1, "mobile": False})
        driver.execute_script("window.scrollTo(0, 0)")
        await asyncio.sleep(0.3)
        await off_loop(driver.save_screenshot, str(shots / "web_chat_conversation.png"))
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        # A file that is not a picture: a file icon (no broken image), its size in KB, a plain error.
        notes = tmp_path / "notes.txt"
        notes.write_text("not a picture\n" * 40)
        await off_loop(driver.find_element(By.ID, "file").send_keys, str(notes))
        await off_loop(wait, lambda d: d.find_elements(By.CSS_SELECTOR, ".bubble.error"))
        mine = driver.find_elements(By.CSS_SELECTOR, ".user-bubble")[-1]
        assert not mine.find_elements(By.CSS_SELECTOR, "img") and mine.find_elements(By.CSS_SELECTOR, ".file-icon")
        assert mine.find_element(By.CSS_SELECTOR, ".caption").text == "notes.txt · 1 KB"
        error = driver.find_elements(By.CSS_SELECTOR, ".bubble.error")[-1].text
        assert "/" not in error.replace("GIF/", "") and "Traceback" not in error
        icon = driver.execute_script("return document.querySelector('link[rel=icon]').href")
        assert icon.endswith("/static/favicon.png")

        # The choices are remembered by the page.
        await off_loop(driver.refresh)
        await off_loop(wait, lambda d: d.find_element(By.ID, "lang"))
        assert Select(driver.find_element(By.ID, "lang")).first_selected_option \
            .get_attribute("value") == "en"
        assert not driver.find_element(By.ID, "preview").is_selected()
    finally:
        await off_loop(driver.quit)
        stop.set()
        await asyncio.wait_for(server, 10)


async def test_page_language_cover_picker_and_examples(
        make_service: Callable[..., Any], indexed_home: Any, tmp_path: Path) -> None:
    """The whole page switches language (not only the answers); a text-only answer shows the
    series' cover; several files at once get one answer and a picker; and trying more
    examples than the per-person limit allows (3 a minute here) never hits it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from bot.chat import i18n
    from tests.test_chat_ways_in import COVERED, covered_match

    samples = tmp_path / "samples"
    samples.mkdir()
    for i in range(4):
        (samples / f"example-{i}.png").write_bytes(indexed_home.frame_png(i % 3, 4.0 + i))
    files = []
    for i in range(3):
        f = tmp_path / f"shot-{i}.png"
        f.write_bytes(indexed_home.frame_png(0, 5.0 + i))
        files.append(f)
    svc = Scripted(await make_service(rate=3))
    st = indexed_home.settings
    app = build_web_app(svc, sessions=indexed_home.app.sessions, index_dir=st.index_dir,
                        framestore_dir=st.framestore_dir, samples_dir=samples)
    stop, server, driver, shots = await start(app, tmp_path)
    try:
        assert app[CTX].url

        def wait(cond: Callable[[Any], Any], timeout: float = 60) -> Any:
            return WebDriverWait(driver, timeout, poll_frequency=0.1).until(cond)

        def answers() -> list[Any]:
            return driver.find_elements(By.CSS_SELECTOR, ".answer")

        await off_loop(driver.get, app[CTX].url)
        await off_loop(wait, lambda d: d.find_elements(By.CSS_SELECTOR, "#sample-strip .sample"))
        # 中文: the page itself, not only the answers
        Select(driver.find_element(By.ID, "lang")).select_by_value("zh")
        lead = driver.find_element(By.CSS_SELECTOR, ".welcome .lead").text
        assert lead == i18n.ZH["web.welcome"]
        assert driver.find_element(By.CSS_SELECTOR, "label.attach [data-i18n]").text == i18n.ZH["web.choose"]
        assert driver.title == i18n.ZH["web.title"]
        await off_loop(driver.save_screenshot, str(shots / "web_chinese_page.png"))

        # Four examples with a limit of three uploads a minute: all four are answered.
        for n, button in enumerate(driver.find_elements(By.CSS_SELECTOR, "#sample-strip .sample")):
            driver.execute_script("arguments[0].click()", button)  # under the fixed bars, maybe
            await off_loop(wait, lambda d, n=n: len(answers()) == n + 1
                           and not d.find_elements(By.CSS_SELECTOR, ".typing"))
        assert not driver.find_elements(By.CSS_SELECTOR, ".bubble.error")
        assert all(a.get_attribute("lang") == "zh" for a in answers())

        # A text-only answer (no preview): the cover from series.json, next to the title.
        Select(driver.find_element(By.ID, "lang")).select_by_value("en")
        svc.script = [covered_match()]
        await off_loop(driver.find_element(By.ID, "file").send_keys, str(files[0]))
        await off_loop(wait, lambda d: len(answers()) == 5)
        covered = answers()[-1]
        cover = covered.find_element(By.CSS_SELECTOR, "img.cover")
        assert cover.get_attribute("src") == COVERED.cover
        assert cover.get_attribute("alt") == "Cover of Lantern Street"
        assert "Two couriers race the last tram." in covered.text

        # Three files at once: the first answered, a picker for the other two.
        await off_loop(driver.find_element(By.ID, "file").send_keys, "\n".join(map(str, files)))
        await off_loop(wait, lambda d: len(answers()) == 6
                       and d.find_elements(By.CSS_SELECTOR, ".picker-bubble .pick"))
        picker = driver.find_elements(By.CSS_SELECTOR, ".picker-bubble")[-1]
        assert i18n.EN["web.picker"].format(n=3) in picker.text
        picks = picker.find_elements(By.CSS_SELECTOR, ".pick")
        assert [p.get_attribute("title") for p in picks] == ["shot-1.png", "shot-2.png"]
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", picker)
        await off_loop(picker.screenshot, str(shots / "web_picker.png"))
        driver.execute_script("arguments[0].click()", picks[1])
        await off_loop(wait, lambda d: len(answers()) == 7)
        assert [p.get_attribute("title") for p in picker.find_elements(By.CSS_SELECTOR, ".pick")] \
            == ["shot-1.png"]
        sent = [c.text for c in driver.find_elements(By.CSS_SELECTOR, ".user-bubble .caption")]
        assert sent[-3:] == [sent[-3], sent[-2], sent[-1]] and sent[-1].startswith("shot-2.png")
    finally:
        await off_loop(driver.quit)
        stop.set()
        await asyncio.wait_for(server, 10)
