"""Real-size pictures: decoded at a reduced JPEG scale, framed on a reduced picture, each
view at the width the stages need (core/recognition/resolution.py, core/media.py); and
recognised as well as the library-sized picture."""

from __future__ import annotations

import io
import random
from typing import Any

from PIL import Image

from core.media import DRAFT_SIDE, load_media
from core.recognition.framing import clip_views, iou
from core.recognition.resolution import FRAMING_SIDE, VIEW_WIDTH, working_views


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _frame(indexed_home: Any, size: tuple[int, int], t: float = 7.0) -> Image.Image:
    return Image.open(io.BytesIO(indexed_home.frame_png(0, t))).convert("RGB").resize(
        size, Image.Resampling.BICUBIC)


def test_large_jpeg_is_decoded_reduced_small_ones_as_they_are(indexed_home: Any) -> None:
    big = load_media(_jpeg(_frame(indexed_home, (1920, 1080))))
    assert big.frames[0].size == (960, 540) and 2 * DRAFT_SIDE == 1920
    mid = load_media(_jpeg(_frame(indexed_home, (1280, 720))))
    assert mid.frames[0].size == (1280, 720)
    png = io.BytesIO()
    _frame(indexed_home, (1920, 1080)).save(png, format="PNG")
    assert load_media(png.getvalue()).frames[0].size == (1920, 1080)  # PNG: no reduced decode


def test_small_pictures_keep_their_views(indexed_home: Any) -> None:
    img = _frame(indexed_home, (480, 270))
    got, want = working_views([img]), clip_views([img])
    assert [(v.box, v.kind) for v in got[0]] == [(v.box, v.kind) for v in want[0]]
    assert all(g.image is w.image for g, w in zip(got[0], want[0], strict=True))


def test_phone_screenshot_framed_on_the_reduced_picture(indexed_home: Any) -> None:
    from data.perturb import phone_screenshot

    placed: list[tuple[int, int, int, int]] = []
    small = phone_screenshot(_frame(indexed_home, (480, 270)), random.Random(3), placed=placed)
    phone = small.resize((small.width * 3, small.height * 3), Image.Resampling.BICUBIC)
    assert max(phone.size) > FRAMING_SIDE
    truth = tuple(3 * c for c in placed[0])
    views = working_views([phone])[0]
    frame = [v for v in views if v.kind == "frame"]
    assert frame, [v.kind for v in views]
    # the box is in the original picture's pixels, where it was pasted
    assert iou(frame[0].box, truth) >= 0.9  # type: ignore[arg-type]
    full = [v for v in clip_views([phone])[0] if v.kind == "frame"]
    assert full and iou(frame[0].box, full[0].box) >= 0.95
    assert all(v.image.width <= VIEW_WIDTH for v in views)


def test_a_1080p_screenshot_is_recognised_like_the_library_frame(indexed_home: Any) -> None:
    rec = indexed_home.app.recognizer()
    ep = indexed_home.ground_truth["episodes"][0]
    small = rec.recognize(load_media(_jpeg(_frame(indexed_home, (480, 270)))))
    big = rec.recognize(load_media(_jpeg(_frame(indexed_home, (1920, 1080)))))
    assert big.status == "match" and big.candidates[0].series.title == small.candidates[0].series.title
    assert big.candidates[0].episode_id == small.candidates[0].episode_id
    assert abs(big.candidates[0].time - 7.0) <= 1.0 and ep["series"]
    views = big.trace.views  # boxes in the picture as decoded
    assert views and views[0][1][2] <= 960
