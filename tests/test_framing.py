"""Picture-in-picture: borders trimmed, the frame found inside phone screenshots and memes."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.recognition.framing import find_frame, iou, query_views, trim_borders
from data.perturb import borders, font, meme_caption, phone_screenshot


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
    from core.recognition.framing import MAX_LINES, _edge_lines, _grey

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


@pytest.fixture(scope="module")
def library_frames(sample_library: Any) -> list[Image.Image]:
    """Real frames of the sample library (flat skies, floors and walls, title cards)."""
    import json

    from data.video import read_frames_at

    gt = json.loads((sample_library / "ground_truth.json").read_text())
    frames = []
    for i, ep in enumerate(gt["episodes"]):
        times = [0.6 + (i * 0.37 + k * 1.9) % 15.0 for k in range(8)]
        frames += [Image.fromarray(a) for a in read_frames_at(sample_library / ep["path"], times)]
    return frames


@pytest.mark.parametrize("make", [phone_screenshot, meme_caption], ids=["phone", "meme"])
def test_the_frame_box_is_where_the_picture_was_pasted(library_frames: list[Image.Image],
                                                       make: Any) -> None:
    """On real frames, the frame view is the pasted picture itself (IoU >= 0.9), not a box
    that runs into a comment list or a caption bar, and not a part of the picture. The old
    search (largest box of a video frame's shape, inside the trimmed image) got 80–90%:
    trimming ate a flat floor at the bottom of a meme's picture, and a 4:3 box of picture
    and player UI beat the 16:9 picture."""
    hits, misses = 0, []
    for i, img in enumerate(library_frames):
        placed: list[tuple[int, int, int, int]] = []
        q = make(img, random.Random(100 + i), placed=placed)
        best = max(iou(v.box, placed[0]) for v in query_views(q))
        if best >= 0.9:
            hits += 1
        else:
            misses.append((i, round(best, 2)))
    assert hits >= len(library_frames) - 1, misses


def _one_caption(seed: int) -> bool:
    """Whether `meme_caption` with this seed puts a caption above the picture only."""
    r = random.Random(seed)
    r.uniform(0.18, 0.35)  # the bar's height
    return r.random() >= 0.4


@pytest.mark.parametrize("seed", range(6))
def test_a_meme_whose_picture_ends_in_a_flat_floor(seed: int) -> None:
    """The picture's flat bottom rows (a road) touch the meme's bottom edge: trimming the
    flat rows would cut them off, so the frame is looked for in the whole image. (Without
    the caption's text a white bar and a flat road would be the same thing: flat rows on
    one side of a strong line.)"""
    arr = np.asarray(scene(seed)).copy()
    arr[190:] = (70, 70, 80)  # a flat road across the bottom of the picture
    img = Image.fromarray(arr)
    rng = random.Random(next(s for s in range(seed * 100, seed * 100 + 100) if _one_caption(s)))
    placed: list[tuple[int, int, int, int]] = []
    meme = meme_caption(img, rng, placed=placed)
    assert placed[0][3] == meme.height  # one caption, above: the road is the meme's bottom
    frames = [v for v in query_views(meme) if v.kind == "frame"]
    assert frames and iou(frames[0].box, placed[0]) >= 0.95


def test_a_caption_bar_over_a_pale_picture_with_no_edge_line() -> None:
    """The picture's top rows are as white as the caption bar above them, with thin window
    frames: no long straight edge marks the boundary, but flat UI meeting picture does."""
    img = scene(5)
    arr = np.asarray(img).copy()
    arr[:30] = 250
    arr[:30, ::40] = 90  # thin dark window frames in a white wall
    arr[:30, 1::40] = 90
    meme = Image.new("RGB", (480, 270 + 90), (255, 255, 255))
    meme.paste(Image.fromarray(arr), (0, 90))
    ImageDraw.Draw(meme).text((24, 30), "me at 3am", font=font(30), fill=(0, 0, 0))
    frames = [v for v in query_views(meme) if v.kind == "frame"]
    assert frames and abs(frames[0].box[1] - 90) <= 3 and iou(frames[0].box, (0, 90, 480, 360)) >= 0.95


@pytest.mark.parametrize("seed", range(4))
def test_no_frame_view_inside_a_clean_frame(library_frames: list[Image.Image], seed: int) -> None:
    """A box inside a clean frame is bounded by the picture's own lines (a horizon, a wall),
    with picture outside them: not a frame, so (mostly) no second view to embed and search.
    A flat sky above a roof line still makes one now and then; the old search made one for
    three frames in four."""
    found = [i for i, img in enumerate(library_frames[seed::4]) if len(query_views(img)) > 1]
    assert len(found) <= len(library_frames[seed::4]) // 3, found


def test_hostile_stripes_keep_the_ui_rows_bounded() -> None:
    """Flat bands between textured ones, over and over: every boundary looks like UI meeting
    picture, but only the strongest few are kept as candidate edges."""
    from core.recognition.framing import MAX_LINES, _grey, _Lines, _ui_rows

    rng = np.random.default_rng(1)
    arr = (rng.random((1024, 512, 3)) * 255).astype(np.uint8)
    for y in range(0, 1024, 80):
        arr[y:y + 12] = 128
    g, _ = _grey(Image.fromarray(arr))
    assert len(_ui_rows(_Lines(g), *g.shape)) <= MAX_LINES
    assert query_views(Image.fromarray(arr))


def test_clip_views_cut_the_first_frames_boxes_from_every_frame() -> None:
    from core.recognition.framing import clip_views

    frames = [meme_caption(scene(s), random.Random(3)) for s in (1, 2, 3)]
    views = clip_views(frames)
    first = [v.box for v in views[0]]
    assert len(views) == 3 and all([v.box for v in vs] == first for vs in views)
    assert all(v.image.size == (v.box[2] - v.box[0], v.box[3] - v.box[1]) for vs in views for v in vs)
    # the crops are each frame's own pixels
    assert similar(views[2][-1].image, frames[2].crop(first[-1])) < 1
