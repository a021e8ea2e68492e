"""The web chat in a real headless Chromium (Debian's chromium + chromium-driver, Selenium).

Skips with the reason when Selenium, Chromium or ChromeDriver is not installed. Screenshots
go to tests/artifacts/ (gitignored): web_chat.png (desktop), web_chat_phone.png (390×844)
and web_admin.png.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select

from bot.web import CTX, build_web_app, run_web
from core.db.models import Feedback

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--autoplay-policy=no-user-gesture-required", "--hide-scrollbars"]


def _find(*names: str) -> str | None:
    for n in names:
        p = shutil.which(n)
        if p:
            return p
        if Path(n).is_absolute() and Path(n).exists():
            return n
    return None


def _missing() -> str | None:
    """Why the browser test cannot run here (checked before any fixture is built)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if _find("/usr/bin/chromium", "chromium", "chromium-browser") is None or \
            _find("/usr/bin/chromedriver", "chromedriver") is None:
        return "no Chromium/ChromeDriver (apt-get install -y chromium chromium-driver)"
    return None


MISSING = _missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def require_browser() -> tuple[str, str]:
    """Chromium's and ChromeDriver's paths."""
    browser = _find("/usr/bin/chromium", "chromium", "chromium-browser")
    driver_bin = _find("/usr/bin/chromedriver", "chromedriver")
    assert browser and driver_bin
    return browser, driver_bin


def _driver(browser: str, driver_bin: str, user_data: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={user_data}", "--window-size=1280,900"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver_bin), options=opts)


async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Selenium blocks; the server runs on this loop, so drive the browser from a thread."""
    return await asyncio.to_thread(fn, *args)


async def test_chat_in_a_real_browser(make_service: Callable[..., Any], indexed_home: Any,
                                      tmp_path: Path) -> None:
    browser, driver_bin = require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = await off_loop(_driver, browser, driver_bin, tmp_path / "chromium-profile")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = tmp_path / "screenshot.png"
    shot.write_bytes(indexed_home.frame_png(0, 5.0))
    samples = tmp_path / "samples"
    samples.mkdir()
    for i, (ep, t) in enumerate([(1, 4.0), (2, 9.0), (3, 3.0), (4, 11.0), (5, 6.0), (0, 12.0)]):
        if ep < len(indexed_home.ground_truth["episodes"]):
            (samples / f"example-{i + 1}.png").write_bytes(indexed_home.frame_png(ep, t))

    st = indexed_home.settings
    svc = await make_service()
    app = build_web_app(svc, sessions=indexed_home.app.sessions, index_dir=st.index_dir,
                        framestore_dir=st.framestore_dir, samples_dir=samples)
    stop = asyncio.Event()
    server = asyncio.create_task(run_web(app, "127.0.0.1", 0, stop))
    try:
        for _ in range(250):
            if app[CTX].url or server.done():
                break
            await asyncio.sleep(0.02)
        url = app[CTX].url
        assert url, "the web server did not start"

        def wait(cond: Callable[[Any], Any], timeout: float = 40) -> Any:
            return WebDriverWait(driver, timeout, poll_frequency=0.1).until(cond)

        def full_page(path: Path) -> None:  # the whole conversation, as on a tall screen
            size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": 1280, "height": int(size["height"]) + 8, "deviceScaleFactor": 1,
                "mobile": False})
            try:
                driver.execute_script("window.scrollTo(0, 0)")
                time.sleep(0.3)
                driver.save_screenshot(str(path))
            finally:
                driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        def click(el: Any) -> None:  # as a person would: scroll it clear of the bars, then tap
            driver.execute_script(
                "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", el)
            el.click()

        await off_loop(driver.get, url)
        await off_loop(wait, lambda d: d.find_elements(By.CSS_SELECTOR, ".sample img"))
        # Upload through the file picker, as a person would.
        picker = await off_loop(driver.find_element, By.ID, "file")
        await off_loop(picker.send_keys, str(shot))
        title = await off_loop(wait, lambda d: d.find_elements(By.CSS_SELECTOR, ".answer .title"))
        assert title[0].text.strip() == indexed_home.series_title(0)
        answer = driver.find_element(By.CSS_SELECTOR, ".answer")
        qid = answer.get_attribute("data-query-id")
        assert qid and "Found it" in answer.text
        # The preview clip loads and plays (muted, looping) from an opaque /media/ URL.
        await off_loop(wait, lambda d: d.execute_script(
            "const v = document.querySelector('.answer video.preview');"
            "return v && v.readyState >= 2 && v.videoWidth > 0;"))
        src = driver.execute_script("return document.querySelector('.answer video.preview').src")
        assert "/media/" in src and str(st.home) not in src
        assert driver.execute_script("const v = document.querySelector('video.preview');"
                                     "return v.muted && v.loop && v.autoplay;")

        # ❌, then "it was answer 2": the button shows the tally after a press.
        wrong = driver.find_element(By.CSS_SELECTOR, ".answer button.fb[data-verdict='wrong']")
        await off_loop(click, wrong)
        await off_loop(wait, lambda d: wrong.text.strip() == "❌ 1")
        two = driver.find_element(By.CSS_SELECTOR, ".answer button.fb[data-rank='2']")
        await off_loop(click, two)
        await off_loop(wait, lambda d: two.text.strip() == "2 ·1")
        assert wrong.text.strip() == "❌"  # one vote per person: the ❌ was replaced
        assert "answer 2" in driver.find_element(By.CSS_SELECTOR, ".answer .toast").text

        with indexed_home.app.sessions() as s:
            rows = s.scalars(select(Feedback).where(Feedback.query_id == qid)
                             .order_by(Feedback.id)).all()
            got = [(f.verdict, f.rank, f.active, f.platform) for f in rows]
        assert got == [("wrong", None, False, "web"), ("pick", 2, True, "web")]

        await off_loop(full_page, ARTIFACTS / "web_chat.png")

        # Phone-sized: 390×844. Paste a picture (Ctrl-V path), then tap an example.
        await off_loop(driver.execute_cdp_cmd, "Emulation.setDeviceMetricsOverride",
                       {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        driver.set_script_timeout(30)
        await off_loop(driver.execute_async_script, """
            const done = arguments[arguments.length - 1];
            fetch(document.querySelector('.sample img').src).then(r => r.blob()).then(b => {
              const dt = new DataTransfer();
              dt.items.add(new File([b], 'pasted.jpg', {type: 'image/jpeg'}));
              const ev = new ClipboardEvent('paste', {clipboardData: dt, bubbles: true});
              document.dispatchEvent(ev);
              done(true);
            });
        """)
        await off_loop(wait, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".answer")) == 2)
        # Its clip follows the answer into the place the bubble kept for it.
        await off_loop(wait, lambda d: len(d.find_elements(
            By.CSS_SELECTOR, ".answer[data-preview='shown'] video.preview")) == 2)
        first_sample = driver.find_element(By.CSS_SELECTOR, ".sample")
        await off_loop(click, first_sample)
        await off_loop(wait, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".answer")) == 3)
        # Something that is not in the library: "Not sure…", still with the candidates.
        # (A smooth drawing: random noise would also do, but core.recognition.framing spends minutes on it.)
        x = np.linspace(0.0, 1.0, 480)[None, :, None]
        y = np.linspace(0.0, 1.0, 270)[:, None, None]
        sky = np.concatenate([x * 255 + 0 * y, y * 200 + 0 * x, (1 - x) * 180 + 40 + 0 * y], axis=2)
        drawing = Image.fromarray(sky.astype(np.uint8))
        ImageDraw.Draw(drawing).ellipse((300, 60, 420, 180), fill=(250, 240, 120))
        noise = tmp_path / "not-anime.png"
        drawing.save(noise)
        await off_loop(picker.send_keys, str(noise))
        await off_loop(wait, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".answer")) == 4)
        last = driver.find_elements(By.CSS_SELECTOR, ".answer")[-1]
        assert last.get_attribute("data-status") in ("unsure", "no_match"), last.text
        assert "Not sure" in last.text or "No match" in last.text
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
        await off_loop(wait, lambda d: d.execute_script(
            "const v = [...document.querySelectorAll('video.preview')].pop();"
            "return !v || v.readyState >= 2;"))
        await off_loop(driver.execute_script, "window.scrollTo(0, document.body.scrollHeight)")
        await asyncio.sleep(0.4)
        await off_loop(driver.save_screenshot, str(ARTIFACTS / "web_chat_phone.png"))
        await off_loop(driver.execute_cdp_cmd, "Emulation.setEmulatedMedia",
                       {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        await asyncio.sleep(0.2)
        await off_loop(driver.save_screenshot, str(ARTIFACTS / "web_chat_phone_dark.png"))
        await off_loop(driver.execute_cdp_cmd, "Emulation.setEmulatedMedia", {"features": []})
        page = driver.page_source
        assert str(st.home) not in page

        # The operator page, as the operator sees it.
        await off_loop(driver.execute_cdp_cmd, "Emulation.clearDeviceMetricsOverride", {})
        await off_loop(driver.get, url + "admin")
        await off_loop(wait, lambda d: d.find_elements(By.ID, "wrong"))
        assert qid in driver.page_source
        # The operator says it was candidate 3 (a PICK by the operator, like the bots' rows).
        pick = driver.find_element(By.CSS_SELECTOR, f"#q-{qid} button.pick[data-rank='3']")
        await off_loop(click, pick)
        await off_loop(wait, lambda d: pick.text.strip() == "Picked ✔")
        op = svc.store.hash_id("web", "operator")
        with indexed_home.app.sessions() as s:
            picks = s.scalars(select(Feedback).where(Feedback.query_id == qid,
                                                     Feedback.user_hash == op)).all()
            assert [(f.verdict, f.rank, f.active) for f in picks] == [("pick", 3, True)]
        await off_loop(full_page, ARTIFACTS / "web_admin.png")
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"] \
            if hasattr(driver, "get_log") else []
        assert not [e for e in errors if "Content Security Policy" in e.get("message", "")], errors
    finally:
        await off_loop(driver.quit)
        stop.set()
        await asyncio.wait_for(server, 10)
