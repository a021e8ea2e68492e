"""Opening/ending detection: footage that repeats across the episodes of one series.

A sampled frame counts as repeated when a near-identical frame (tiny descriptor) exists in
enough other episodes of the same series, in the same part of the episode (openings near
the start, endings near the end). A recap reuses footage of one earlier episode only, so it
is not mistaken for an opening once a series has three or more episodes. Runs of repeated
frames, with short gaps closed, become segments. Plain/black frames never count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.types import FrameFlag

#: the version of the rules below; bump it when they change, so that `anirec index` flags the
#: frames of an existing library again (the flags are stored per frame at indexing time).
#: 2: a title card in every episode is no longer recap footage.
RULES_VERSION = 2


@dataclass(frozen=True)
class EpisodeSignature:
    episode_id: int
    times: np.ndarray  # float [N]
    descriptors: np.ndarray  # uint8 [N, 432] tiny descriptors
    duration: float


def _grey(desc: np.ndarray) -> np.ndarray:
    d = desc.reshape(len(desc), -1, 3).astype(np.float32).mean(axis=2) / 255.0
    return d


def _flag_zone(sig: EpisodeSignature, zone: float) -> tuple[np.ndarray, np.ndarray]:
    t = sig.times.astype(np.float64)
    dur = max(sig.duration, float(t.max()) if len(t) else 0.0, 1e-6)
    return t <= zone * dur, t >= (1.0 - zone) * dur


def detect_oped(episodes: list[EpisodeSignature], *, match_rms: float = 0.035, zone: float = 0.4,
                min_len: float = 2.5, max_gap: float = 1.5) -> dict[int, np.ndarray]:
    """Per episode id, an int8 flag per sampled frame: 0 none, 1 opening, 2 ending."""
    out = {e.episode_id: np.zeros(len(e.times), dtype=np.int8) for e in episodes}
    if len(episodes) < 2:
        return out
    greys = [_grey(e.descriptors) for e in episodes]
    informative = [g.std(axis=1) > 0.03 for g in greys]
    zones = [_flag_zone(e, zone) for e in episodes]
    others = len(episodes) - 1
    need = 1 if others == 1 else max(2, math.ceil(0.6 * others))
    for a, ea in enumerate(episodes):
        counts = {FrameFlag.OPENING: np.zeros(len(ea.times), int), FrameFlag.ENDING: np.zeros(len(ea.times), int)}
        ga = greys[a]
        for b in range(len(episodes)):
            if b == a or len(greys[b]) == 0 or len(ga) == 0:
                continue
            gb = greys[b]
            for kind, zi in ((FrameFlag.OPENING, 0), (FrameFlag.ENDING, 1)):
                ia = np.nonzero(zones[a][zi] & informative[a])[0]
                ib = np.nonzero(zones[b][zi] & informative[b])[0]
                if ia.size == 0 or ib.size == 0:
                    continue
                x, y = ga[ia], gb[ib]
                d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
                rms = np.sqrt(np.maximum(d2, 0.0) / x.shape[1])
                counts[kind][ia[rms.min(axis=1) < match_rms]] += 1
        flags = out[ea.episode_id]
        for kind in (FrameFlag.OPENING, FrameFlag.ENDING):
            rep = counts[kind] >= need
            for t0, t1 in _runs(ea.times, rep, max_gap=max_gap):
                # a stored frame stands for the footage up to the next one (a still ending
                # is stored as a frame every couple of seconds), so the run lasts that long
                later = ea.times[ea.times > t1 + 1e-6]
                end = float(later.min()) if later.size else max(ea.duration, t1)
                if end - t0 >= min_len:
                    sel = (ea.times >= t0) & (ea.times <= t1)
                    flags[sel & (flags == FrameFlag.NONE)] = kind
    return out


def detect_recaps(episodes: list[EpisodeSignature], flags: dict[int, np.ndarray], *,
                  match_rms: float = 0.035, zone: float = 0.5, min_len: float = 1.0,
                  max_gap: float = 1.5, recur_s: float = 2.0) -> None:
    """Mark recap footage (3) in place: frames early in an episode that repeat footage of one
    EARLIER episode (list order = episode order), from another part of it (more than
    `recur_s` s away), and of no other episode, outside openings/endings. A card at the same
    place in every episode (a title card, an eyecatch) is not a recap. Answers then prefer
    the original scene over its re-use."""
    greys = [_grey(e.descriptors) for e in episodes]
    informative = [g.std(axis=1) > 0.03 for g in greys]
    for b in range(1, len(episodes)):
        eb = episodes[b]
        fb = flags[eb.episode_id]
        dur = max(eb.duration, float(eb.times.max()) if len(eb.times) else 0.0, 1e-6)
        ib = np.nonzero((eb.times <= zone * dur) & (fb == FrameFlag.NONE) & informative[b])[0]
        if ib.size == 0:
            continue
        hit = np.zeros(len(eb.times), bool)
        seen_in = np.zeros(len(eb.times), np.int32)  # how many other episodes show the frame
        for a in range(len(episodes)):
            fa = flags[episodes[a].episode_id]
            ia = np.nonzero((fa == FrameFlag.NONE) & informative[a])[0]
            if a == b or ia.size == 0:
                continue
            x, y = greys[b][ib], greys[a][ia]
            d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
            close = np.sqrt(np.maximum(d2, 0.0) / x.shape[1]) < match_rms
            seen_in[ib[close.any(axis=1)]] += 1
            if a < b:
                # at another time of that episode: a card at the same place in every episode
                # (its title card, which only differs in its text) is not a recap
                moved = np.abs(eb.times[ib][:, None] - episodes[a].times[ia][None, :]) > recur_s
                hit[ib[(close & moved).any(axis=1)]] = True
        # footage of one other episode is a recap; a frame found in several is a recurring card
        hit &= seen_in <= 1
        for t0, t1 in _runs(eb.times, hit, max_gap=max_gap):
            if t1 - t0 < min_len:
                continue
            fb[(eb.times >= t0) & (eb.times <= t1) & (fb == FrameFlag.NONE)] = FrameFlag.RECAP


def _runs(times: np.ndarray, mask: np.ndarray, *, max_gap: float) -> list[tuple[float, float]]:
    """Time spans where `mask` holds, joining spans separated by less than `max_gap` s.
    Consecutive frames that both hold are always one span, however far apart (a still shot
    is stored as a frame every couple of seconds)."""
    spans: list[list[float]] = []
    broken = True  # a frame where `mask` does not hold came since the last span's end
    for t, m in zip(times.tolist(), mask.tolist(), strict=True):
        if not m:
            broken = True
            continue
        if spans and (not broken or t - spans[-1][1] <= max_gap):
            spans[-1][1] = t
        else:
            spans.append([t, t])
        broken = False
    return [(s, e) for s, e in spans]


def segments(times: np.ndarray, flags: np.ndarray) -> list[tuple[int, float, float]]:
    """(kind, start, end) segments from per-frame flags."""
    out: list[tuple[int, float, float]] = []
    for kind in (FrameFlag.OPENING, FrameFlag.ENDING):
        out += [(kind, s, e) for s, e in _runs(times, flags == kind, max_gap=1e-9 + 1.0)]
    return sorted(out, key=lambda x: x[1])
