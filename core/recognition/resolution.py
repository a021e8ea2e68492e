"""The resolution each stage works at: a 1080p screenshot or a 1170x2532 phone shot is
reduced once, up front, to what its stages need, instead of each stage resizing the full
picture again.

- The framing search (`framing.clip_views`) sees the picture at most `FRAMING_SIDE` px on its
  longer side (it looks at 512 px itself); the boxes it finds are scaled back to the
  original picture, where `View.box` is reported.
- Each view is at most `VIEW_WIDTH` px wide: every later stage looks at 256 px or less (the
  embedder's 256x144 input and its sub-crops, the thumbnails located in: 64, 128 and 256 px
  wide), so this keeps twice what any of them reads.

Pictures already within both sizes (every picture of the sample library's evaluation) are
used as they are, so their answers are the same as at full resolution by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from core.recognition.framing import Box, View, clip_views

FRAMING_SIDE = 1280  # longer side the framing search is given
VIEW_WIDTH = 640  # widest view the later stages are given


def _shrink(img: Image.Image, scale: float) -> Image.Image:
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BOX)


def _scale_box(box: Box, scale: float, size: tuple[int, int]) -> Box:
    """A box found on a picture reduced by `scale`, in the original picture `size`."""
    inv = 1.0 / scale
    x0, y0, x1, y1 = box
    return (max(0, int(x0 * inv)), max(0, int(y0 * inv)),
            min(size[0], round(x1 * inv)), min(size[1], round(y1 * inv)))


def cap_view(v: View, width: int = VIEW_WIDTH) -> View:
    """The view with its picture at most `width` px wide (aspect kept)."""
    if v.image.width <= width:
        return v
    return View(_shrink(v.image, width / v.image.width), v.box, v.kind)


def working_views(frames: Sequence[Image.Image], *, side: int = FRAMING_SIDE,
                  width: int = VIEW_WIDTH) -> list[list[View]]:
    """`clip_views` of the frames, found on the frames reduced to `side` px (longer side),
    each view's picture at most `width` px wide and its box in the original frame."""
    if not frames:
        return []
    big = max(frames[0].size)
    if big <= side:
        return [[cap_view(v, width) for v in fv] for fv in clip_views(frames)]
    scale = side / big
    small = [_shrink(f, scale) if f.size == frames[0].size else _shrink(f, side / max(f.size))
             for f in frames]
    out = []
    for f, s, fv in zip(frames, small, clip_views(small), strict=True):
        k = s.width / f.width
        out.append([cap_view(View(v.image, v.box if k == 1 else _scale_box(v.box, k, f.size),
                                  v.kind), width) for v in fv])
    return out
