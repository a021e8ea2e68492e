"""Real-size queries for the latency benchmarks: the sample library rendered at 1080p, its
frames cut into whole frames (480p, 720p, 1080p), crops, portrait phone screenshots
(1170x2532) and GIFs, each encoded as a chat app would send it.

The frames come from the library's own 1080p video (real detail, not upscaled 480x270
frames); the phone screenshot's UI is the perturbation suite's (`data.perturb`), laid out at
the phone's size around the frame at full resolution.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

#: (label, (width, height)) of the whole-frame and crop sizes
SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
PHONE = (1170, 2532)
#: (kind, size label) pairs the benchmark times
CASES = (("whole", "480p"), ("whole", "720p"), ("whole", "1080p"), ("crop", "720p"),
         ("crop", "1080p"), ("phone", "1170x2532"), ("gif", "480p"))


@dataclass(frozen=True)
class RealQuery:
    kind: str
    size: str
    data: bytes


def library_1080p(work: Path, *, seconds: float = 20.0) -> Path:
    """The sample library (4 series x 2 episodes) rendered at 1920x1080 under `work`."""
    from data.synth import generate_library

    out = Path(work) / "sample-1080p"
    generate_library(out, series=4, episodes=2, seconds=seconds, width=1920, height=1080,
                     workers=1)
    return out


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _crop(img: Image.Image, rng: random.Random) -> Image.Image:
    """25-60% of the area, 16:9-ish, anywhere in the picture."""
    w, h = img.size
    area = rng.uniform(0.25, 0.6)
    cw = round(w * area ** 0.5 * rng.uniform(0.9, 1.1))
    ch = round(h * area ** 0.5 * rng.uniform(0.9, 1.1))
    cw, ch = min(cw, w), min(ch, h)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((x, y, x + cw, y + ch))


def _phone(img: Image.Image, rng: random.Random) -> Image.Image:
    """A portrait phone screenshot (1170x2532): the suite's phone UI scaled to the phone,
    the frame pasted at full resolution where the UI placed it."""
    from data.perturb import phone_screenshot

    placed: list[tuple[int, int, int, int]] = []
    ui = phone_screenshot(img.resize((480, 270), Image.Resampling.BOX), rng, placed=placed)
    sx, sy = PHONE[0] / ui.width, PHONE[1] / ui.height
    canvas = ui.resize(PHONE, Image.Resampling.BILINEAR)
    x0, y0, x1, y1 = placed[0]
    box = (round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y0 * sy + (x1 - x0) * sx * 9 / 16))
    canvas.paste(img.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.BOX), box[:2])
    return canvas


def _gif(frames: list[Image.Image], size: tuple[int, int]) -> bytes:
    small = [f.resize(size, Image.Resampling.BOX).quantize(colors=128) for f in frames]
    buf = io.BytesIO()
    small[0].save(buf, format="GIF", save_all=True, append_images=small[1:], duration=125, loop=0)
    return buf.getvalue()


def real_queries(library: Path, per_case: int, seed: int = 7) -> list[RealQuery]:
    """`per_case` queries of each of `CASES`, from random times of the library's episodes."""
    import json

    from data.video import read_frames_at

    truth = json.loads((Path(library) / "ground_truth.json").read_text())
    episodes = truth["episodes"]
    rng = random.Random(seed)
    out: list[RealQuery] = []
    for kind, size in CASES:
        for _ in range(per_case):
            ep = rng.choice(episodes)
            t = rng.uniform(0.5, float(ep["duration"]) - 2.0)
            times = [t + 0.125 * j for j in range(8)] if kind == "gif" else [t]
            frames = [Image.fromarray(a) for a in read_frames_at(Path(library) / ep["path"], times)]
            if kind == "gif":
                w, h = SIZES[size]
                data = _gif(frames, (w * 3 // 4, h * 3 // 4))  # a 640x360 GIF
            elif kind == "phone":
                data = _jpeg(_phone(frames[0], rng), 85)
            else:
                img = frames[0].resize(SIZES[size], Image.Resampling.BOX)
                data = _jpeg(_crop(img, rng) if kind == "crop" else img)
            out.append(RealQuery(kind, size, data))
    return out
