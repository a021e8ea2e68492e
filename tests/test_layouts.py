"""The layout generator (data/layouts.py), framing on its tuning and held-apart layouts, and
a layout screenshot identified end to end."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.recognition.framing_pages import iou, query_views
from data.layouts import HELD, TUNE, compose, layouts


def scene(seed: int, w: int = 480, h: int = 270) -> Image.Image:
    """A textured picture with a few hard shapes (no flat margins of its own)."""
    rng = np.random.default_rng(seed)
    arr = (rng.random((h // 15, w // 15, 3)) * 200 + 30).astype(np.uint8)
    img = Image.fromarray(arr).resize((w, h), Image.Resampling.BILINEAR)
    return img


@pytest.fixture(scope="module")
def pictures(sample_library: Any) -> list[Image.Image]:
    """Frames of the sample library (flat skies, walls and floors among them)."""
    from data.video import read_frames_at

    gt = json.loads((sample_library / "ground_truth.json").read_text())
    out = []
    for i, ep in enumerate(gt["episodes"]):
        times = [1.0 + (i * 0.53 + k * 2.3) % 14.0 for k in range(5)]
        out += [Image.fromarray(a) for a in read_frames_at(sample_library / ep["path"], times)]
    return out


def test_the_splits_share_no_family() -> None:
    assert TUNE and HELD and not set(TUNE) & set(HELD)


@pytest.mark.parametrize("family", sorted({**TUNE, **HELD}))
def test_every_family_records_where_the_picture_went(family: str) -> None:
    pics = [scene(1), scene(2)]
    for seed in range(3):
        lay = compose(family, pics, random.Random(seed))
        x0, y0, x1, y1 = lay.box
        assert 0 <= x0 < x1 <= lay.image.width and 0 <= y0 < y1 <= lay.image.height
        assert lay.boxes[0] == lay.box and lay.family == family
        assert (x1 - x0) * (y1 - y0) < 0.97 * lay.image.width * lay.image.height  # a page around it
        # the box holds the picture (its shape, and its pixels where nothing warps them)
        assert abs((x1 - x0) / (y1 - y0) - 16 / 9) < 0.12
        if family not in ("screen_photo",):
            crop = lay.image.crop(lay.box).resize((96, 54))
            want = pics[0].resize((96, 54))
            assert float(np.abs(np.asarray(crop, np.float32) - np.asarray(want, np.float32)).mean()) < 20


def test_layouts_are_seeded_and_vary() -> None:
    pics = [scene(3), scene(4)]
    a = [lay.image.tobytes() for lay in layouts("held", pics, 6, seed=1)]
    b = [lay.image.tobytes() for lay in layouts("held", pics, 6, seed=1)]
    c = [lay.image.tobytes() for lay in layouts("held", pics, 6, seed=2)]
    assert a == b and a != c
    assert {lay.family for lay in layouts("tune", pics, 10)} == set(TUNE)


def test_bad_family_or_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown layout family"):
        compose("nope", [scene(0)], random.Random(0))
    with pytest.raises(ValueError, match="unknown split"):
        list(layouts("test", [scene(0)], 1))
    with pytest.raises(ValueError, match="no pictures"):
        list(layouts("held", [], 1))


def _framed(split: str, pictures: list[Image.Image], n: int, seed: int) -> dict[str, list[bool]]:
    per: dict[str, list[bool]] = {}
    for lay in layouts(split, pictures, n, seed=seed):
        best = max(iou(v.box, lay.box) for v in query_views(lay.image))
        per.setdefault(lay.family, []).append(best >= 0.9)
    return per


def test_framing_on_the_tuning_layouts(pictures: list[Image.Image]) -> None:
    """Posts, chat bubbles, players beside a side bar, margins on any side, phone galleries:
    the picture is one of the views (IoU >= 0.9) in at least 75% of them (measured: 83% on
    the test library's frames, 94% on the default sample library's)."""
    per = _framed("tune", pictures, 40, seed=11)
    hits = [x for v in per.values() for x in v]
    assert np.mean(hits) >= 0.75, {k: float(np.mean(v)) for k, v in per.items()}


def test_framing_on_the_held_apart_layouts(pictures: list[Image.Image]) -> None:
    """Families nothing was tuned on. Today about half are framed (cards with shadows, blurred
    story backgrounds, forum posts with two pictures mostly; browser windows and photos of a
    screen mostly not: bench/results/framing/layouts.json); this guards that level, the
    target (95%) is the xfail test below."""
    per = _framed("held", pictures, 40, seed=12)
    hits = [x for v in per.values() for x in v]
    assert np.mean(hits) >= 0.4, {k: float(np.mean(v)) for k, v in per.items()}
    for fam in ("card_shadow", "blurred_fill"):
        assert np.mean(per[fam]) >= 0.6, (fam, per[fam])


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 20 target not reached: browser windows (a page of "
                   "a video frame's own shape) and photos of a screen at an angle")
def test_framing_target_on_the_held_apart_layouts(pictures: list[Image.Image]) -> None:
    per = _framed("held", pictures, 60, seed=13)
    assert np.mean([x for v in per.values() for x in v]) >= 0.95


def test_a_screenshot_with_margins_is_identified(indexed_home: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end with the page-aware search put in the recogniser's place (it is not the
    default yet: docs/framing.md): a library frame on a page with flat margins (on one to four
    sides, light or dark), as a PNG through the media loader and the recogniser: the right
    episode every time, and the picture framed (IoU >= 0.9) in most."""
    import core.recognition.framing_pages as pages
    import core.recognition.resolution as resolution
    from core.media import load_media

    monkeypatch.setattr(resolution, "clip_views", pages.clip_views)

    gt = indexed_home.ground_truth
    rec = indexed_home.app.recognizer()
    right = framed = 0
    for k, (ep, t) in enumerate([(0, 6.5), (1, 9.0), (2, 11.5)]):
        frame = Image.open(io.BytesIO(indexed_home.frame_png(ep, t))).convert("RGB")
        lay = compose("margins", [frame], random.Random(k))
        views = query_views(lay.image)
        framed += max(iou(v.box, lay.box) for v in views) >= 0.9
        buf = io.BytesIO()
        lay.image.save(buf, format="PNG")
        got = rec.recognize(load_media(buf.getvalue()))
        assert got.best is not None
        em = rec.catalog.episodes[got.best.episode_id]
        right += em.path.endswith(gt["episodes"][ep]["path"]) or gt["episodes"][ep]["path"].endswith(em.path)
    assert right == 3 and framed >= 2, (right, framed)
