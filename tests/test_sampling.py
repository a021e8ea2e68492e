"""Frame sampling and opening/ending spans (issue #5): fast motion is sampled more densely
than the regular rate, still shots are not, and a still ending stored as a frame every couple
of seconds is still found as an ending."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.types import FrameFlag
from data.oped import EpisodeSignature, _runs, detect_oped, detect_recaps
from data.video import EpisodeDecoder
from tests.fakes.media import clip_of


def _pan_then_still(path: Path, fps: int = 12) -> Path:
    """4 s of a fast pan over a textured panorama, then 4 s of one still picture."""
    rng = np.random.default_rng(0)
    pano = Image.fromarray((rng.random((30, 160, 3)) * 255).astype(np.uint8)).resize(
        (1280, 240), Image.NEAREST)
    frames = []
    for i in range(8 * fps):
        x = min(i, 4 * fps) * 12  # 144 px a second, then it stops
        buf = io.BytesIO()
        pano.crop((x, 0, x + 320, 180)).save(buf, format="PNG")
        frames.append(buf.getvalue())
    path.write_bytes(clip_of(frames, fps=fps))
    return path


def test_fast_motion_is_sampled_densely_and_still_shots_are_not(tmp_path: Path) -> None:
    video = _pan_then_still(tmp_path / "pan.mp4")
    regular = EpisodeDecoder(video, fps=2.0, motion_threshold=0.0)
    times = [f.t for f in regular]
    assert regular.motion_kept == 0
    dense = EpisodeDecoder(video, fps=2.0, max_fps=6.0)
    dtimes = [f.t for f in dense]
    assert dense.motion_kept > 0
    pan = [t for t in dtimes if t < 4.0]
    still = [t for t in dtimes if t > 4.3]
    assert len(pan) > 2 * len([t for t in times if t < 4.0])  # the pan: more than 2 fps
    assert min(np.diff(dtimes)) >= 1 / 6.0 - 1e-3  # never denser than max_fps
    assert len(still) <= len([t for t in times if t > 4.3])  # the still part: no extra frames


def _sig(eid: int, times: list[float], descs: np.ndarray, duration: float) -> EpisodeSignature:
    return EpisodeSignature(eid, np.asarray(times, np.float32), descs.astype(np.uint8), duration)


def test_a_still_ending_stored_sparsely_is_an_ending() -> None:
    """An ending that is one still picture for 3 s is stored at its start and 2 s later (near
    duplicates are dropped); the two frames are one 3-s span, long enough to be an ending."""
    rng = np.random.default_rng(1)
    op = rng.integers(0, 255, (6, 432))
    ed = rng.integers(0, 255, (1, 432))
    sigs = []
    for e in range(3):
        body = rng.integers(0, 255, (20, 432))  # every episode's own main part
        descs = np.concatenate([op, body, ed, ed])
        times = [i * 0.5 for i in range(6)] + [4.0 + i for i in range(20)] + [27.0, 29.0]
        sigs.append(_sig(e + 1, times, descs, 30.0))
    flags = detect_oped(sigs)
    for s in sigs:
        f = flags[s.episode_id]
        assert (f[:6] == FrameFlag.OPENING).all()
        assert (f[-2:] == FrameFlag.ENDING).all()
        assert (f[6:-2] == 0).all()


def test_runs_join_consecutive_frames_however_far_apart() -> None:
    t = np.array([0.0, 0.5, 3.0, 6.0, 6.5])
    assert _runs(t, np.array([True, True, True, False, True]), max_gap=1.0) == [(0.0, 3.0), (6.5, 6.5)]
    assert _runs(t, np.array([True, False, True, True, True]), max_gap=1.0) == [(0.0, 0.0), (3.0, 6.5)]


def test_a_title_card_after_a_recap_is_not_recap_footage() -> None:
    """Episode 2 opens with a recap of episode 1's last scene (moving footage) and, right
    after it, its title card, which the tiny descriptor cannot tell from episode 1's (only
    the text differs) and which sits at about the same place in both. The recap is flagged;
    the title card is not (it once was, and the 0.03 recap penalty then sent answers to the
    other episode's card)."""
    rng = np.random.default_rng(2)

    def noise(n: int) -> np.ndarray:
        return rng.integers(0, 255, (n, 432))

    card, scene = noise(1), noise(4)  # the title card; episode 1's last scene, 4 frames
    e1_times = [i * 0.5 for i in range(8)] + [4.5] + [5.0 + i for i in range(16)] + [21.0, 21.5, 22.0, 22.5]
    e1 = np.concatenate([noise(8), card, noise(16), scene])
    e2_times = [i * 0.5 for i in range(8)] + [4.0, 4.5, 5.0, 5.5] + [6.0] + [7.0 + i for i in range(14)]
    e2 = np.concatenate([noise(8), scene, card, noise(14)])
    sigs = [_sig(1, e1_times, e1, 23.0), _sig(2, e2_times, e2, 21.0)]
    flags = {1: np.zeros(len(e1_times), np.int8), 2: np.zeros(len(e2_times), np.int8)}
    detect_recaps(sigs, flags)
    assert (flags[2][8:12] == FrameFlag.RECAP).all(), flags[2]  # the recap
    assert flags[2][12] == 0, flags[2]  # its title card
    assert (flags[2][13:] == 0).all() and (flags[1] == 0).all()


def test_reused_scalers_give_the_pixels_of_a_fresh_conversion(tmp_path: Path) -> None:
    """EpisodeDecoder keeps one scaler per size for the whole video (data/video.py); each kept
    frame is the pixels PyAV's per-frame `to_ndarray(width=…)` (a new scaler every frame)
    gives for the same decoded frame. (The whole index, cuts and all, is compared with the
    earlier code's by `bench.bench_index_speed`.)"""
    import av

    video = _pan_then_still(tmp_path / "pan.mp4")
    dec = EpisodeDecoder(video, fps=2.0, max_fps=6.0, size=(144, 256))
    kept = {round(f.t, 4): f.rgb for f in dec}
    assert len(kept) > 8 and dec.decoded == 96
    fresh = {}
    with av.open(str(video)) as c:
        for frame in c.decode(c.streams.video[0]):
            t = round(float(frame.time), 4)
            if t in kept:
                fresh[t] = frame.to_ndarray(format="rgb24", width=256, height=144, interpolation="AREA")
    assert fresh.keys() == kept.keys()
    for t, rgb in kept.items():
        assert np.array_equal(rgb, fresh[t]), t


# --- ANIREC_INDEX_DECODE=ref: only the reference frames are decoded ----------------------------

def _decoded_times(video: Path, skip: str | None = None) -> list[float]:
    import av

    with av.open(str(video)) as c:
        s = c.streams.video[0]
        if skip:
            s.codec_context.skip_frame = skip
        return [float(f.time) for f in c.decode(s)]


def _episode(sample_library: Path) -> Path:
    import json

    gt = json.loads((sample_library / "ground_truth.json").read_text())
    return sample_library / gt["episodes"][0]["path"]


def test_ref_decodes_fewer_frames_and_finds_the_same_cuts(sample_library: Path) -> None:
    """On an x264 episode with B-frames (the synthetic generator's), `ref` decodes only the
    reference frames, finds every cut `all` finds within a frame (and no others), and each of
    its samples is a frame it decoded, at that frame's own time."""
    video = _episode(sample_library)
    everything = EpisodeDecoder(video, decode="all")
    all_times = [f.t for f in everything]
    ref = EpisodeDecoder(video, decode="ref")
    ref_frames = list(ref)
    total, nonref = _decoded_times(video), _decoded_times(video, "NONREF")
    assert everything.decoded == len(total)
    assert ref.decoded == len(nonref) < 0.8 * everything.decoded  # the B-frames were skipped
    frame = 1.0 / everything.info.fps  # type: ignore[union-attr]
    assert len(everything.cuts) >= 3 and len(ref.cuts) == len(everything.cuts)
    for a, b in zip(everything.cuts, ref.cuts, strict=True):
        assert abs(a - b) <= frame + 1e-6, (everything.cuts, ref.cuts)
    decoded = {round(t, 6) for t in nonref}
    assert all(round(f.t, 6) in decoded for f in ref_frames)  # real decoded times, no guesses
    # about as many samples, near the same times (the regular ones are at most 2 frames later)
    assert abs(len(ref_frames) - len(all_times)) <= 0.15 * len(all_times)
    near = sum(min(abs(f.t - t) for t in all_times) <= 2 * frame + 1e-6 for f in ref_frames)
    assert near >= 0.85 * len(ref_frames)
    # after each cut a decoded frame is kept and marked, as soon as the densest sampling allows
    # (1/6 s after the sample before): the first decoded one after the cut, or the one after
    for c in ref.cuts:
        after = [f for f in ref_frames if f.t >= c - 1e-6]
        before = [f.t for f in ref_frames if f.t < c - 1e-6]
        if after:
            first = min(t for t in nonref if t >= c - 1e-6 and (not before or t - before[-1] >= 1 / 6 - 1e-6))
            assert after[0].cut_before and after[0].t == first, (c, after[0].t, first)


def test_ref_on_a_stream_without_b_frames_decodes_every_frame(tmp_path: Path) -> None:
    """Without B-frames every frame is a reference: `ref` decodes all of them and keeps exactly
    the frames (and cuts) `all` keeps."""
    import av

    src = _pan_then_still(tmp_path / "pan.mp4")
    video = tmp_path / "no-b.mp4"
    with av.open(str(src)) as inp, av.open(str(video), mode="w") as out:
        st = out.add_stream("libx264", rate=12, options={"x264-params": "bframes=0"})
        st.width, st.height, st.pix_fmt = 320, 180, "yuv420p"
        for fr in inp.decode(inp.streams.video[0]):
            for pkt in st.encode(fr.reformat(format="yuv420p")):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    a, r = EpisodeDecoder(video, decode="all"), EpisodeDecoder(video, decode="ref")
    fa, fr_ = list(a), list(r)
    assert r.decoded == a.decoded == 96
    assert [f.t for f in fr_] == [f.t for f in fa] and r.cuts == a.cuts
    assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(fa, fr_, strict=True))


def test_a_decode_mode_that_does_not_exist_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    import pytest

    from core.config import load_settings
    from core.errors import ConfigError

    with pytest.raises(ValueError, match="decode must be one of all, ref"):
        EpisodeDecoder(tmp_path / "x.mp4", decode="nonref")
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("ANIREC_INDEX_DECODE", "nonref")
    with pytest.raises(ConfigError, match="ANIREC_INDEX_DECODE"):
        load_settings()
    monkeypatch.setenv("ANIREC_INDEX_DECODE", "ref")
    assert load_settings().index_decode == "ref"
