"""Picture-in-picture: borders trimmed, the frame found inside phone screenshots and memes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from core.framing import find_frame, query_views, trim_borders
from data.perturb import borders, meme_caption, phone_screenshot


def scene(seed: int = 0, w: int = 480, h: int = 270) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = (rng.random((h // 15, w // 15, 3)) * 200 + 30).astype(np.uint8)
    return Image.fromarray(arr).resize((w, h), Image.BILINEAR)


def similar(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.resize((96, 54)), np.float32)
    y = np.asarray(b.resize((96, 54)), np.float32)
    return float(np.abs(x - y).mean())


@pytest.mark.parametrize("seed", range(6))
def test_trim_borders_recovers_the_frame(seed: int) -> None:
    img = scene(seed)
    bordered = borders(img, random.Random(seed))
    box = trim_borders(bordered)
    assert similar(bordered.crop(box), img) < 12


def test_trim_keeps_a_borderless_image_whole() -> None:
    img = scene(1)
    assert trim_borders(img) == (0, 0, img.width, img.height)


@pytest.mark.parametrize("seed", range(6))
def test_frame_found_in_phone_screenshot(seed: int) -> None:
    img = scene(seed)
    shot = phone_screenshot(img, random.Random(seed))
    views = query_views(shot)
    assert any(v.kind == "frame" for v in views)
    frame = next(v for v in views if v.kind == "frame")
    assert similar(frame.image, img) < 14


@pytest.mark.parametrize("seed", range(6))
def test_frame_found_in_meme(seed: int) -> None:
    img = scene(seed + 10)
    meme = meme_caption(img, random.Random(seed))
    views = query_views(meme)
    best = min(similar(v.image, img) for v in views)
    assert best < 14


def test_no_frame_in_a_plain_picture() -> None:
    assert find_frame(scene(3)) is None


@pytest.mark.parametrize("kind", ["noise", "checker"])
def test_search_is_bounded_on_hostile_pictures(kind: str) -> None:
    """A noisy picture has edges everywhere; the frame search must consider only the
    strongest few lines (it once looped over every pair of pairs and took minutes)."""
    from core.framing import MAX_LINES, _edge_lines, _grey

    rng = np.random.default_rng(0)
    if kind == "noise":
        img = Image.fromarray((rng.random((270, 480, 3)) * 255).astype(np.uint8))
    else:
        img = Image.fromarray(((np.indices((540, 960)).sum(0) // 3) % 2 * 255).astype(np.uint8)).convert("RGB")
    g, _ = _grey(img)
    assert len(_edge_lines(g, 0)) <= MAX_LINES and len(_edge_lines(g, 1)) <= MAX_LINES
    assert query_views(img)  # and it still answers


def night_scene(seed: int, w: int = 480, h: int = 270) -> Image.Image:
    """A dark picture (a night sky over dark streets) with some detail in it."""
    rng = np.random.default_rng(seed)
    arr = (rng.random((h // 15, w // 15, 3)) * 50 + 20).astype(np.uint8)
    arr[h // 30:, :, :] += 40  # lit houses in the lower part
    return Image.fromarray(arr).resize((w, h), Image.BILINEAR)


@pytest.mark.parametrize("seed", range(8))
def test_frame_found_in_a_dark_phone_screenshot_of_a_night_scene(seed: int) -> None:
    """A dark-mode phone UI around a night scene: the frame's top edge is a weak one (dark on
    dark); the frame is still found, with its own shape, not the status bar's."""
    img = night_scene(seed)
    shot = phone_screenshot(img, random.Random(seed))
    frame = next((v for v in query_views(shot) if v.kind == "frame"), None)
    assert frame is not None
    x0, y0, x1, y1 = frame.box
    assert abs((x1 - x0) / (y1 - y0) - img.width / img.height) < 0.05
    assert similar(frame.image, img) < 10
