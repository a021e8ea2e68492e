"""The animeface teacher worker: JSON lines of image paths in, JSON lines of face boxes out.

Runs under the teacher interpreter (`scripts/teacher-venv.sh` → `.venv-teacher`, which has
`animeface` and Pillow < 12), never under the application's. It imports only the standard
library, PIL and animeface, so the application can keep a current Pillow.

Protocol (one JSON document per line, UTF-8):

    worker → {"ready": true, "animeface": "2.0.3", "pillow": "11.3.0", "python": "3.11.7"}
             or {"ready": false, "error": "..."} and exit status 3 (no animeface, Pillow too new)
    app    → "/path/to/image.png"
             or {"id": 7, "path": "/path/to/image.png", "scales": [1, 2]}
    worker → {"id": 7, "path": "...", "size": [w, h], "seconds": 0.21,
              "faces": [{"box": [x0, y0, x1, y1], "score": 0.98}, ...]}
             or {"id": 7, "path": "...", "error": "..."}

Boxes are animeface's face boxes (brow to chin, not head boxes) in the image's pixels,
x1/y1 exclusive. With several `scales` the image is also run upscaled (animeface misses
faces smaller than ~60 px) and the boxes of all scales are merged by NMS. The worker exits
at end of input.
"""

from __future__ import annotations

import json
import platform
import sys
import time

PILLOW_MAX = (12, 0)  # animeface silently finds no faces with Pillow >= 12
NMS_IOU = 0.4


def _send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms(faces: list[dict]) -> list[dict]:
    keep: list[dict] = []
    for f in sorted(faces, key=lambda f: -f["score"]):
        if all(_iou(f["box"], k["box"]) < NMS_IOU for k in keep):
            keep.append(f)
    return keep


def detect(animeface, Image, path: str, scales: list[float]) -> dict:  # noqa: ANN001
    with Image.open(path) as im:
        im = im.convert("RGB")
    w, h = im.size
    found: list[dict] = []
    for s in scales:
        s = float(s)
        view = im if s == 1.0 else im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
        for f in animeface.detect(view):
            p = f.face.pos
            box = [p.x / s, p.y / s, (p.x + p.width) / s, (p.y + p.height) / s]
            box = [int(round(min(max(v, 0), lim))) for v, lim in zip(box, (w, h, w, h), strict=True)]
            if box[2] > box[0] and box[3] > box[1]:
                found.append({"box": box, "score": round(float(f.likelihood), 4)})
    return {"size": [w, h], "faces": _nms(found) if len(scales) > 1 else
            sorted(found, key=lambda f: -f["score"])}


def main() -> int:
    try:
        import PIL
        from PIL import Image
    except ImportError as exc:
        _send({"ready": False, "error": f"Pillow is not available in {sys.executable}: {exc}"})
        return 3
    try:
        import animeface
    except ImportError as exc:
        _send({"ready": False, "error": f"animeface is not available in {sys.executable} ({exc}); "
               "create the teacher interpreter with scripts/teacher-venv.sh"})
        return 3
    version = tuple(int(p) for p in PIL.__version__.split(".")[:2] if p.isdigit())
    if version >= PILLOW_MAX:
        _send({"ready": False, "error": f"Pillow {PIL.__version__} in {sys.executable} is too new for "
               "animeface (with Pillow >= 12 it silently finds no faces); install Pillow<12 there "
               "(scripts/teacher-venv.sh)"})
        return 3
    try:
        from importlib.metadata import version as dist_version

        af_version = dist_version("animeface")
    except Exception:  # noqa: BLE001 - metadata is informational only
        af_version = "unknown"
    _send({"ready": True, "animeface": af_version, "pillow": PIL.__version__,
           "python": platform.python_version()})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req_id = None
        path = None
        try:
            req = json.loads(line)
            if isinstance(req, str):
                req = {"path": req}
            if not isinstance(req, dict) or not isinstance(req.get("path"), str):
                raise ValueError("expected an image path or {\"path\": ...}")
            req_id, path = req.get("id"), req["path"]
            scales = req.get("scales") or [1.0]
            t0 = time.perf_counter()
            out = detect(animeface, Image, path, list(scales))
            _send({"id": req_id, "path": path, **out, "seconds": round(time.perf_counter() - t0, 4)})
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the worker lives on
            _send({"id": req_id, "path": path, "error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
