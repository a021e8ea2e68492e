"""Recognition end to end on the indexed sample library, through the real async service:
stills, borders, mirror, phone screenshot, GIF clips, openings, out-of-library pictures,
previews, the `identify --json` contract, and the service's busy/limit behaviour."""

from __future__ import annotations

import asyncio
import io
import json
import random
import zlib
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from core.errors import Busy, InvalidMedia, MediaTooLarge, RateLimited
from core.types import Source
from data.perturb import apply
from data.video import read_frames_at

ME = Source("cli", chat_id="test", user_id="tester")


def episode_path(home: Any, i: int) -> str:
    return (home.library / home.ground_truth["episodes"][i]["path"]).resolve().as_posix()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def frame(home: Any, i: int, t: float) -> Image.Image:
    ep = home.ground_truth["episodes"][i]
    return Image.fromarray(read_frames_at(home.library / ep["path"], [t])[0])


def outside_opening(home: Any, i: int, rng: random.Random) -> float:
    ep = home.ground_truth["episodes"][i]
    lo = (ep["opening"][1] + 1.0) if ep.get("opening") else 0.5
    return rng.uniform(lo, ep["duration"] - 1.0)


def top_is(rec: Any, service: Any, home: Any, i: int, t: float, tol: float = 2.0) -> bool:
    if not rec.candidates:
        return False
    top = rec.candidates[0]
    em = service._recognizer.catalog.episodes[top.episode_id]
    # a still shot is answered with its time range; the truth must lie in it
    in_range = top.time_from - 0.5 <= t <= top.time_to + 0.5
    return em.path == episode_path(home, i) and (abs(top.time - t) <= tol or in_range)


@pytest.mark.parametrize("perturbation", ["clean", "borders", "mirror", "jpeg", "subtitles", "phone"])
async def test_perturbed_stills(service: Any, indexed_home: Any, perturbation: str) -> None:
    rng = random.Random(zlib.crc32(perturbation.encode()))
    n_eps = len(indexed_home.ground_truth["episodes"])
    ok = 0
    trials = 6
    for k in range(trials):
        i = rng.randrange(n_eps)
        t = outside_opening(indexed_home, i, rng)
        img = apply(perturbation, frame(indexed_home, i, t), seed=k)
        rec = await service.recognize(png(img), source=ME, with_preview=False)
        ok += top_is(rec, service, indexed_home, i, t)
        assert len(rec.candidates) <= 5 and rec.query_id
    # the untrained default embedder: near-duplicates must work (training raises the bar)
    assert ok >= trials - 1, f"{perturbation}: {ok}/{trials}"


async def test_gif_uses_several_frames(service: Any, indexed_home: Any) -> None:
    i = 1
    t = outside_opening(indexed_home, i, random.Random(5))
    ep = indexed_home.ground_truth["episodes"][i]
    arrays = read_frames_at(indexed_home.library / ep["path"], [t, t + 0.6, t + 1.2, t + 1.8])
    imgs = [Image.fromarray(a).resize((320, 180)) for a in arrays]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=600, loop=0)
    rec = await service.recognize(buf.getvalue(), source=ME, with_preview=False)
    assert rec.frames_used == 4
    assert top_is(rec, service, indexed_home, i, t, tol=2.5)


async def test_opening_answers_opening_of_series(service: Any, indexed_home: Any) -> None:
    eps = indexed_home.ground_truth["episodes"]
    i = next(k for k, e in enumerate(eps) if e.get("opening") and e["opening"][1] - e["opening"][0] > 2)
    t0, t1 = eps[i]["opening"]
    rec = await service.recognize(png(frame(indexed_home, i, (t0 + t1) / 2)), source=ME,
                                  with_preview=False)
    top = rec.candidates[0]
    assert top.is_opening_or_ending
    assert top.series.title == indexed_home.series_title(i)
    assert sum(c.is_opening_or_ending and c.series.id == top.series.id for c in rec.candidates) == 1


@pytest.mark.parametrize("perturbation", ["jpeg", "subs+downscale+jpeg"])
async def test_title_cards_that_differ_only_in_text_are_told_apart(
        service: Any, indexed_home: Any, perturbation: str) -> None:
    """Each episode's title card looks like the others of its series but for its text; the
    whole-frame scores tie, and the detail check picks the card with the right text."""
    right = total = 0
    for k in range(3):  # three moments of each card
        for i, ep in enumerate(indexed_home.ground_truth["episodes"]):
            cards = [s for s in ep["shots"] if s["kind"] == "title" and s["start"] > 0.5]
            for s in cards[:1]:
                t = s["start"] + (s["end"] - s["start"]) * (0.2 + 0.3 * k)
                img = apply(perturbation, frame(indexed_home, i, t), seed=k * 10 + i)
                rec = await service.recognize(png(img), source=ME, with_preview=False)
                em = service._recognizer.catalog.episodes[rec.candidates[0].episode_id]
                right += em.path == episode_path(indexed_home, i)
                total += 1
    assert total >= 9 and right == total, f"{right}/{total}"


async def test_out_of_library_is_not_a_match(service: Any) -> None:
    from data.synth import render_out_of_library

    statuses = []
    for img in render_out_of_library(4, seed=99, width=480, height=270):
        rec = await service.recognize(png(img), source=ME, with_preview=False)
        statuses.append(rec.status)
        assert rec.candidates  # candidates are still shown
    assert statuses.count("match") <= 1, statuses


async def test_preview_clip_and_still(service: Any, indexed_home: Any) -> None:
    i, t = 0, outside_opening(indexed_home, 0, random.Random(2))
    answer = await service.recognize(png(frame(indexed_home, i, t)), source=ME)
    # The answer comes back (its query row written) before the clip is cut.
    assert answer.query_id and answer.candidates[0].preview is None and "preview" not in answer.timings_ms
    assert service.preview_pending(answer.query_id)
    rec = await service.preview(answer)
    assert rec is not None and rec.query_id == answer.query_id and rec.status == answer.status
    top = rec.candidates[0]
    assert top.preview and top.still and rec.timings_ms["preview"] > 0
    assert rec.candidates[1:] == answer.candidates[1:] and top.time == answer.candidates[0].time
    with av.open(top.preview) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        assert s.codec_context.width == 320 and not c.streams.audio
        assert 0 < n / float(s.average_rate) <= 4.5
    assert Image.open(top.still).size[0] <= 640
    again = await service.preview(await service.recognize(png(frame(indexed_home, i, t)), source=ME))
    assert again is not None and again.candidates[0].preview == top.preview  # cached, not cut again


async def test_the_same_picture_again_is_answered_from_the_cache(make_service: Any,
                                                                indexed_home: Any) -> None:
    """A picture sent again (the same bytes) gets the answer the recogniser gave it, without
    recognising it again, and is still recorded as its own query; a sticker of the same
    bytes is another question, and a swapped-in recogniser answers afresh."""
    svc = await make_service()
    img = png(frame(indexed_home, 1, 6.3))
    first = await svc.recognize(img, source=ME, with_preview=False)
    again = await svc.recognize(img, source=ME, with_preview=False)
    assert "embed" in first.timings_ms and "cached" not in first.timings_ms
    assert "cached" in again.timings_ms and "embed" not in again.timings_ms and svc.cache_hits == 1
    assert (again.status, again.confidence, again.candidates) == (first.status, first.confidence,
                                                                  first.candidates)
    assert again.query_id and first.query_id and again.query_id != first.query_id
    sticker = await svc.recognize(img, source=ME, with_preview=False, sticker=True)
    assert "embed" in sticker.timings_ms and svc.cache_hits == 1
    await svc.reload()
    after = await svc.recognize(img, source=ME, with_preview=False)
    assert "embed" in after.timings_ms and svc.cache_hits == 1
    assert after.candidates[0].episode_id == first.candidates[0].episode_id
    other = await svc.recognize(png(frame(indexed_home, 1, 9.1)), source=ME, with_preview=False)
    assert "embed" in other.timings_ms and svc.cache_hits == 1


async def test_bad_input_and_limits(make_service: Any, indexed_home: Any) -> None:
    svc = await make_service(max_bytes=50_000)
    with pytest.raises(InvalidMedia):
        await svc.recognize(b"definitely not an image", source=ME)
    with pytest.raises(MediaTooLarge):
        await svc.recognize(b"\x89PNG\r\n\x1a\n" + b"0" * 60_000, source=ME)
    limited = await make_service(rate=2)
    img = indexed_home.frame_png(0, 8.0)
    await limited.recognize(img, source=ME, with_preview=False)
    await limited.recognize(img, source=ME, with_preview=False)
    with pytest.raises(RateLimited) as e:
        await limited.recognize(img, source=ME, with_preview=False)
    assert e.value.retry_after > 0 and "too fast" in str(e.value)


async def test_burst_gets_busy_and_loop_stays_responsive(make_service: Any, indexed_home: Any) -> None:
    svc = await make_service(queue_size=3)
    img = indexed_home.frame_png(0, 8.0)
    ticks = 0
    done = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    hb = asyncio.create_task(heartbeat())
    users = [Source("cli", chat_id=f"c{i}", user_id=f"u{i}") for i in range(10)]
    results = await asyncio.gather(*(svc.recognize(img, source=u, with_preview=False) for u in users),
                                   return_exceptions=True)
    done.set()
    await hb
    busy = [r for r in results if isinstance(r, Busy)]
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert len(answered) == 3 and len(busy) == 7
    assert all("try again in" in str(b) for b in busy)
    assert ticks >= 5  # the event loop kept running while the worker recognised


def test_identify_json_contract(indexed_home: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import main

    good = tmp_path / "shot.png"
    good.write_bytes(png(apply("borders", frame(indexed_home, 2, 9.0), seed=1)))
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    monkeypatch.setenv("ANIREC_HOME", str(indexed_home.settings.home))
    rc = main(["identify", "--json", str(good), str(bad)])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert rc == 1  # one input failed
    assert lines[0]["file"] == str(good) and lines[1]["file"] == str(bad) and "error" in lines[1]
    d = lines[0]
    assert {"file", "status", "confidence", "candidates", "characters", "timings_ms",
            "model_version", "index_version"} <= set(d)
    assert d["status"] in {"match", "unsure", "no_match"} and 0 <= d["confidence"] <= 1
    assert 1 <= len(d["candidates"]) <= 5
    c = d["candidates"][0]
    assert {"series", "season", "episode", "time", "time_from", "time_to", "score",
            "is_opening_or_ending", "preview"} <= set(c)
    assert {"id", "title", "titles"} <= set(c["series"])
    assert c["time_from"] <= c["time"] <= c["time_to"]
    assert d["characters"] == [] and d["timings_ms"]["total"] > 0
