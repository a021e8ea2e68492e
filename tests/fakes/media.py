"""Media a chat user would send, made in memory for the adapter tests."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path


def clip_of(frames: Sequence[bytes], fps: int = 4, fmt: str = "mp4") -> bytes:
    """An H.264 MP4 (or, with fmt="webm", a VP9 WebM like a video sticker) of image `frames`."""
    import av
    from PIL import Image

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        st = out.add_stream("libx264" if fmt == "mp4" else "libvpx-vp9", rate=fps)
        first = Image.open(io.BytesIO(frames[0]))
        st.width, st.height, st.pix_fmt = first.width // 2 * 2, first.height // 2 * 2, "yuv420p"
        for f in frames:
            im = Image.open(io.BytesIO(f)).convert("RGB").resize((st.width, st.height))
            for pkt in st.encode(av.VideoFrame.from_image(im)):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return buf.getvalue()


def faces_jpeg(path: Path, boxes: Sequence[tuple[int, int, int, int]] = ((20, 20, 60, 70),)) -> Path:
    """An annotated still as `core.characters.annotate` draws it (boxes named "Mika")."""
    from PIL import Image

    from core.characters import annotate
    from core.types import CharacterHit

    hits = [CharacterHit("Mika", "x", 0.9, b) for b in boxes]
    annotate(Image.new("RGB", (160, 120), (30, 60, 90)), hits).save(path, format="JPEG", quality=85)
    return path
