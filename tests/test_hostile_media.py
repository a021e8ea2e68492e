"""The hostile-input corpus through core.media: a clear sentence or a right answer, and the
decode budget (frames, pixels, frames held) bounded whatever the header says."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidMedia, MediaTooLarge
from core.media import DecodeMeter, MediaLimits, load_media
from tests import hostile

CORPUS = list(hostile.corpus())
LIMITS = MediaLimits()


@pytest.mark.parametrize("name,data,expect", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_gets_a_sentence_or_an_answer(name: str, data: bytes, expect: str) -> None:
    meter = DecodeMeter()
    if expect == "refuse":
        with pytest.raises(InvalidMedia) as err:
            load_media(data, meter=meter)
        msg = str(err.value)
        assert msg and "Traceback" not in msg and "/" not in msg.replace("w/", "")
    else:
        m = load_media(data, meter=meter)
        assert m.frames and all(f.mode == "RGB" and min(f.size) >= 16 for f in m.frames)
    assert meter.pixels <= LIMITS.max_decode_pixels + LIMITS.max_pixels
    assert meter.held <= 2 * LIMITS.max_frames


def test_gif_canvas_bomb_refused_before_any_frame() -> None:
    meter = DecodeMeter()
    with pytest.raises(MediaTooLarge, match="too large"):
        load_media(hostile.gif_canvas_bomb(4000, 4999), meter=meter)
    assert meter.frames == 0


def test_webp_anim_bomb_refused_before_any_frame() -> None:
    meter = DecodeMeter()
    with pytest.raises(MediaTooLarge):
        load_media(hostile.webp_anim_bomb(6000), meter=meter)
    assert meter.frames == 0


@pytest.mark.parametrize("make", [lambda: hostile.gif_canvas_bomb(2000, 4999),
                                  lambda: hostile.webp_anim_bomb(2000, 400)])
def test_allowed_canvas_with_many_frames_walks_only_the_budget(make) -> None:  # noqa: ANN001
    limits = MediaLimits(max_decode_pixels=100_000_000)
    meter = DecodeMeter()
    m = load_media(make(), limits, meter=meter)
    assert m.kind == "animation" and len(m.frames) == limits.max_frames
    assert meter.pixels <= limits.max_decode_pixels
    assert meter.frames == limits.max_decode_pixels // (2000 * 2000)


def test_zero_duration_clip_holds_a_bounded_number_of_frames() -> None:
    meter = DecodeMeter()
    m = load_media(hostile.zero_duration_mp4(frames=400), meter=meter)
    assert m.kind == "video" and 2 <= len(m.frames) <= LIMITS.max_frames
    assert meter.held <= 2 * LIMITS.max_frames
    assert m.times == tuple(sorted(m.times)) and m.times[-1] > 8.0  # spread over the clip


def test_zero_duration_clip_over_the_length_limit_is_refused() -> None:
    with pytest.raises(MediaTooLarge, match="too long"):
        load_media(hostile.zero_duration_mp4(w=64, h=48, frames=400, fps=25), MediaLimits(max_seconds=5))


def test_clip_budget_stops_decoding_and_answers_on_the_start() -> None:
    limits = MediaLimits(max_decode_pixels=320 * 180 * 50)
    meter = DecodeMeter()
    m = load_media(hostile.zero_duration_mp4(frames=400), limits, meter=meter)
    assert m.frames and meter.frames <= 50 and meter.pixels <= limits.max_decode_pixels


def test_webm_growing_mid_stream_refused_at_the_first_big_frame() -> None:
    meter = DecodeMeter()
    with pytest.raises(MediaTooLarge, match="3000x3000"):
        load_media(hostile.webm_size_change(big=(3000, 3000)), meter=meter)
    assert meter.pixels <= 6 * 320 * 180


def test_grey16_png_keeps_its_shades() -> None:
    arr = np.asarray(load_media(hostile.grey16_png()).first)
    assert arr[:, 0].mean() < 10 and arr[:, -1].mean() > 245
    assert 100 < arr[:, 160].mean() < 155


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_exif_orientation_applied(fmt: str) -> None:
    assert load_media(hostile.exif_rotated(fmt)).first.size == (180, 320)


def test_animated_webp_frame_times_read_from_the_file() -> None:
    frames = [hostile.picture(seed=i) for i in range(4)]
    data = hostile.encode(frames[0], "WEBP", save_all=True, append_images=frames[1:],
                          duration=[50, 300, 70, 500], loop=0)
    m = load_media(data)
    assert m.times == pytest.approx((0.0, 0.05, 0.35, 0.42))
    assert m.duration == pytest.approx(0.92)


def test_apng_frame_times_and_bomb() -> None:
    frames = [hostile.picture(seed=i) for i in range(3)]
    data = hostile.encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=[40, 200, 60])
    m = load_media(data)
    assert m.kind == "animation" and m.times == pytest.approx((0.0, 0.04, 0.24))
    with pytest.raises(MediaTooLarge):
        load_media(hostile.apng_bomb())
